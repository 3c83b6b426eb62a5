"""Bad input: exact answers where Kafka has them, and a fuzz under load.

Targeted: ApiVersions above our range is answered UNSUPPORTED_VERSION in
the v0 layout listing our ApiVersions range (KIP-511), and the connection
stays usable; an unknown API key, an unknown version of another API, a
truncated header, an impossible array length and a frame declared above
``socket.request.max.bytes`` close the connection; a Produce whose batch
fails its CRC gets CORRUPT_MESSAGE and writes nothing.

Fuzz: many concurrent connections send thousands of malformed frames
(bounded in number and time) while confluent-kafka produces and consumes
on its own connections. The client must see no error and get every message
back; the broker must log no handler failure and still serve new clients.
"""

from __future__ import annotations

import logging
import random
import socket
import struct
import threading
import time

import pytest

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.framing import decode_response, encode_request
from pybroker.protocol.messages.api_versions_request import ApiVersionsRequest
from pybroker.protocol.messages.fetch_request import FetchPartition, FetchRequest, FetchTopic
from pybroker.protocol.messages.list_offsets_request import ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic
from pybroker.protocol.messages.metadata_request import MetadataRequest, MetadataRequestTopic
from pybroker.protocol.messages.produce_request import PartitionProduceData, ProduceRequest, TopicProduceData
from pybroker.protocol.record_batch import CRC_OFFSET
from pybroker.protocol.records import NewRecord, build_batch
from pybroker.protocol.registry import ApiKey
from pybroker.handlers import HANDLERS
from pybroker.testing import running_broker

from .wire import Wire

MAX_REQUEST = 1024 * 1024


def request_header(
    api_key: int, version: int, correlation_id: int, client_id: bytes = b"bad", flexible: bool = False
) -> bytes:
    """Request header v1 (v2 with ``flexible``: an empty tagged-field section)."""
    head = struct.pack(">hhih", api_key, version, correlation_id, len(client_id)) + client_id
    return head + (b"\x00" if flexible else b"")


def _frame(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


class Conn(Wire):
    """Wire with a request/response helper."""

    correlation_id = 0

    def request(self, body, version: int):
        self.correlation_id += 1
        self.send(body, version, self.correlation_id)
        header, response = self.receive(body.API_KEY, version)
        assert header.correlation_id == self.correlation_id
        return response

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@pytest.fixture(scope="module")
def broker():
    with running_broker({"num.partitions": "3", "socket.request.max.bytes": str(MAX_REQUEST)}) as b:
        yield b


def serves(broker) -> bool:
    """A new connection gets a proper ApiVersions answer."""
    with Conn(broker.bootstrap_servers) as conn:
        response = conn.request(ApiVersionsRequest(client_software_name="t", client_software_version="1"), 3)
    return response.error_code == 0 and any(k.api_key == ApiKey.PRODUCE for k in response.api_keys)


def produce_request(topic: str, batch: bytes, partition: int = 0, acks: int = -1) -> ProduceRequest:
    return ProduceRequest(
        acks=acks,
        timeout_ms=10_000,
        topic_data=[
            TopicProduceData(name=topic, partition_data=[PartitionProduceData(index=partition, records=batch)])
        ],
    )


def log_end(conn: Conn, topic: str, partition: int = 0) -> int:
    response = conn.request(
        ListOffsetsRequest(
            replica_id=-1,
            topics=[
                ListOffsetsTopic(name=topic, partitions=[ListOffsetsPartition(partition_index=partition, timestamp=-1)])
            ],
        ),
        7,
    )
    (p,) = response.topics[0].partitions
    assert p.error_code == 0
    return p.offset


# -- targeted ------------------------------------------------------------------


def test_api_versions_above_our_range(broker):
    lo, hi = HANDLERS[ApiKey.API_VERSIONS].min_version, HANDLERS[ApiKey.API_VERSIONS].max_version
    with Conn(broker.bootstrap_servers) as conn:
        # v9 with a flexible header and a body we cannot know the layout of.
        conn.send_raw(_frame(request_header(ApiKey.API_VERSIONS, 9, 4242, flexible=True) + b"\x02x\x021\x00"))
        frame = conn.frame()
        assert frame is not None
        header, body = decode_response(ApiKey.API_VERSIONS, 0, frame)
        assert header.correlation_id == 4242
        assert body.error_code == ErrorCode.UNSUPPORTED_VERSION == 35
        assert [(k.api_key, k.min_version, k.max_version) for k in body.api_keys] == [(18, lo, hi)]
        # The client retries at our highest version on the same connection.
        conn.correlation_id = 4242
        retry = conn.request(ApiVersionsRequest(client_software_name="t", client_software_version="1"), hi)
        assert retry.error_code == 0
        assert {k.api_key for k in retry.api_keys} == set(HANDLERS)


def _unknown_key() -> int:
    return next(k for k in range(32767, 0, -1) if k not in HANDLERS)


CLOSING_FRAMES = {
    "unknown api key": lambda: request_header(_unknown_key(), 0, 1) + b"\x00" * 16,
    "unknown version": lambda: request_header(ApiKey.METADATA, 999, 1) + b"\x00" * 16,
    "negative version": lambda: request_header(ApiKey.FETCH, -1, 1) + b"\x00" * 16,
    "truncated header": lambda: b"\x00\x03\x00",
    "absurd array length": lambda: request_header(ApiKey.METADATA, 1, 1) + struct.pack(">i", 0x7FFFFFF0) + b"\x00\x01a",
    "absurd compact array length": lambda: (
        request_header(ApiKey.METADATA, 12, 1, flexible=True) + b"\xff\xff\xff\xff\x07" + b"\x00" * 8
    ),
    "body cut short": lambda: request_header(ApiKey.LIST_OFFSETS, 7, 1) + b"\xff\xff\xff\xff\x00",
}


@pytest.mark.parametrize("name", list(CLOSING_FRAMES))
def test_malformed_request_closes_the_connection(broker, name):
    with Conn(broker.bootstrap_servers) as conn:
        conn.send_raw(_frame(CLOSING_FRAMES[name]()))
        assert conn.frame() is None, "expected the broker to close without answering"
    assert serves(broker)


def test_bytes_after_the_body_are_ignored_as_kafka_does(broker):
    """librdkafka's Metadata v9+ for all topics (AdminClient.list_topics)
    leaves 3 zero bytes after the body: it reserves 4 bytes for the topic
    count and never shrinks them to the 1-byte null. Kafka ignores bytes
    after the body, so must we. This is the frame librdkafka 2.16 sends."""
    frame = bytes.fromhex("0003000c00000003000772646b61666b610000000000010000")
    with Conn(broker.bootstrap_servers) as conn:
        conn.send_raw(_frame(frame))
        header, response = conn.receive(ApiKey.METADATA, 12)
        assert header.correlation_id == 3
        assert [b.node_id for b in response.brokers] == [1]


def test_frame_above_socket_request_max_bytes_closes(broker):
    with Conn(broker.bootstrap_servers) as conn:
        # Only the size prefix and a little of the body: the broker must
        # refuse on the declared size, without waiting for the rest.
        conn.send_raw(struct.pack(">i", MAX_REQUEST + 1) + request_header(ApiKey.API_VERSIONS, 0, 1))
        assert conn.closed_by_peer()
    with Conn(broker.bootstrap_servers) as conn:
        # A Produce of exactly the limit is taken.
        conn.request(MetadataRequest(topics=[MetadataRequestTopic(name="at-the-limit")]), 9)

        def frame_of(size: int) -> bytes:
            batch = build_batch([NewRecord(b"k", b"x" * size, [], int(time.time() * 1000))])
            return encode_request(produce_request("at-the-limit", batch), 9, 77, "bad")

        size = MAX_REQUEST - 200
        size += MAX_REQUEST + 4 - len(frame_of(size))
        frame = frame_of(size)
        assert len(frame) == 4 + MAX_REQUEST
        conn.send_raw(frame)
        header, response = conn.receive(ApiKey.PRODUCE, 9)
        assert header.correlation_id == 77
        assert response.responses[0].partition_responses[0].error_code == 0
    assert serves(broker)


def test_produce_with_a_bad_crc_writes_nothing(broker):
    topic = "crc-check"
    good = build_batch([NewRecord(b"k", b"good", [("h", b"1")], int(time.time() * 1000))])
    bad = bytearray(build_batch([NewRecord(b"k", b"evil", [], int(time.time() * 1000))]))
    bad[-1] ^= 0x40  # a bit in the last record, inside the CRC's range
    crc_only = bytearray(good)
    crc_only[CRC_OFFSET] ^= 0x01  # the stored CRC itself
    with Conn(broker.bootstrap_servers) as conn:
        conn.request(MetadataRequest(topics=[MetadataRequestTopic(name=topic)], allow_auto_topic_creation=True), 9)
        ok = conn.request(produce_request(topic, good), 9)
        assert ok.responses[0].partition_responses[0].error_code == 0
        end = log_end(conn, topic)
        assert end == 1
        for batch in (bytes(bad), bytes(crc_only)):
            response = conn.request(produce_request(topic, batch), 9)
            (p,) = response.responses[0].partition_responses
            assert p.error_code == ErrorCode.CORRUPT_MESSAGE == 2
            assert p.base_offset == -1
            assert log_end(conn, topic) == end
        # And the log holds just the good batch.
        fetched = conn.request(
            FetchRequest(
                max_wait_ms=0,
                topics=[
                    FetchTopic(
                        topic=topic,
                        partitions=[FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=1 << 20)],
                    )
                ],
            ),
            12,
        )
        stored = bytes(fetched.responses[0].partitions[0].records)
        # Offset 0, the broker's leader epoch, then the batch as sent.
        assert stored[:8] == bytes(8) and stored[8:12] == good[8:12] and stored[16:] == good[16:]


# -- fuzz ----------------------------------------------------------------------

FUZZ_THREADS = 6
CONNECTIONS_PER_ROUND = 8  # open at once per thread
ROUNDS = 100
FUZZ_SECONDS = 40  # hard bound on the fuzzing phase
CLIENT_MESSAGES = 3000


class Fuzzer:
    """Malformed traffic of many kinds. Every connection gets a few benign
    frames (which must be answered) and ends with one bad one."""

    def __init__(self, seed: int, topic_for_mutated_produce: str):
        self.rng = random.Random(seed)
        self.junk_topic = topic_for_mutated_produce
        self.frames_sent = 0
        self.kinds: dict[str, int] = {}
        self.templates = self._templates()

    def _templates(self) -> list[bytes]:
        """Valid request frames (size prefix included) to mutate."""
        now = int(time.time() * 1000)
        batch = build_batch([NewRecord(b"k", b"v" * 40, [("h", None)], now)], compression=1)
        return [
            encode_request(MetadataRequest(topics=[MetadataRequestTopic(name=self.junk_topic)]), 9, 1, "fz"),
            encode_request(MetadataRequest(topics=None), 1, 1, "fz"),
            encode_request(produce_request(self.junk_topic, batch, acks=1), 9, 1, "fz"),
            encode_request(produce_request(self.junk_topic, batch, acks=1), 3, 1, "fz"),
            encode_request(
                FetchRequest(
                    max_wait_ms=50,
                    topics=[
                        FetchTopic(
                            topic=self.junk_topic, partitions=[FetchPartition(partition=0, partition_max_bytes=1 << 16)]
                        )
                    ],
                ),
                11,
                1,
                "fz",
            ),
            encode_request(
                ListOffsetsRequest(
                    topics=[ListOffsetsTopic(name=self.junk_topic, partitions=[ListOffsetsPartition(timestamp=-2)])]
                ),
                5,
                1,
                "fz",
            ),
            encode_request(ApiVersionsRequest(client_software_name="fz", client_software_version="1"), 3, 1, "fz"),
        ]

    def benign(self) -> bytes:
        r = self.rng.random()
        if r < 0.4:
            return encode_request(ApiVersionsRequest(), self.rng.choice((0, 1, 2)), self.rng.randrange(1 << 30), "fz")
        if r < 0.6:
            # Too new an ApiVersions: answered (error 35), connection kept.
            return _frame(request_header(ApiKey.API_VERSIONS, self.rng.randrange(5, 100), 3, b"fz", True) + b"\x00")
        return encode_request(
            MetadataRequest(topics=[]), self.rng.choice((1, 4, 9, 12)), self.rng.randrange(1 << 30), "fz"
        )

    def bad(self) -> tuple[str, bytes, bool]:
        """(kind, bytes, close_early): close_early cuts the connection from
        our side right after sending (a disconnect mid-frame)."""
        rng = self.rng
        kind = rng.choice(
            [
                "truncated header",
                "unknown key",
                "bad version",
                "absurd array",
                "random body",
                "mutated",
                "truncated template",
                "garbage",
                "mid-frame disconnect",
                "oversized",
            ]
        )
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        if kind == "truncated header":
            payload = rng.randbytes(rng.randrange(0, 8))
            return kind, struct.pack(">i", len(payload)) + payload, False
        if kind == "unknown key":
            key = rng.choice([k for k in (-1, -32768, 99, 1000, 32767, rng.randrange(100, 32767)) if k not in HANDLERS])
            return (
                kind,
                _frame(request_header(key, rng.randrange(0, 20), 1) + rng.randbytes(rng.randrange(0, 64))),
                False,
            )
        if kind == "bad version":
            key = rng.choice([k for k in HANDLERS if k != ApiKey.API_VERSIONS])
            version = rng.choice((HANDLERS[key].max_version + 1, 1000, 32767, -1, -32768))
            return kind, _frame(request_header(key, version, 1) + rng.randbytes(rng.randrange(0, 64))), False
        if kind == "absurd array":
            key, version, flexible = rng.choice(
                [
                    (ApiKey.METADATA, 1, False),
                    (ApiKey.PRODUCE, 3, False),
                    (ApiKey.FETCH, 4, False),
                    (ApiKey.LIST_OFFSETS, 1, False),
                    (ApiKey.METADATA, 12, True),
                    (ApiKey.PRODUCE, 9, True),
                ]
            )
            if key == ApiKey.PRODUCE:
                prefix = (
                    (b"\x00" if flexible else b"\xff\xff") + b"\xff\xff" + b"\x00\x00\x27\x10"
                )  # txn id, acks, timeout
            elif key == ApiKey.FETCH:
                prefix = (
                    b"\xff\xff\xff\xff" + b"\x00" * 12 + b"\x00"
                )  # replica, max wait, min bytes, max bytes, isolation
            elif key == ApiKey.LIST_OFFSETS:
                prefix = b"\xff\xff\xff\xff"
            else:
                prefix = b""
            count = (
                b"\xff\xff\xff\xff\x07"
                if flexible
                else struct.pack(">i", rng.choice((0x7FFFFFFF, 0x10000000, 100_000)))
            )
            return (
                kind,
                _frame(request_header(key, version, 1, b"fz", flexible) + prefix + count + rng.randbytes(16)),
                False,
            )
        if kind == "random body":
            key = rng.choice((ApiKey.METADATA, ApiKey.FETCH, ApiKey.LIST_OFFSETS, ApiKey.API_VERSIONS))
            h = HANDLERS[key]
            version = rng.randrange(h.min_version, h.max_version + 1)
            flexible = rng.random() < 0.5
            return (
                kind,
                _frame(request_header(key, version, 1, b"fz", flexible) + rng.randbytes(rng.randrange(0, 300))),
                False,
            )
        if kind == "mutated":
            frame = bytearray(rng.choice(self.templates))
            for _ in range(rng.randrange(1, 6)):
                at = rng.randrange(4, len(frame))  # keep the size prefix consistent
                frame[at] = rng.randrange(256)
            return kind, bytes(frame), False
        if kind == "truncated template":
            payload = rng.choice(self.templates)[4:]
            payload = payload[: rng.randrange(0, len(payload))]
            return kind, _frame(payload), False
        if kind == "garbage":
            return kind, rng.randbytes(rng.randrange(1, 2000)), False
        if kind == "mid-frame disconnect":
            size = rng.randrange(16, 5000)
            return kind, struct.pack(">i", size) + rng.randbytes(rng.randrange(0, size)), True
        return (
            kind,
            struct.pack(">i", rng.randrange(MAX_REQUEST + 1, 1 << 31)) + rng.randbytes(rng.randrange(0, 100)),
            False,
        )

    def round(self, address: tuple[str, int], deadline: float) -> None:
        socks = []
        try:
            for _ in range(CONNECTIONS_PER_ROUND):
                s = socket.create_connection(address, timeout=5)
                socks.append(s)
            plans = []
            for s in socks:
                benign = [self.benign() for _ in range(self.rng.randrange(0, 4))]
                data = b"".join(benign)
                self.frames_sent += len(benign)
                _, bad, close_early = self.bad()
                self.frames_sent += 1
                try:
                    s.sendall(data + bad)
                    if not close_early:
                        s.shutdown(socket.SHUT_WR)
                except OSError:
                    pass  # the broker may close before we finish writing: that is its right
                plans.append(close_early)
            for s, close_early in zip(socks, plans):
                if not close_early:
                    _drain(s, deadline)
        finally:
            for s in socks:
                s.close()


def _drain(sock: socket.socket, deadline: float) -> None:
    """Read whatever the broker answers until it closes (bounded)."""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, min(5.0, deadline - time.monotonic())))
        try:
            if not sock.recv(65536):
                return
        except OSError:
            return
    raise AssertionError("fuzzing ran past its deadline: a connection was neither answered nor closed")


def test_fuzz_while_a_real_client_works(caplog):
    from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

    caplog.set_level(logging.WARNING, logger="pybroker")
    topic = "fuzz-client"
    with running_broker({"num.partitions": "3", "socket.request.max.bytes": str(MAX_REQUEST)}) as b:
        address = (b.host, b.port)
        client_errors: list = []
        producer = Producer(
            {"bootstrap.servers": b.bootstrap_servers, "acks": "all", "linger.ms": 5, "error_cb": client_errors.append}
        )
        consumer = Consumer(
            {
                "bootstrap.servers": b.bootstrap_servers,
                "group.id": "unused",
                "enable.auto.commit": False,
                "error_cb": client_errors.append,
            }
        )
        producer.produce(topic, key=b"first", value=b"0")  # creates the topic
        assert producer.flush(30) == 0
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(3)])

        fuzz_done = threading.Event()
        delivered: dict[bytes, tuple] = {}
        received: dict[bytes, tuple] = {}
        sent_values = [b"0"]

        def report(err, msg):
            if err is not None:
                client_errors.append(err)
            else:
                delivered[msg.value()] = (msg.partition(), msg.offset())

        def produce():
            # Keep writing for as long as the fuzzers run, and at least CLIENT_MESSAGES.
            i = 0
            stop = time.monotonic() + FUZZ_SECONDS + 30
            while (i < CLIENT_MESSAGES or not fuzz_done.is_set()) and time.monotonic() < stop:
                for _ in range(50):
                    i += 1
                    value = b"%d" % i
                    sent_values.append(value)
                    producer.produce(topic, key=b"key-%d" % (i % 17), value=value, on_delivery=report)
                producer.flush(30)

        def consume():
            stop = time.monotonic() + FUZZ_SECONDS + 60
            while time.monotonic() < stop:
                for msg in consumer.consume(num_messages=500, timeout=0.2):
                    if msg.error() is not None:
                        client_errors.append(msg.error())
                        continue
                    received[msg.value()] = (msg.partition(), msg.offset())
                if producer_thread_done.is_set() and len(received) >= len(sent_values):
                    return

        producer_thread_done = threading.Event()

        def produce_then_mark():
            try:
                produce()
            finally:
                producer_thread_done.set()

        fuzzers = [Fuzzer(seed, "fuzz-junk") for seed in range(FUZZ_THREADS)]
        deadline = time.monotonic() + FUZZ_SECONDS
        fuzz_errors: list = []

        def fuzz(f: Fuzzer):
            try:
                for _ in range(ROUNDS):
                    if time.monotonic() > deadline:
                        return
                    f.round(address, deadline + 10)
            except Exception as exc:  # noqa: BLE001 - a fuzz thread reports whatever stopped it
                fuzz_errors.append(exc)

        threads = [threading.Thread(target=fuzz, args=(f,)) for f in fuzzers]
        client_threads = [threading.Thread(target=produce_then_mark), threading.Thread(target=consume)]
        for t in client_threads + threads:
            t.start()
        for t in threads:
            t.join(FUZZ_SECONDS + 30)
        fuzz_done.set()
        for t in client_threads:
            t.join(FUZZ_SECONDS + 90)
        assert not any(t.is_alive() for t in threads + client_threads), "a thread outlived its deadline"
        consumer.close()
        assert not fuzz_errors, fuzz_errors[:3]

        frames = sum(f.frames_sent for f in fuzzers)
        kinds = {}
        for f in fuzzers:
            for k, n in f.kinds.items():
                kinds[k] = kinds.get(k, 0) + n
        assert frames >= 3000, f"only {frames} frames were sent"
        assert len(kinds) == 10 and min(kinds.values()) >= 30, kinds

        # The client saw nothing wrong and got everything back, at the offsets it was told.
        assert not client_errors, client_errors[:5]
        assert len(sent_values) >= CLIENT_MESSAGES
        assert set(delivered) == set(sent_values) - {b"0"}
        assert {v: po for v, po in received.items() if v != b"0"} == delivered

        # The broker is still up and serves a new client, appending after the rest.
        assert serves(b)
        fresh = Producer({"bootstrap.servers": b.bootstrap_servers})
        offsets = []
        fresh.produce(
            topic,
            value=b"after the storm",
            partition=0,
            on_delivery=lambda err, msg: offsets.append((err, msg.offset())),
        )
        assert fresh.flush(30) == 0
        in_partition_0 = sum(1 for p, _ in received.values() if p == 0)
        assert offsets == [(None, in_partition_0)]

    # Bad input is refused by the codec and the server, never by a handler blowing up.
    failures = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not failures, failures[:5]


def test_peer_gone_during_a_long_poll_closes_at_once(broker):
    """A client that goes away while its Fetch long-polls (max_wait_ms up to
    2^31 ms is legal) must not keep the connection open until the poll ends:
    nobody can read that answer. Kafka closes such a connection at once."""
    topic = "long-poll-gone"
    with Conn(broker.bootstrap_servers) as conn:
        conn.request(MetadataRequest(topics=[MetadataRequestTopic(name=topic)]), 9)
        conn.send(
            FetchRequest(
                max_wait_ms=600_000,
                min_bytes=1,
                topics=[FetchTopic(topic=topic, partitions=[FetchPartition(partition=0, partition_max_bytes=1 << 20)])],
            ),
            12,
            99,
        )
        conn.sock.shutdown(socket.SHUT_WR)  # we are done sending
        started = time.monotonic()
        assert conn.closed_by_peer()
        assert time.monotonic() - started < 5
