"""aiokafka scenarios (see compat/README.md for the contract)."""

import asyncio
import time

import aiokafka
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.abc import AbstractTokenProvider
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError
from aiokafka.helpers import create_ssl_context
from aiokafka.structs import OffsetAndMetadata

from compat.pyscenarios import (
    COMMITTED,
    TRANSACTIONS,
    VALUE_1MIB,
    check,
    main,
    numbered,
    roundtrip_messages,
    unsecured_jwt,
)


async def wait_until(condition, timeout: float, what: str):
    """The first truthy result of awaiting ``condition()``, asked every 0.1 s for ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await condition()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def sync(coroutine_fn):
    return lambda args: asyncio.run(asyncio.wait_for(coroutine_fn(args), 50))


class UnsecuredToken(AbstractTokenProvider):
    def __init__(self, subject: str):
        self.jwt = unsecured_jwt(subject)

    async def token(self):
        return self.jwt


def connection(args) -> dict:
    """bootstrap_servers and aiokafka's settings for the --security properties."""
    s = args.security
    config = {"bootstrap_servers": args.bootstrap, "security_protocol": s.get("security.protocol", "PLAINTEXT")}
    if "ssl.ca.location" in s:
        config["ssl_context"] = create_ssl_context(
            cafile=s["ssl.ca.location"], certfile=s.get("ssl.certificate.location"), keyfile=s.get("ssl.key.location"))
    if "sasl.mechanism" in s:
        config["sasl_mechanism"] = s["sasl.mechanism"]
        if s["sasl.mechanism"] == "OAUTHBEARER":
            config["sasl_oauth_token_provider"] = UnsecuredToken(s["sasl.username"])
        else:
            config.update(sasl_plain_username=s["sasl.username"], sasl_plain_password=s["sasl.password"])
    return config


def producer(args, **config):
    return AIOKafkaProducer(**connection(args), **config)


def consumer(args, **config):
    config.setdefault("auto_offset_reset", "earliest")
    return AIOKafkaConsumer(**connection(args), **config)


async def produce(args, items, **config):
    p = producer(args, **config)
    await p.start()
    try:
        sent = [await p.send(args.topic, value=v, key=k, headers=h) for k, v, h in items]
        await asyncio.gather(*sent)
    finally:
        await p.stop()


async def take(c, count: int, timeout: float = 15):
    got = []
    async with asyncio.timeout(timeout):
        async for message in c:
            got.append(message)
            if len(got) == count:
                break
    return got


async def read(args, count: int, **config):
    c = consumer(args, **config)
    await c.start()
    try:
        c.assign([TopicPartition(args.topic, 0)])
        await c.seek_to_beginning()
        return await take(c, count)
    finally:
        await c.stop()


async def metadata(args):
    a = AIOKafkaAdminClient(**connection(args))
    await a.start()
    try:
        cluster = await a.describe_cluster()
        topics = await a.describe_topics([args.topic])
    finally:
        await a.close()
    partitions = sorted(p["partition"] for p in topics[0]["partitions"])
    check(topics[0]["error_code"] == 0, f"describe_topics: {topics}")
    check(partitions == [0], f"partitions {partitions}")
    return f"{len(cluster['brokers'])} broker(s), topic with partitions {partitions}"


async def roundtrip(args):
    sent = roundtrip_messages()
    await produce(args, sent)
    got = [(m.key, m.value, list(m.headers)) for m in await read(args, len(sent))]
    check(got == sent, f"got {got}")


async def produce_and_read(args, **config):
    values = numbered(20)
    await produce(args, [(b"k", v, None) for v in values], **config)
    got = [m.value for m in await read(args, len(values))]
    check(got == values, "values differ")


def codec(name):
    return sync(lambda args: produce_and_read(args, compression_type=name))


def acks(value):
    return sync(lambda args: produce_and_read(args, acks=value))


async def group_resume(args):
    await produce(args, [(None, v, None) for v in numbered(10)])
    group = f"{args.topic}-group"
    tp = TopicPartition(args.topic, 0)
    first = consumer(args, group_id=group, enable_auto_commit=False)
    await first.start()
    first.subscribe([args.topic])
    seen = await take(first, 4)
    await first.commit({tp: OffsetAndMetadata(seen[-1].offset + 1, "")})
    await first.stop()
    second = consumer(args, group_id=group, enable_auto_commit=False)
    await second.start()
    second.subscribe([args.topic])
    rest = await take(second, 6)
    committed = await second.committed(tp)
    await second.stop()
    check([m.offset for m in rest] == list(range(4, 10)), f"resumed at {[m.offset for m in rest]}")
    check(committed == 4, f"committed {committed}")


async def rebalance(args):
    group = f"{args.topic}-group"
    members = [consumer(args, group_id=group) for _ in range(2)]

    async def poll(c):
        while True:
            await c.getmany(timeout_ms=200)

    async def until(predicate, what):
        async with asyncio.timeout(30):
            while not predicate():
                await asyncio.sleep(0.1)

    tasks = []
    try:
        for c in members:
            await c.start()
        members[0].subscribe([args.topic])
        tasks.append(asyncio.create_task(poll(members[0])))
        await until(lambda: len(members[0].assignment()) == 2, "first member to get both partitions")
        members[1].subscribe([args.topic])
        tasks.append(asyncio.create_task(poll(members[1])))

        def split():
            a, b = ({tp.partition for tp in m.assignment()} for m in members)
            return len(a) == 1 and len(b) == 1 and a != b

        await until(split, "the two members to hold one partition each")
    finally:
        for t in tasks:
            t.cancel()
        for c in members:
            await c.stop()


async def offsets_by_time(args):
    base = int(time.time() * 1000) - 60000
    # acks=all: in a cluster an acks=1 write may not be below the high
    # watermark yet, and offsets by time look only there (as in Kafka).
    p = producer(args, acks="all")
    await p.start()
    for i in range(3):
        await p.send_and_wait(args.topic, value=b"t%d" % i, timestamp_ms=base + 1000 * i)
    await p.stop()
    tp = TopicPartition(args.topic, 0)
    c = consumer(args)
    await c.start()
    try:
        c.assign([tp])
        found = (await c.offsets_for_times({tp: base + 500}))[tp]
        check(found is not None and found.offset == 1, f"offsets_for_times gave {found}")
        c.seek(tp, found.offset)
        message = (await take(c, 1))[0]
    finally:
        await c.stop()
    check(message.value == b"t1" and message.timestamp == base + 1000, f"got {message}")


async def admin(args):
    name = f"{args.topic}-admin"
    a = AIOKafkaAdminClient(**connection(args))
    await a.start()
    try:
        await a.create_topics([NewTopic(name, 2, 1, topic_configs={"retention.ms": "3600000"})])
        check(name in await a.list_topics(), "created topic not listed")
        # In a cluster the broker asked may learn of the new topic a moment
        # after the one that created it (as Kafka's brokers do): until then
        # it answers UNKNOWN_TOPIC_OR_PARTITION (3).
        resource = ConfigResource(ConfigResourceType.TOPIC, name)

        async def described():
            responses = await a.describe_configs([resource])
            unknown = any(r[0] == 3 for response in responses for r in response.resources)
            return None if unknown else responses

        flat = repr(await wait_until(described, 30, "a broker to know the new topic"))
        check("retention.ms" in flat and "3600000" in flat, f"describe_configs: {flat[:300]}")
        await a.delete_topics([name])
        # In a cluster another broker may list it until the deletion reaches it.

        async def gone():
            return name not in await a.list_topics()

        await wait_until(gone, 30, "the deleted topic to go")
    finally:
        await a.close()


async def large_message(args):
    await produce(args, [(None, VALUE_1MIB, None)], max_request_size=2 * 1024 * 1024)
    message = (await read(args, 1))[0]
    check(message.value == VALUE_1MIB, f"value of {len(message.value)} bytes differs")


async def unknown_topic(args):
    try:
        await produce(args, [(None, b"x", None)], request_timeout_ms=5000)
    except KafkaError as e:
        return f"{type(e).__name__}: {e}"
    raise AssertionError("produce to a missing topic succeeded")


async def transactions(args):
    p = producer(args, transactional_id=f"compat-txn-{args.topic}")
    await p.start()
    try:
        for values, commit in TRANSACTIONS:
            await p.begin_transaction()
            for v in values:
                await p.send_and_wait(args.topic, value=v)
            await (p.commit_transaction() if commit else p.abort_transaction())
    finally:
        await p.stop()
    got = [m.value for m in await read(args, len(COMMITTED), isolation_level="read_committed")]
    check(got == COMMITTED, f"read_committed got {got}")
    return "committed read, aborted skipped"


SCENARIOS = {
    "metadata": sync(metadata),
    "roundtrip": sync(roundtrip),
    **{name: codec(name) for name in ("gzip", "snappy", "lz4", "zstd")},
    "acks-0": acks(0),
    "acks-1": acks(1),
    "acks-all": acks("all"),
    "group-resume": sync(group_resume),
    "rebalance": sync(rebalance),
    "offsets-by-time": sync(offsets_by_time),
    "admin": sync(admin),
    "large-message": sync(large_message),
    "unknown-topic": sync(unknown_topic),
    "transactions": sync(transactions),
}

if __name__ == "__main__":
    main(SCENARIOS, aiokafka.__version__)
