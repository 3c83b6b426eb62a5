// kafka-go scenarios (see compat/README.md for the contract), built by build.sh
// against Debian's golang-github-segmentio-kafka-go-dev:
//
//	scenarios --bootstrap HOST:PORT --scenario NAME --topic T [--security FILE]
//
// kafka-go 0.2.1 pins its request versions and never sends ApiVersions: it
// produces with Produce v2 (magic 1 message sets, no headers), fetches with
// Fetch v2 and creates topics with CreateTopics v0. Kafka 4 removed all three
// (KIP-896) and so does pybroker: Produce v2 is answered UNSUPPORTED_VERSION,
// and a Fetch v2 or CreateTopics v0 request closes the connection, as Kafka
// does. A scenario that needs one of them reports n/a when (and only when) the
// broker refuses it in exactly that way; anything else is a failure.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/gzip"
	"github.com/segmentio/kafka-go/lz4"
	"github.com/segmentio/kafka-go/snappy"

	"pybrokercompat/properties"
)

const kafkaGoVersion = "0.2.1 (Debian golang-github-segmentio-kafka-go-dev)"

const (
	noProduce = "kafka-go 0.2.1 produces with Produce v2 only, which Kafka 4 removed (the broker answers UNSUPPORTED_VERSION, as Kafka does)"
	noFetch   = "kafka-go 0.2.1 fetches with Fetch v2 only, which Kafka 4 removed (the broker closes the connection, as Kafka does)"
)

var bootstrap, topic string

// What a SASL mode gets.
const noSASL = "kafka-go 0.2.1 has no SASL client (its source has no SASL code; its Dialer offers TLS only)"

type notApplicable string

func (n notApplicable) Error() string { return string(n) }

var stderr = log.New(os.Stderr, "kafka-go ", log.LstdFlags|log.Lmicroseconds)

// produce writes msgs with a Writer; a Produce v2 refusal becomes n/a.
func produce(msgs []kafka.Message, edit func(*kafka.WriterConfig)) error {
	c := kafka.WriterConfig{
		Brokers:      []string{bootstrap},
		Topic:        topic,
		MaxAttempts:  2,
		BatchTimeout: 10 * time.Millisecond,
		RequiredAcks: -1,
		Logger:       stderr,
		ErrorLogger:  stderr,
	}
	if edit != nil {
		edit(&c)
	}
	w := kafka.NewWriter(c)
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := w.WriteMessages(ctx, msgs...)
	var kerr kafka.Error
	if errors.As(err, &kerr) && kerr == kafka.UnsupportedVersion {
		return notApplicable(noProduce)
	}
	return err
}

// read consumes n messages of partition 0 from the start with a Reader; a
// connection closed on the Fetch v2 request becomes n/a.
func read(n int, limit time.Duration) ([]kafka.Message, error) {
	var mu sync.Mutex
	var errs []string
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:     []string{bootstrap},
		Topic:       topic,
		MaxBytes:    4 << 20,
		MaxWait:     500 * time.Millisecond,
		Logger:      stderr,
		ErrorLogger: log.New(recorder(func(line string) { mu.Lock(); errs = append(errs, line); mu.Unlock() }), "", 0),
	})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	var got []kafka.Message
	for len(got) < n {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			mu.Lock()
			defer mu.Unlock()
			if len(got) == 0 && fetchRefused(errs) {
				return nil, notApplicable(noFetch)
			}
			return got, fmt.Errorf("consumed %d of %d messages: %v (reader errors: %q)", len(got), n, err, errs)
		}
		got = append(got, m)
	}
	return got, nil
}

// fetchRefused: every error the reader logged is the broker hanging up on a fetch.
func fetchRefused(errs []string) bool {
	for _, e := range errs {
		if !strings.Contains(e, io.EOF.Error()) && !strings.Contains(e, "connection reset") {
			return false
		}
	}
	return len(errs) > 0
}

// recorder is an io.Writer for a log.Logger that hands each line to fn (and to stderr).
type recorder func(string)

func (r recorder) Write(p []byte) (int, error) {
	os.Stderr.Write(p)
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		r(line)
	}
	return len(p), nil
}

func roundTrip(msgs []kafka.Message, edit func(*kafka.WriterConfig)) error {
	if err := produce(msgs, edit); err != nil {
		return err
	}
	got, err := read(len(msgs), 15*time.Second)
	if err != nil {
		return err
	}
	for i, m := range got {
		if !bytes.Equal(m.Key, msgs[i].Key) || !bytes.Equal(m.Value, msgs[i].Value) || (m.Value == nil) != (msgs[i].Value == nil) {
			return fmt.Errorf("message %d differs: %q=%q", i, m.Key, m.Value)
		}
	}
	return nil
}

func twenty() []kafka.Message {
	var msgs []kafka.Message
	for i := 0; i < 20; i++ {
		msgs = append(msgs, kafka.Message{Key: []byte("k"), Value: []byte(strings.Repeat(fmt.Sprintf("m%d", i), 20))})
	}
	return msgs
}

func codec(c kafka.CompressionCodec) func() (string, error) {
	return func() (string, error) {
		return "", roundTrip(twenty(), func(w *kafka.WriterConfig) { w.CompressionCodec = c })
	}
}

func acks(n int) func() (string, error) {
	return func() (string, error) {
		return "", roundTrip(twenty(), func(w *kafka.WriterConfig) { w.RequiredAcks = n })
	}
}

var subscribed = regexp.MustCompile(`subscribed to partitions: map\[(.*)\]`)

var scenarios = map[string]func() (string, error){
	"metadata": func() (string, error) {
		conn, err := kafka.Dial("tcp", bootstrap)
		if err != nil {
			return "", err
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		parts, err := conn.ReadPartitions(topic)
		if err != nil {
			return "", err
		}
		if len(parts) != 1 || parts[0].ID != 0 || parts[0].Topic != topic {
			return "", fmt.Errorf("partitions %+v", parts)
		}
		// ReadPartitions() with no topic sends an empty array, which Metadata
		// v1 reads as "no topics" (null would be "all"): not checked here.
		l := parts[0].Leader
		if l.Host == "" || l.Port == 0 {
			return "", fmt.Errorf("leader %+v", l)
		}
		return fmt.Sprintf("leader %d, topic with partition 0", l.ID), nil
	},
	"roundtrip": func() (string, error) {
		// kafka-go 0.2.1 messages have no headers: keys and a null value only.
		msgs := []kafka.Message{
			{Key: []byte("k1"), Value: []byte("v1")},
			{Key: []byte("k2")},
			{Value: []byte("v3")},
		}
		err := roundTrip(msgs, nil)
		if _, ok := err.(notApplicable); ok && err.Error() == noProduce {
			// Consuming on its own: the (empty) partition through Fetch v2.
			if _, rerr := read(1, 5*time.Second); rerr == nil || rerr.Error() != noFetch {
				return "", fmt.Errorf("%v; and fetching: %v", err, rerr)
			}
			return "", notApplicable(noProduce + "; " + noFetch)
		}
		return "", err
	},
	"gzip":   codec(gzip.NewCompressionCodec()),
	"snappy": codec(snappy.NewCompressionCodec()),
	"lz4":    codec(lz4.NewCompressionCodec()),
	"transactions": func() (string, error) {
		return "", notApplicable("kafka-go 0.2.1 has no transactional producer")
	},
	"zstd": func() (string, error) {
		return "", notApplicable("kafka-go 0.2.1 has no zstd codec (gzip, snappy and lz4 only), and zstd needs Produce v7")
	},
	"acks-0":   acks(0),
	"acks-1":   acks(1),
	"acks-all": acks(-1),
	"group-resume": func() (string, error) {
		var msgs []kafka.Message
		for i := 0; i < 10; i++ {
			msgs = append(msgs, kafka.Message{Value: []byte(fmt.Sprint(i))})
		}
		if err := produce(msgs, nil); err != nil {
			return "", err
		}
		return "", errors.New("Produce v2 unexpectedly succeeded; write the rest of this scenario")
	},
	"rebalance": func() (string, error) {
		// Group membership alone (JoinGroup v1, SyncGroup v0, Heartbeat v0,
		// OffsetFetch v1, LeaveGroup v0) works; the readers' fetches fail
		// (Fetch v2) but do not leave the group. Assignments are read from
		// the reader's log line "subscribed to partitions: map[0:-2 1:-2]".
		var mu sync.Mutex
		claims := make([][]string, 2)
		var readers []*kafka.Reader
		defer func() {
			for _, r := range readers {
				r.Close()
			}
		}()
		start := func(i int) {
			logger := log.New(recorder(func(line string) {
				if m := subscribed.FindStringSubmatch(line); m != nil {
					var ps []string
					for _, kv := range strings.Fields(m[1]) {
						ps = append(ps, strings.SplitN(kv, ":", 2)[0])
					}
					sort.Strings(ps)
					mu.Lock()
					claims[i] = ps
					mu.Unlock()
				}
			}), fmt.Sprintf("member %d ", i), 0)
			readers = append(readers, kafka.NewReader(kafka.ReaderConfig{
				Brokers:           []string{bootstrap},
				GroupID:           topic + "-group",
				Topic:             topic,
				HeartbeatInterval: 500 * time.Millisecond,
				SessionTimeout:    10 * time.Second,
				RebalanceTimeout:  10 * time.Second,
				Logger:            logger,
				ErrorLogger:       log.New(os.Stderr, fmt.Sprintf("member %d error ", i), 0),
			}))
		}
		deadline := time.Now().Add(40 * time.Second)
		wait := func(what string, ok func() bool) error {
			for time.Now().Before(deadline) {
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
		start(0)
		if err := wait("both partitions", func() bool { return reflect.DeepEqual(claims[0], []string{"0", "1"}) }); err != nil {
			return "", err
		}
		start(1)
		return "", wait("a split", func() bool {
			return len(claims[0]) == 1 && len(claims[1]) == 1 && claims[0][0] != claims[1][0]
		})
	},
	"offsets-by-time": func() (string, error) {
		base := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
		var msgs []kafka.Message
		for i := 0; i < 3; i++ {
			msgs = append(msgs, kafka.Message{Value: []byte(fmt.Sprintf("t%d", i)), Time: base.Add(time.Duration(i) * time.Second)})
		}
		if err := produce(msgs, nil); err != nil {
			if _, ok := err.(notApplicable); !ok {
				return "", err
			}
			// ListOffsets v1 itself works: on the empty partition the
			// first and last offsets are 0; check that much before n/a.
			conn, derr := kafka.DialLeader(context.Background(), "tcp", bootstrap, topic, 0)
			if derr != nil {
				return "", derr
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			first, last, oerr := conn.ReadOffsets()
			if oerr != nil || first != 0 || last != 0 {
				return "", fmt.Errorf("ListOffsets v1 on the empty partition: %d, %d, %v", first, last, oerr)
			}
			return "", notApplicable(noProduce + "; ListOffsets v1 answered correctly")
		}
		return "", errors.New("Produce v2 unexpectedly succeeded; write the rest of this scenario")
	},
	"admin": func() (string, error) {
		name := topic + "-admin"
		conn, err := kafka.Dial("tcp", bootstrap)
		if err != nil {
			return "", err
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		err = conn.CreateTopics(kafka.TopicConfig{
			Topic: name, NumPartitions: 2, ReplicationFactor: 1,
			ConfigEntries: []kafka.ConfigEntry{{ConfigName: "retention.ms", ConfigValue: "3600000"}},
		})
		if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
			return "", notApplicable("kafka-go 0.2.1 creates topics with CreateTopics v0, which Kafka 4 removed (the broker closes the connection, as Kafka does), and has no DescribeConfigs")
		}
		if err != nil {
			return "", fmt.Errorf("create: %w", err)
		}
		return "", errors.New("CreateTopics v0 unexpectedly succeeded; write the rest of this scenario")
	},
	"large-message": func() (string, error) {
		value := bytes.Repeat([]byte("a"), 1<<20)
		return "", roundTrip([]kafka.Message{{Value: value}}, nil)
	},
	"unknown-topic": func() (string, error) {
		err := produce([]kafka.Message{{Value: []byte("x")}}, nil)
		if err == nil {
			return "", errors.New("produce to a missing topic succeeded")
		}
		// The Writer's metadata connection has no topic of its own, so
		// ReadPartitions drops the topic's error code and the Writer fails
		// with "failed to find any partitions"; a Conn bound to the topic
		// shows the broker's UNKNOWN_TOPIC_OR_PARTITION.
		if !strings.Contains(err.Error(), "failed to find any partitions for topic "+topic) {
			return "", fmt.Errorf("unexpected error: %w", err)
		}
		nc, derr := net.DialTimeout("tcp", bootstrap, 10*time.Second)
		if derr != nil {
			return "", derr
		}
		conn := kafka.NewConnWith(nc, kafka.ConnConfig{Topic: topic})
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		_, merr := conn.ReadPartitions()
		var kerr kafka.Error
		if !errors.As(merr, &kerr) || kerr != kafka.UnknownTopicOrPartition {
			return "", fmt.Errorf("metadata of the missing topic: %v", merr)
		}
		return err.Error() + "; metadata: " + merr.Error(), nil
	},
}

// secure gives the default Dialer (which Dial, Writer and Reader use) the TLS
// settings of the --security properties; a SASL mode is n/a.
func secure(path string) error {
	props, err := properties.Read(path)
	if err != nil {
		return err
	}
	if props["sasl.mechanism"] != "" {
		return notApplicable(noSASL)
	}
	if props["security.protocol"] != "SSL" {
		return nil
	}
	pem, err := os.ReadFile(props["ssl.ca.location"])
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return fmt.Errorf("no certificate in %s", props["ssl.ca.location"])
	}
	pair, err := tls.LoadX509KeyPair(props["ssl.certificate.location"], props["ssl.key.location"])
	if err != nil {
		return err
	}
	// kafka-go 0.2.1 hands tls.Client this config as it is, without the
	// broker's host name: the one to verify is given here (every broker
	// of the matrix is on the bootstrap's host).
	host, _, err := net.SplitHostPort(bootstrap)
	if err != nil {
		return err
	}
	kafka.DefaultDialer.TLS = &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}, ServerName: host}
	return nil
}

func main() {
	flag.StringVar(&bootstrap, "bootstrap", "127.0.0.1:9092", "HOST:PORT")
	scenario := flag.String("scenario", "", "scenario name, or version")
	flag.StringVar(&topic, "topic", "compat", "topic")
	securityFile := flag.String("security", "", "a file of Kafka client properties: security.protocol, sasl.*, ssl.*")
	flag.Parse()
	result, detail := "pass", ""
	fn, ok := scenarios[*scenario]
	var err error
	if *securityFile != "" && *scenario != "version" {
		err = secure(*securityFile)
	}
	if *scenario == "version" {
		detail = kafkaGoVersion
	} else if !ok {
		result, detail = "n/a", "scenario not implemented for kafka-go"
	} else if err == nil {
		var out string
		if out, err = fn(); err == nil {
			detail = out
		}
	}
	if err != nil {
		var na notApplicable
		if errors.As(err, &na) {
			result = "n/a"
		} else {
			result = "fail"
		}
		detail = err.Error()
	}
	json.NewEncoder(os.Stdout).Encode(map[string]string{"result": result, "detail": detail})
}
