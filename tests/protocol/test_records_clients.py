"""Record batches made by real client libraries decode and validate, and
kafka-python reads the batches we build.

librdkafka is driven through confluent-kafka against a capture broker: a
few hand-encoded responses (ApiVersions, Metadata, Produce) on a loopback
socket, just enough for it to send a real Produce request, whose records
bytes the test then decodes.
"""

from __future__ import annotations

import importlib

import socket
import struct
import threading
import time

import kafka.codec
import pytest
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from kafka.record.legacy_records import LegacyRecordBatchBuilder
from kafka.record.memory_records import MemoryRecords

from pybroker.protocol.compression import Compression
from pybroker.protocol.records import (
    NewRecord,
    RecordBatch,
    UnsupportedMagicError,
    build_batch,
    iter_batches,
)

CODECS = list(Compression)

# Compressible on purpose: both clients fall back to an uncompressed batch
# when compression does not shrink it, and then the codec goes untested.
MESSAGES = [
    (b"key-0", b"value " * 40, [("trace", b"abc"), ("empty", b"")], 1_700_000_000_000),
    (None, b"no key " * 40, [], 1_700_000_000_005),
    (b"tombstone", None, [("null-header", None)], 1_700_000_000_003),
    (b"", b"", [("k", b"v"), ("k", b"v2")], 1_700_000_000_010),
    (b"key-4", bytes(range(256)) * 3, [], 1_700_000_000_011),
]


# kafka-python compresses through optional libraries of its own.
KAFKA_PYTHON_CODEC_LIBS = {
    Compression.NONE: (lambda: True, None),
    Compression.GZIP: (kafka.codec.has_gzip, None),
    Compression.SNAPPY: (kafka.codec.has_snappy, "python-snappy"),
    Compression.LZ4: (kafka.codec.has_lz4, "lz4"),
    Compression.ZSTD: (kafka.codec.has_zstd, "zstandard"),
}


def need_kafka_python_codec(codec: Compression) -> None:
    available, package = KAFKA_PYTHON_CODEC_LIBS[codec]
    # The test extra installs these; a missing one is a failure, not a skip.
    assert available(), f"kafka-python needs the {package} package for {codec.name.lower()}"


def records_of(batch: RecordBatch):
    return [(r.key, r.value, r.headers, r.timestamp) for r in batch.records()]


# -- kafka-python --------------------------------------------------------------


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name.lower())
def test_kafka_python_batches_decode(codec):
    need_kafka_python_codec(codec)
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=codec, is_transactional=False,
        producer_id=-1, producer_epoch=-1, base_sequence=-1, batch_size=1 << 20,
    )
    for offset, (key, value, headers, ts) in enumerate(MESSAGES):
        builder.append(offset, timestamp=ts, key=key, value=value, headers=headers)
    blob = bytes(builder.build())

    [batch] = iter_batches(blob)
    batch.validate()
    assert batch.compression == codec
    assert batch.record_count == len(MESSAGES)
    assert batch.last_offset_delta == len(MESSAGES) - 1
    assert batch.base_timestamp == MESSAGES[0][3]
    assert batch.max_timestamp == max(m[3] for m in MESSAGES)
    assert batch.producer_id == -1 and batch.base_sequence == -1
    assert records_of(batch) == [(k, v, h, ts) for k, v, h, ts in MESSAGES]
    assert [r.offset for r in batch.records()] == list(range(len(MESSAGES)))


def test_kafka_python_idempotent_transactional_header():
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=0, is_transactional=True,
        producer_id=4242, producer_epoch=7, base_sequence=0x7FFFFFFE, batch_size=1 << 20,
    )
    for offset in range(3):
        builder.append(offset, timestamp=1000 + offset, key=None, value=b"x", headers=[])
    [batch] = iter_batches(bytes(builder.build()))
    batch.validate()
    reference = DefaultRecordBatch(bytearray(batch.view))
    assert (batch.producer_id, batch.producer_epoch) == (4242, 7)
    assert batch.is_transactional and not batch.is_control
    assert batch.last_sequence == reference.last_sequence == 0  # wrapped past int32 max


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name.lower())
def test_kafka_python_reads_our_batches(codec):
    need_kafka_python_codec(codec)
    blob = b"".join(
        build_batch(
            [NewRecord(k, v, h, ts) for k, v, h, ts in MESSAGES],
            base_offset=base, compression=codec, producer_id=99, producer_epoch=1,
            base_sequence=10, partition_leader_epoch=3,
        )
        for base in (0, 100)
    )
    batches = []
    records = MemoryRecords(blob)
    while records.has_next():
        batches.append(records.next_batch())
    assert len(batches) == 2
    for base, theirs in zip((0, 100), batches):
        assert theirs.validate_crc()
        assert theirs.compression_type == codec
        assert (theirs.base_offset, theirs.leader_epoch) == (base, 3)
        assert (theirs.producer_id, theirs.producer_epoch, theirs.base_sequence) == (99, 1, 10)
        got = [(r.offset, r.key, r.value, r.headers, r.timestamp) for r in theirs]
        want = [(base + i, k, v, h, ts) for i, (k, v, h, ts) in enumerate(MESSAGES)]
        assert got == want


def test_kafka_python_legacy_message_set_is_rejected():
    for magic in (0, 1):
        builder = LegacyRecordBatchBuilder(magic=magic, compression_type=0, batch_size=1 << 20)
        builder.append(0, timestamp=1000 if magic else None, key=b"k", value=b"v")
        with pytest.raises(UnsupportedMagicError, match=f"magic {magic}"):
            list(iter_batches(bytes(builder.build())))


# -- librdkafka (confluent-kafka) ------------------------------------------------


class CaptureBroker:
    """Enough of a Kafka broker on 127.0.0.1 for librdkafka to produce.

    It advertises the versions that turn on librdkafka's magic-2 and codec
    features (MsgVer2 needs Produce >= 3 and Fetch >= 4, LZ4 needs
    FindCoordinator, ZSTD needs Produce >= 7 and Fetch >= 10), answers
    Metadata with itself as leader of partition 0 of one topic, and keeps
    the records bytes of every Produce it receives.
    """

    NODE_ID = 1
    API_VERSIONS = {0: (0, 7), 1: (4, 11), 3: (1, 4), 10: (0, 2), 18: (0, 3)}
    POLL = 0.05  # seconds a blocked socket call waits before checking for shutdown

    def __init__(self, topic: str):
        self.topic = topic
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(self.POLL)
        self.port = self.listener.getsockname()[1]
        self.produced: list[bytes] = []
        self.errors: list[BaseException] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._accept_loop, daemon=True)]
        self.threads[0].start()

    def close(self):
        self.stopping.set()
        for thread in list(self.threads):
            thread.join(timeout=10)
        self.listener.close()
        assert not any(t.is_alive() for t in self.threads), "capture broker thread did not stop"

    def wait_for_produce(self, count: int, timeout: float) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.produced) >= count:
                    return list(self.produced)
            self.stopping.wait(self.POLL)
        raise AssertionError(f"no Produce request within {timeout}s; errors: {self.errors}")

    # -- plumbing ---

    def _accept_loop(self):
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(self.POLL)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _recv_exact(self, conn, n: int) -> bytes | None:
        data = bytearray()
        while len(data) < n:
            if self.stopping.is_set():
                return None
            try:
                chunk = conn.recv(n - len(data))
            except TimeoutError:
                continue
            if not chunk:
                return None
            data += chunk
        return bytes(data)

    def _serve(self, conn):
        try:
            with conn:
                while True:
                    size = self._recv_exact(conn, 4)
                    if size is None:
                        return
                    frame = self._recv_exact(conn, struct.unpack(">i", size)[0])
                    if frame is None:
                        return
                    response = self._handle(frame)
                    if response is not None:
                        conn.sendall(struct.pack(">i", len(response)) + response)
        except BaseException as e:  # surfaced by the test through self.errors
            self.errors.append(e)

    def _handle(self, frame: bytes) -> bytes | None:
        api_key, version, correlation_id, client_id_len = struct.unpack_from(">hhih", frame)
        pos = 10 + max(client_id_len, 0)  # request header v1; body follows
        header = struct.pack(">i", correlation_id)  # response header v0
        if api_key == 18:
            return header + self._api_versions(version)
        if api_key == 3:
            return header + self._metadata(version)
        if api_key == 0:
            acks, body = self._produce(frame, pos, version)
            return None if acks == 0 else header + body
        raise AssertionError(f"capture broker got unexpected API key {api_key} v{version}")

    def _api_versions(self, version: int) -> bytes:
        entries = sorted(self.API_VERSIONS.items())
        if version >= 3:  # flexible body, still behind a v0 response header
            out = struct.pack(">h", 0) + bytes([len(entries) + 1])
            for key, (low, high) in entries:
                out += struct.pack(">hhh", key, low, high) + b"\x00"
            return out + struct.pack(">i", 0) + b"\x00"
        out = struct.pack(">hi", 0, len(entries))
        for key, (low, high) in entries:
            out += struct.pack(">hhh", key, low, high)
        return out + (struct.pack(">i", 0) if version >= 1 else b"")

    def _metadata(self, version: int) -> bytes:
        host = b"127.0.0.1"
        topic = self.topic.encode()
        out = struct.pack(">i", 0) if version >= 3 else b""  # throttle time
        out += struct.pack(">iih", 1, self.NODE_ID, len(host)) + host + struct.pack(">ih", self.port, -1)
        if version >= 2:
            out += struct.pack(">h", -1)  # cluster id
        out += struct.pack(">i", self.NODE_ID)  # controller id
        out += struct.pack(">ihh", 1, 0, len(topic)) + topic + b"\x00"  # is_internal
        out += struct.pack(">ihii", 1, 0, 0, self.NODE_ID)  # partition 0, led by us
        out += struct.pack(">ii", 1, self.NODE_ID) * 2  # replicas, isr
        return out

    def _produce(self, frame: bytes, pos: int, version: int) -> tuple[int, bytes]:
        assert 3 <= version <= 7, version
        (txn_len,) = struct.unpack_from(">h", frame, pos)
        pos += 2 + max(txn_len, 0)
        acks, _timeout, topic_count = struct.unpack_from(">hii", frame, pos)
        pos += 10
        assert topic_count == 1
        (name_len,) = struct.unpack_from(">h", frame, pos)
        pos += 2 + name_len
        partition_count, partition, records_len = struct.unpack_from(">iii", frame, pos)
        pos += 12
        assert partition_count == 1 and partition == 0
        with self.lock:
            self.produced.append(frame[pos : pos + records_len])
        topic = self.topic.encode()
        body = struct.pack(">ih", 1, len(topic)) + topic
        body += struct.pack(">iihqq", 1, 0, 0, 0, -1)  # partition 0, no error, offset 0, no append time
        if version >= 5:
            body += struct.pack(">q", 0)  # log start offset
        return acks, body + struct.pack(">i", 0)  # throttle time


@pytest.fixture
def capture_broker():
    broker = CaptureBroker("captured")
    yield broker
    broker.close()
    assert not broker.errors, broker.errors


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name.lower())
def test_librdkafka_produce_batches_decode(capture_broker, codec):
    confluent_kafka = importlib.import_module("confluent_kafka")
    producer = confluent_kafka.Producer({
        "bootstrap.servers": f"127.0.0.1:{capture_broker.port}",
        "compression.type": codec.name.lower(),
        "linger.ms": 50,
        "acks": 1,
        "enable.idempotence": False,
        "message.timeout.ms": 10_000,
        "socket.timeout.ms": 10_000,
    })
    reports = []
    for key, value, headers, ts in MESSAGES:
        producer.produce(
            capture_broker.topic, value=value, key=key, headers=headers or None,
            partition=0, timestamp=ts, on_delivery=lambda err, msg: reports.append(err),
        )
    assert producer.flush(15) == 0, "librdkafka did not deliver within 15 s"
    del producer  # its broker connections close before the capture broker stops
    assert reports == [None] * len(MESSAGES)

    blobs = capture_broker.wait_for_produce(1, timeout=5)
    batches = [batch for blob in blobs for batch in iter_batches(blob)]
    for batch in batches:
        batch.validate()
        assert batch.compression == codec
        assert batch.magic == 2
        assert batch.producer_id == -1
    got = [record for batch in batches for record in records_of(batch)]
    # librdkafka sends an empty header list as no headers and keeps order.
    assert got == [(k, v, h, ts) for k, v, h, ts in MESSAGES]
