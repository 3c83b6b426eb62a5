"""kafka-python scenarios (see compat/README.md for the contract)."""

import threading
import time

import kafka
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import KafkaError
from kafka.net.sasl.oauth import AbstractTokenProvider

from compat.pyscenarios import (
    COMMITTED,
    TRANSACTIONS,
    VALUE_1MIB,
    check,
    main,
    numbered,
    roundtrip_messages,
    unsecured_jwt,
    wait_until,
)


class UnsecuredToken(AbstractTokenProvider):
    def __init__(self, subject: str):
        self.jwt = unsecured_jwt(subject)

    def token(self):
        return self.jwt


def security(args) -> dict:
    """kafka-python's settings for the --security properties."""
    s = args.security
    config = {"security_protocol": s.get("security.protocol", "PLAINTEXT")}
    for key, setting in (("ssl.ca.location", "ssl_cafile"), ("ssl.certificate.location", "ssl_certfile"),
                         ("ssl.key.location", "ssl_keyfile"), ("sasl.mechanism", "sasl_mechanism"),
                         ("sasl.username", "sasl_plain_username"), ("sasl.password", "sasl_plain_password")):
        if key in s:
            config[setting] = s[key]
    if s.get("sasl.mechanism") == "OAUTHBEARER":
        config["sasl_oauth_token_provider"] = UnsecuredToken(config.pop("sasl_plain_username"))
    return config


def producer(args, **config):
    return KafkaProducer(bootstrap_servers=args.bootstrap, **security(args), **config)


def consumer(args, **config):
    config.setdefault("auto_offset_reset", "earliest")
    config.setdefault("consumer_timeout_ms", 10000)
    return KafkaConsumer(bootstrap_servers=args.bootstrap, **security(args), **config)


def read(args, count: int, partition: int = 0, **config):
    c = consumer(args, **config)
    c.assign([TopicPartition(args.topic, partition)])
    c.seek_to_beginning()
    got = []
    for message in c:
        got.append(message)
        if len(got) == count:
            break
    c.close()
    check(len(got) == count, f"consumed {len(got)} of {count} messages")
    return got


def metadata(args):
    c = consumer(args)
    topics = c.topics()
    partitions = c.partitions_for_topic(args.topic)
    brokers = c._client.cluster.brokers()
    c.close()
    check(args.topic in topics, f"{args.topic} not in {sorted(topics)}")
    check(partitions == {0}, f"partitions {partitions}")
    return f"{len(brokers)} broker(s), topic with partitions {sorted(partitions)}"


def roundtrip(args):
    sent = roundtrip_messages()
    p = producer(args)
    for key, value, headers in sent:
        p.send(args.topic, key=key, value=value, headers=headers)
    p.flush()
    p.close()
    got = [(m.key, m.value, list(m.headers)) for m in read(args, len(sent))]
    check(got == sent, f"got {got}")


def produce_and_read(args, **config):
    values = numbered(20)
    p = producer(args, **config)
    futures = [p.send(args.topic, key=b"k", value=v) for v in values]
    p.flush()
    for f in futures:
        f.get(10)
    p.close()
    got = [m.value for m in read(args, len(values))]
    check(got == values, "values differ")


def codec(name):
    return lambda args: produce_and_read(args, compression_type=name)


def acks(value):
    return lambda args: produce_and_read(args, acks=value)


def group_resume(args):
    values = numbered(10)
    p = producer(args)
    for v in values:
        p.send(args.topic, value=v)
    p.flush()
    group = f"{args.topic}-group"
    first = consumer(args, group_id=group, enable_auto_commit=False)
    first.subscribe([args.topic])
    seen = []
    for m in first:
        seen.append(m)
        if len(seen) == 4:
            break
    tp = TopicPartition(args.topic, 0)
    first.commit({tp: OffsetAndMetadata(seen[-1].offset + 1, "", -1)})
    first.close()
    second = consumer(args, group_id=group, enable_auto_commit=False)
    second.subscribe([args.topic])
    rest = []
    for m in second:
        rest.append(m)
        if len(rest) == 6:
            break
    committed = second.committed(tp)
    second.close()
    check([m.offset for m in rest] == list(range(4, 10)), f"resumed at {[m.offset for m in rest]}")
    check(committed == 4, f"committed {committed}")


def rebalance(args):
    group = f"{args.topic}-group"
    members = [consumer(args, group_id=group) for _ in range(2)]
    stop = threading.Event()

    def poll(c):
        c.subscribe([args.topic])
        while not stop.is_set():
            c.poll(200)

    threads = [threading.Thread(target=poll, args=(members[0],))]
    threads[0].start()
    try:
        wait_until(lambda: len(members[0].assignment()) == 2, 30, "first member to get both partitions")
        threads.append(threading.Thread(target=poll, args=(members[1],)))
        threads[1].start()

        def split():
            a, b = ({tp.partition for tp in m.assignment()} for m in members)
            return len(a) == 1 and len(b) == 1 and a != b

        wait_until(split, 30, "the two members to hold one partition each")
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        for m in members:
            m.close()


def offsets_by_time(args):
    base = int(time.time() * 1000) - 60000
    # acks=all: in a cluster an acks=1 write may not be below the high
    # watermark yet, and offsets by time look only there (as in Kafka).
    p = producer(args, acks="all")
    for i in range(3):
        p.send(args.topic, value=b"t%d" % i, timestamp_ms=base + 1000 * i)
    p.flush()
    tp = TopicPartition(args.topic, 0)
    c = consumer(args)
    c.assign([tp])
    found = c.offsets_for_times({tp: base + 500})[tp]
    check(found is not None and found.offset == 1, f"offsets_for_times gave {found}")
    c.seek(tp, found.offset)
    message = next(iter(c))
    c.close()
    check(message.value == b"t1" and message.timestamp == base + 1000, f"got {message}")


def admin(args):
    name = f"{args.topic}-admin"
    a = KafkaAdminClient(bootstrap_servers=args.bootstrap, **security(args))
    a.create_topics({name: {"num_partitions": 2, "replication_factor": 1, "configs": {"retention.ms": "3600000"}}})
    wait_until(lambda: name in a.list_topics(), 10, "the topic to appear")
    # In a cluster the broker asked may learn of the new topic a moment after
    # the one that created it: until then it answers
    # UNKNOWN_TOPIC_OR_PARTITION, which kafka-python reports as no configs.
    resource = ConfigResource(ConfigResourceType.TOPIC, name)
    configs = wait_until(lambda: a.describe_configs([resource]).get("topic", {}).get(name), 30, "a broker to know the new topic")
    flat = repr(configs)
    check("retention.ms" in flat and "3600000" in flat, f"describe_configs: {flat[:300]}")
    a.delete_topics([name])
    wait_until(lambda: name not in a.list_topics(), 10, "the topic to go")
    a.close()


def large_message(args):
    p = producer(args, max_request_size=2 * 1024 * 1024)
    p.send(args.topic, value=VALUE_1MIB).get(30)
    p.close()
    message = read(args, 1)[0]
    check(message.value == VALUE_1MIB, f"value of {len(message.value)} bytes differs")


def unknown_topic(args):
    p = producer(args, max_block_ms=5000)
    try:
        p.send(args.topic, value=b"x").get(10)
    except KafkaError as e:
        return f"{type(e).__name__}: {e}"
    finally:
        p.close(1)
    raise AssertionError("produce to a missing topic succeeded")


def transactions(args):
    p = producer(args, transactional_id=f"compat-txn-{args.topic}")
    p.init_transactions()
    for values, commit in TRANSACTIONS:
        p.begin_transaction()
        for v in values:
            p.send(args.topic, value=v)
        p.commit_transaction() if commit else p.abort_transaction()
    p.close()
    got = [m.value for m in read(args, len(COMMITTED), isolation_level="read_committed")]
    check(got == COMMITTED, f"read_committed got {got}")
    return "committed read, aborted skipped"


SCENARIOS = {
    "metadata": metadata,
    "roundtrip": roundtrip,
    **{name: codec(name) for name in ("gzip", "snappy", "lz4", "zstd")},
    "acks-0": acks(0),
    "acks-1": acks(1),
    "acks-all": acks("all"),
    "group-resume": group_resume,
    "rebalance": rebalance,
    "offsets-by-time": offsets_by_time,
    "admin": admin,
    "large-message": large_message,
    "unknown-topic": unknown_topic,
    "transactions": transactions,
}

if __name__ == "__main__":
    main(SCENARIOS, kafka.__version__)
