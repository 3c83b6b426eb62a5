"""confluent-kafka (librdkafka) scenarios (see compat/README.md for the contract)."""

import threading
import time
import uuid

import confluent_kafka
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from compat.pyscenarios import (
    COMMITTED,
    TRANSACTIONS,
    VALUE_1MIB,
    check,
    main,
    numbered,
    roundtrip_messages,
    wait_until,
)


def connection(args) -> dict:
    """bootstrap.servers and the --security properties, which are librdkafka's own names; for
    OAUTHBEARER, librdkafka's unsecured JWT with the user as its sub."""
    config = {"bootstrap.servers": args.bootstrap, **args.security}
    if config.get("sasl.mechanism") == "OAUTHBEARER":
        config["enable.sasl.oauthbearer.unsecure.jwt"] = True
        config["sasl.oauthbearer.config"] = f"principal={config.pop('sasl.username')}"
    return config


def producer(args, **config):
    return Producer({**connection(args), **config})


def consumer(args, **config):
    base = {**connection(args), "group.id": f"{args.topic}-{uuid.uuid4()}"}
    base.update({"auto.offset.reset": "earliest", "enable.auto.commit": False})
    return Consumer({**base, **config})


def produce(args, items, **config):
    """Produce (key, value, headers) items; raise on the first delivery error."""
    errors = []
    p = producer(args, **config)
    for key, value, headers in items:
        p.produce(args.topic, value=value, key=key, headers=headers, on_delivery=lambda e, m: e and errors.append(e))
    left = p.flush(30)
    check(left == 0, f"{left} messages not delivered")
    if errors:
        raise KafkaException(errors[0])


def poll_messages(c, count: int, timeout: float = 15):
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            raise KafkaException(m.error())
        got.append(m)
    check(len(got) == count, f"consumed {len(got)} of {count} messages")
    return got


def read(args, count: int, **config):
    c = consumer(args, **config)
    c.assign([TopicPartition(args.topic, 0, confluent_kafka.OFFSET_BEGINNING)])
    try:
        return poll_messages(c, count)
    finally:
        c.close()


def metadata(args):
    md = AdminClient(connection(args)).list_topics(timeout=10)
    check(args.topic in md.topics, f"{args.topic} not in {sorted(md.topics)}")
    partitions = sorted(md.topics[args.topic].partitions)
    check(partitions == [0], f"partitions {partitions}")
    return f"{len(md.brokers)} broker(s), topic with partitions {partitions}"


def roundtrip(args):
    sent = roundtrip_messages()
    produce(args, sent)
    got = [(m.key(), m.value(), m.headers() or []) for m in read(args, len(sent))]
    check(got == sent, f"got {got}")


def produce_and_read(args, **config):
    values = numbered(20)
    produce(args, [(b"k", v, None) for v in values], **config)
    got = [m.value() for m in read(args, len(values))]
    check(got == values, "values differ")


def codec(name):
    return lambda args: produce_and_read(args, **{"compression.type": name})


def acks(value):
    return lambda args: produce_and_read(args, acks=value)


def group_resume(args):
    produce(args, [(None, v, None) for v in numbered(10)])
    group = f"{args.topic}-group"
    first = consumer(args, **{"group.id": group})
    first.subscribe([args.topic])
    seen = poll_messages(first, 4)
    first.commit(offsets=[TopicPartition(args.topic, 0, seen[-1].offset() + 1)], asynchronous=False)
    first.close()
    second = consumer(args, **{"group.id": group})
    second.subscribe([args.topic])
    rest = poll_messages(second, 6)
    committed = second.committed([TopicPartition(args.topic, 0)], timeout=10)[0].offset
    second.close()
    check([m.offset() for m in rest] == list(range(4, 10)), f"resumed at {[m.offset() for m in rest]}")
    check(committed == 4, f"committed {committed}")


def rebalance(args):
    group = f"{args.topic}-group"
    members = [consumer(args, **{"group.id": group}) for _ in range(2)]
    assigned = [set(), set()]
    stop = threading.Event()

    def poll(i):
        def on_assign(c, parts):
            assigned[i] = {p.partition for p in parts}

        def on_revoke(c, parts):
            assigned[i] = set()

        members[i].subscribe([args.topic], on_assign=on_assign, on_revoke=on_revoke)
        while not stop.is_set():
            members[i].poll(0.2)

    threads = [threading.Thread(target=poll, args=(0,))]
    threads[0].start()
    try:
        wait_until(lambda: assigned[0] == {0, 1}, 30, "first member to get both partitions")
        threads.append(threading.Thread(target=poll, args=(1,)))
        threads[1].start()
        wait_until(lambda: len(assigned[0]) == len(assigned[1]) == 1 and assigned[0] != assigned[1], 30, "a split")
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        for m in members:
            m.close()


def offsets_by_time(args):
    base = int(time.time() * 1000) - 60000
    p = producer(args)
    for i in range(3):
        p.produce(args.topic, value=b"t%d" % i, timestamp=base + 1000 * i)
    check(p.flush(30) == 0, "not delivered")
    c = consumer(args)
    found = c.offsets_for_times([TopicPartition(args.topic, 0, base + 500)], timeout=10)[0]
    check(found.offset == 1, f"offsets_for_times gave {found}")
    c.assign([found])
    message = poll_messages(c, 1)[0]
    c.close()
    check(message.value() == b"t1" and message.timestamp()[1] == base + 1000, f"got {message.value()}")


def admin(args):
    name = f"{args.topic}-admin"
    a = AdminClient(connection(args))
    topic = NewTopic(name, num_partitions=2, replication_factor=1, config={"retention.ms": "3600000"})
    a.create_topics([topic])[name].result(15)
    resource = ConfigResource(ConfigResource.Type.TOPIC, name)

    def described():
        # In a cluster the broker asked may learn of the new topic a moment
        # after the one that created it, answering UNKNOWN_TOPIC_OR_PARTITION.
        try:
            return a.describe_configs([resource])[resource].result(15)
        except KafkaException as e:
            if e.args[0].code() == confluent_kafka.KafkaError.UNKNOWN_TOPIC_OR_PART:
                return None
            raise

    entries = wait_until(described, 30, "a broker to know the new topic")
    check(entries["retention.ms"].value == "3600000", f"retention.ms = {entries['retention.ms'].value}")
    a.delete_topics([name])[name].result(15)
    wait_until(lambda: name not in a.list_topics(timeout=10).topics, 10, "the topic to go")


def large_message(args):
    produce(args, [(None, VALUE_1MIB, None)], **{"message.max.bytes": 2 * 1024 * 1024})
    message = read(args, 1)[0]
    check(message.value() == VALUE_1MIB, f"value of {len(message.value())} bytes differs")


def transactions(args):
    p = producer(args, **{"transactional.id": f"compat-txn-{args.topic}"})
    p.init_transactions(30)
    for values, commit in TRANSACTIONS:
        p.begin_transaction()
        for v in values:
            p.produce(args.topic, value=v)
        p.commit_transaction(30) if commit else p.abort_transaction(30)
    got = [m.value() for m in read(args, len(COMMITTED), **{"isolation.level": "read_committed"})]
    check(got == COMMITTED, f"read_committed got {got}")
    return "committed read, aborted skipped"


def unknown_topic(args):
    try:
        produce(args, [(None, b"x", None)], **{"topic.metadata.propagation.max.ms": 2000})
    except KafkaException as e:
        return str(e)
    raise AssertionError("produce to a missing topic succeeded")


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
    main(SCENARIOS, f"{confluent_kafka.__version__} (librdkafka {confluent_kafka.libversion()[0]})")
