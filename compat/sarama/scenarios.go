// sarama scenarios (see compat/README.md for the contract), built by build.sh
// against Debian's golang-github-shopify-sarama-dev:
//
//	scenarios --bootstrap HOST:PORT --scenario NAME --topic T [--security FILE]
//
// SCRAM comes from Debian's golang-github-xdg-go-scram-dev, as sarama's own
// example (examples/sasl_scram_client) does it.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/Shopify/sarama"
	"github.com/xdg-go/scram"

	"pybrokercompat/properties"
)

const saramaVersion = "1.22.1 (Debian golang-github-shopify-sarama-dev)"

var bootstrap, topic string

// The --security properties (see compat/security.py); empty without them.
var security = map[string]string{}

type notApplicable string

func (n notApplicable) Error() string { return string(n) }

func config() *sarama.Config {
	c := sarama.NewConfig()
	c.Version = sarama.V2_1_0_0
	c.Producer.Return.Successes = true
	c.Producer.Retry.Max = 2
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	c.Metadata.Retry.Max = 2
	if err := secure(c); err != nil {
		panic(err) // read and checked in main() first, so this does not happen
	}
	return c
}

// secure sets sarama's Net.TLS and Net.SASL from the --security properties.
func secure(c *sarama.Config) error {
	protocol := security["security.protocol"]
	if protocol == "SSL" || protocol == "SASL_SSL" {
		pem, err := os.ReadFile(security["ssl.ca.location"])
		if err != nil {
			return err
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return fmt.Errorf("no certificate in %s", security["ssl.ca.location"])
		}
		c.Net.TLS.Enable = true
		c.Net.TLS.Config = &tls.Config{RootCAs: roots}
		if cert := security["ssl.certificate.location"]; cert != "" {
			pair, err := tls.LoadX509KeyPair(cert, security["ssl.key.location"])
			if err != nil {
				return err
			}
			c.Net.TLS.Config.Certificates = []tls.Certificate{pair}
		}
	}
	mechanism := security["sasl.mechanism"]
	if mechanism == "" {
		return nil
	}
	c.Net.SASL.Enable = true
	c.Net.SASL.Mechanism = sarama.SASLMechanism(mechanism)
	c.Net.SASL.User = security["sasl.username"]
	c.Net.SASL.Password = security["sasl.password"]
	switch mechanism {
	case sarama.SASLTypeSCRAMSHA256:
		c.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.SHA256} }
	case sarama.SASLTypeSCRAMSHA512:
		c.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.SHA512} }
	case sarama.SASLTypeOAuth:
		c.Net.SASL.TokenProvider = unsecuredToken(c.Net.SASL.User)
	}
	return nil
}

type scramClient struct {
	hash         scram.HashGeneratorFcn
	conversation *scram.ClientConversation
}

func (s *scramClient) Begin(user, password, authzID string) error {
	client, err := s.hash.NewClient(user, password, authzID)
	if err != nil {
		return err
	}
	s.conversation = client.NewConversation()
	return nil
}

func (s *scramClient) Step(challenge string) (string, error) { return s.conversation.Step(challenge) }
func (s *scramClient) Done() bool                            { return s.conversation.Done() }

// unsecuredToken is an unsigned JWS (RFC 7515 appendix A.5) with the claims
// Kafka's unsecured validator reads: sub, iat, exp.
type unsecuredToken string

func (subject unsecuredToken) Token() (*sarama.AccessToken, error) {
	part := func(claims map[string]interface{}) string {
		b, _ := json.Marshal(claims)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	now := time.Now().Unix()
	jwt := part(map[string]interface{}{"alg": "none"}) + "." +
		part(map[string]interface{}{"sub": string(subject), "iat": now, "exp": now + 3600}) + "."
	return &sarama.AccessToken{Token: jwt}, nil
}

func produce(msgs []*sarama.ProducerMessage, edit func(*sarama.Config)) error {
	c := config()
	if edit != nil {
		edit(c)
	}
	p, err := sarama.NewSyncProducer([]string{bootstrap}, c)
	if err != nil {
		return err
	}
	defer p.Close()
	for _, m := range msgs {
		m.Topic = topic
	}
	err = p.SendMessages(msgs)
	var perrs sarama.ProducerErrors
	if errors.As(err, &perrs) && len(perrs) > 0 {
		return fmt.Errorf("%v: %w", err, perrs[0].Err)
	}
	return err
}

func read(n int) ([]*sarama.ConsumerMessage, error) {
	c, err := sarama.NewConsumer([]string{bootstrap}, config())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	pc, err := c.ConsumePartition(topic, 0, sarama.OffsetOldest)
	if err != nil {
		return nil, err
	}
	defer pc.Close()
	var got []*sarama.ConsumerMessage
	for len(got) < n {
		select {
		case m := <-pc.Messages():
			got = append(got, m)
		case e := <-pc.Errors():
			return got, e
		case <-time.After(15 * time.Second):
			return got, fmt.Errorf("consumed %d of %d messages", len(got), n)
		}
	}
	return got, nil
}

func roundTrip(edit func(*sarama.Config)) error {
	var msgs []*sarama.ProducerMessage
	var want []string
	for i := 0; i < 20; i++ {
		v := strings.Repeat(fmt.Sprintf("m%d", i), 20)
		want = append(want, v)
		msgs = append(msgs, &sarama.ProducerMessage{Key: sarama.StringEncoder("k"), Value: sarama.StringEncoder(v)})
	}
	if err := produce(msgs, edit); err != nil {
		return err
	}
	got, err := read(len(want))
	if err != nil {
		return err
	}
	for i, m := range got {
		if string(m.Value) != want[i] {
			return fmt.Errorf("message %d differs", i)
		}
	}
	return nil
}

type handler struct {
	setup   func(sarama.ConsumerGroupSession)
	message func(sarama.ConsumerGroupSession, *sarama.ConsumerMessage)
}

func (h handler) Setup(s sarama.ConsumerGroupSession) error {
	if h.setup != nil {
		h.setup(s)
	}
	return nil
}
func (h handler) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h handler) ConsumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for m := range claim.Messages() {
		if h.message != nil {
			h.message(s, m)
		}
	}
	return nil
}

// groupRead consumes n messages as a member of group, marking each, then closes (which commits).
func groupRead(group string, n int) ([]int64, error) {
	g, err := sarama.NewConsumerGroup([]string{bootstrap}, group, config())
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var mu sync.Mutex
	var offsets []int64
	h := handler{message: func(s sarama.ConsumerGroupSession, m *sarama.ConsumerMessage) {
		mu.Lock()
		defer mu.Unlock()
		if len(offsets) < n {
			offsets = append(offsets, m.Offset)
			s.MarkMessage(m, "")
		}
		if len(offsets) == n {
			cancel()
		}
	}}
	for ctx.Err() == nil {
		if err := g.Consume(ctx, []string{topic}, h); err != nil {
			break
		}
	}
	if err := g.Close(); err != nil {
		return offsets, err
	}
	if len(offsets) < n {
		return offsets, fmt.Errorf("consumed %d of %d messages", len(offsets), n)
	}
	return offsets, nil
}

var scenarios = map[string]func() (string, error){
	"metadata": func() (string, error) {
		client, err := sarama.NewClient([]string{bootstrap}, config())
		if err != nil {
			return "", err
		}
		defer client.Close()
		parts, err := client.Partitions(topic)
		if err != nil {
			return "", err
		}
		if !reflect.DeepEqual(parts, []int32{0}) {
			return "", fmt.Errorf("partitions %v", parts)
		}
		return fmt.Sprintf("%d broker(s), topic with partitions %v", len(client.Brokers()), parts), nil
	},
	"roundtrip": func() (string, error) {
		h := func(k, v string) sarama.RecordHeader { return sarama.RecordHeader{Key: []byte(k), Value: []byte(v)} }
		err := produce([]*sarama.ProducerMessage{
			{Key: sarama.StringEncoder("k1"), Value: sarama.StringEncoder("v1"), Headers: []sarama.RecordHeader{h("h1", "a"), h("h2", "b")}},
			{Key: sarama.StringEncoder("k2")},
			{Value: sarama.StringEncoder("v3"), Headers: []sarama.RecordHeader{h("only", "c")}},
		}, nil)
		if err != nil {
			return "", err
		}
		got, err := read(3)
		if err != nil {
			return "", err
		}
		var seen []string
		for _, m := range got {
			var hs []string
			for _, x := range m.Headers {
				hs = append(hs, string(x.Key)+"="+string(x.Value))
			}
			seen = append(seen, fmt.Sprintf("%v|%v|%s", m.Key == nil, m.Value == nil, string(m.Key)+","+string(m.Value)+","+strings.Join(hs, ",")))
		}
		want := []string{"false|false|k1,v1,h1=a,h2=b", "false|true|k2,,", "true|false|,v3,only=c"}
		if !reflect.DeepEqual(seen, want) {
			return "", fmt.Errorf("got %q", seen)
		}
		return "", nil
	},
	"gzip":   codec(sarama.CompressionGZIP),
	"snappy": codec(sarama.CompressionSnappy),
	"lz4":    codec(sarama.CompressionLZ4),
	"transactions": func() (string, error) {
		return "", notApplicable("sarama 1.22 has no transactional producer (it came in sarama 1.37)")
	},
	"zstd": func() (string, error) {
		return "", notApplicable("sarama 1.22 sends Produce v3; zstd needs v7 (the broker answers UNSUPPORTED_COMPRESSION_TYPE, as Kafka does)")
	},
	"acks-0":   acks(sarama.NoResponse),
	"acks-1":   acks(sarama.WaitForLocal),
	"acks-all": acks(sarama.WaitForAll),
	"group-resume": func() (string, error) {
		var msgs []*sarama.ProducerMessage
		for i := 0; i < 10; i++ {
			msgs = append(msgs, &sarama.ProducerMessage{Value: sarama.StringEncoder(fmt.Sprint(i))})
		}
		if err := produce(msgs, nil); err != nil {
			return "", err
		}
		group := topic + "-group"
		if _, err := groupRead(group, 4); err != nil {
			return "", err
		}
		rest, err := groupRead(group, 6)
		if err != nil {
			return "", err
		}
		if !reflect.DeepEqual(rest, []int64{4, 5, 6, 7, 8, 9}) {
			return "", fmt.Errorf("resumed at %v", rest)
		}
		return "", nil
	},
	"rebalance": func() (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
		defer cancel()
		var mu sync.Mutex
		claims := make([][]int32, 2)
		var groups []sarama.ConsumerGroup
		start := func(i int) error {
			g, err := sarama.NewConsumerGroup([]string{bootstrap}, topic+"-group", config())
			if err != nil {
				return err
			}
			groups = append(groups, g)
			h := handler{setup: func(s sarama.ConsumerGroupSession) {
				mu.Lock()
				claims[i] = s.Claims()[topic]
				mu.Unlock()
			}}
			go func() {
				for ctx.Err() == nil {
					g.Consume(ctx, []string{topic}, h)
				}
			}()
			return nil
		}
		wait := func(what string, ok func() bool) error {
			for ctx.Err() == nil {
				mu.Lock()
				done := ok()
				mu.Unlock()
				if done {
					return nil
				}
				time.Sleep(100 * time.Millisecond)
			}
			return fmt.Errorf("timed out waiting for %s (claims %v)", what, claims)
		}
		defer func() {
			cancel()
			for _, g := range groups {
				g.Close()
			}
		}()
		if err := start(0); err != nil {
			return "", err
		}
		if err := wait("both partitions", func() bool { return len(claims[0]) == 2 }); err != nil {
			return "", err
		}
		if err := start(1); err != nil {
			return "", err
		}
		return "", wait("a split", func() bool {
			return len(claims[0]) == 1 && len(claims[1]) == 1 && claims[0][0] != claims[1][0]
		})
	},
	"offsets-by-time": func() (string, error) {
		base := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
		var msgs []*sarama.ProducerMessage
		for i := 0; i < 3; i++ {
			msgs = append(msgs, &sarama.ProducerMessage{Value: sarama.StringEncoder(fmt.Sprintf("t%d", i)), Timestamp: base.Add(time.Duration(i) * time.Second)})
		}
		// WaitForAll: in a cluster an acks=1 write may not be below the high
		// watermark yet, and offsets by time look only there (as in Kafka).
		if err := produce(msgs, func(c *sarama.Config) { c.Producer.RequiredAcks = sarama.WaitForAll }); err != nil {
			return "", err
		}
		client, err := sarama.NewClient([]string{bootstrap}, config())
		if err != nil {
			return "", err
		}
		defer client.Close()
		offset, err := client.GetOffset(topic, 0, base.Add(500*time.Millisecond).UnixNano()/1e6)
		if err != nil {
			return "", err
		}
		if offset != 1 {
			return "", fmt.Errorf("GetOffset by time gave %d", offset)
		}
		c, err := sarama.NewConsumerFromClient(client)
		if err != nil {
			return "", err
		}
		pc, err := c.ConsumePartition(topic, 0, offset)
		if err != nil {
			return "", err
		}
		defer pc.Close()
		select {
		case m := <-pc.Messages():
			if string(m.Value) != "t1" || !m.Timestamp.Equal(base.Add(time.Second)) {
				return "", fmt.Errorf("got %s at %v", m.Value, m.Timestamp)
			}
		case <-time.After(15 * time.Second):
			return "", errors.New("no message after seek")
		}
		return "", nil
	},
	"admin": func() (string, error) {
		name := topic + "-admin"
		a, err := sarama.NewClusterAdmin([]string{bootstrap}, config())
		if err != nil {
			return "", err
		}
		defer a.Close()
		retention := "3600000"
		detail := &sarama.TopicDetail{NumPartitions: 2, ReplicationFactor: 1, ConfigEntries: map[string]*string{"retention.ms": &retention}}
		if err := a.CreateTopic(name, detail, false); err != nil {
			return "", fmt.Errorf("create: %w", err)
		}
		entries, err := a.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: name, ConfigNames: []string{"retention.ms"}})
		if err != nil {
			return "", fmt.Errorf("describe configs (sarama 1.22 sends DescribeConfigs v0, which Kafka 4 removed): %w", err)
		}
		if len(entries) != 1 || entries[0].Value != retention {
			return "", fmt.Errorf("describe configs gave %+v", entries)
		}
		if err := a.DeleteTopic(name); err != nil {
			return "", fmt.Errorf("delete: %w", err)
		}
		// In a cluster another broker may list it until the deletion reaches it.
		var topics map[string]sarama.TopicDetail
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			topics, err = a.ListTopics()
			if err != nil {
				return "", err
			}
			if _, ok := topics[name]; !ok || time.Now().After(deadline) {
				break
			}
		}
		if _, ok := topics[name]; ok {
			return "", errors.New("deleted topic still listed")
		}
		return "", nil
	},
	"large-message": func() (string, error) {
		value := bytes.Repeat([]byte("a"), 1<<20)
		err := produce([]*sarama.ProducerMessage{{Value: sarama.ByteEncoder(value)}}, func(c *sarama.Config) { c.Producer.MaxMessageBytes = 2 << 20 })
		if err != nil {
			return "", err
		}
		got, err := read(1)
		if err != nil {
			return "", err
		}
		if !bytes.Equal(got[0].Value, value) {
			return "", fmt.Errorf("value of %d bytes differs", len(got[0].Value))
		}
		return "", nil
	},
	"unknown-topic": func() (string, error) {
		err := produce([]*sarama.ProducerMessage{{Value: sarama.StringEncoder("x")}}, nil)
		if err == nil {
			return "", errors.New("produce to a missing topic succeeded")
		}
		if !errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
			return "", fmt.Errorf("unexpected error: %w", err)
		}
		return err.Error(), nil
	},
}

func codec(codec sarama.CompressionCodec) func() (string, error) {
	return func() (string, error) {
		return "", roundTrip(func(c *sarama.Config) { c.Producer.Compression = codec })
	}
}

func acks(acks sarama.RequiredAcks) func() (string, error) {
	return func() (string, error) {
		return "", roundTrip(func(c *sarama.Config) { c.Producer.RequiredAcks = acks })
	}
}

func main() {
	flag.StringVar(&bootstrap, "bootstrap", "127.0.0.1:9092", "HOST:PORT")
	scenario := flag.String("scenario", "", "scenario name, or version")
	flag.StringVar(&topic, "topic", "compat", "topic")
	securityFile := flag.String("security", "", "a file of Kafka client properties: security.protocol, sasl.*, ssl.*")
	flag.Parse()
	result, detail := "pass", ""
	var err error
	if *securityFile != "" {
		if security, err = properties.Read(*securityFile); err == nil {
			err = secure(sarama.NewConfig())
		}
	}
	if *scenario == "version" {
		detail = saramaVersion
	} else if err != nil {
		result, detail = "fail", "--security: "+err.Error()
	} else if fn, ok := scenarios[*scenario]; !ok {
		result, detail = "n/a", "scenario not implemented for sarama"
	} else if out, err := fn(); err != nil {
		var na notApplicable
		if errors.As(err, &na) {
			result = "n/a"
		} else {
			result = "fail"
		}
		detail = err.Error()
	} else {
		detail = out
	}
	json.NewEncoder(os.Stdout).Encode(map[string]string{"result": result, "detail": detail})
}
