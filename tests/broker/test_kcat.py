"""kcat (Debian's, linked with an older librdkafka) against pybroker.

`kcat -L` lists brokers and topics from Metadata; `kcat -P` produces
(every codec), `kcat -C` is the simple consumer (Metadata, ListOffsets,
Fetch; no groups); `kcat -Q` looks offsets up by time. The Debian build
links librdkafka 2.0.x, whose feature checks match single versions and turn
compression off unless Produce's range includes v0 (CLIENTS.md §8.3), so
these tests also guard the advertised ranges.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import zlib
from collections import defaultdict

import pytest

from pybroker.testing import running_broker

from .clients import Confluent
from .workload import batches_on_disk, codec_name, make_messages, unique_topic

PARTITIONS = 3
KCAT = shutil.which("kcat") or "kcat"
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


@pytest.fixture(scope="module")
def broker():
    # Not a skip: without kcat these tests must fail (.ci/run installs it).
    assert shutil.which("kcat"), "kcat is not installed: apt-get install kcat"
    with running_broker({"num.partitions": str(PARTITIONS)}) as b:
        yield b


def kcat(broker, *args: str, input: bytes | None = None, timeout: float = 30) -> bytes:
    result = subprocess.run(
        [KCAT, "-b", broker.bootstrap_servers, *args], input=input, capture_output=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-3000:]
    return result.stdout


def kcat_produce(broker, topic: str, lines: list[str], *args: str) -> None:
    kcat(broker, "-P", "-t", topic, *args, input="".join(line + "\n" for line in lines).encode())


def read_json(broker, topic: str) -> list[dict]:
    out = kcat(broker, "-C", "-t", topic, "-o", "beginning", "-e", "-J")
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]


def read_binary(broker, topic: str, *args: str) -> list[tuple]:
    """(partition, offset, timestamp, key, value) per message, binary-exact:
    kcat prints the key and value lengths (-1 for null) before the bytes."""
    out = kcat(broker, "-C", "-t", topic, "-e", *args, "-f", "%p %o %T %K %S\n%k%s\n")
    records, pos = [], 0
    while pos < len(out):
        eol = out.index(b"\n", pos)
        p, o, ts, klen, vlen = map(int, out[pos:eol].split())
        pos = eol + 1
        key = None if klen < 0 else out[pos : pos + klen]
        pos += max(klen, 0)
        value = None if vlen < 0 else out[pos : pos + vlen]
        pos += max(vlen, 0)
        assert out[pos : pos + 1] == b"\n"
        pos += 1
        records.append((p, o, ts, key, value))
    return records


def codecs_on_disk(broker, topic: str) -> list[str]:
    return [codec_name(b.compression) for _, b in batches_on_disk(broker.data_dir, topic)]


def produced_lines(n: int) -> list[tuple[str, str]]:
    # Compressible values so every codec shrinks the batches.
    return [(f"key-{i % 11}", f"value-{i} " + "lorem ipsum dolor sit amet " * (i % 7 + 3)) for i in range(n)]


def test_list_metadata(broker):
    topic = unique_topic("kcat-list")
    kcat_produce(broker, topic, ["hello"])
    listing = json.loads(kcat(broker, "-L", "-J"))
    assert listing["brokers"] == [{"id": 1, "name": broker.bootstrap_servers}]
    assert listing["controllerid"] == 1
    (mine,) = [t for t in listing["topics"] if t["topic"] == topic]
    assert mine["partitions"] == [
        {"partition": p, "leader": 1, "replicas": [{"id": 1}], "isrs": [{"id": 1}]} for p in range(PARTITIONS)
    ]
    one = json.loads(kcat(broker, "-L", "-J", "-t", topic))
    assert [t["topic"] for t in one["topics"]] == [topic]
    text = kcat(broker, "-L").decode()
    assert f"broker 1 at {broker.bootstrap_servers} (controller)" in text
    assert f'topic "{topic}" with {PARTITIONS} partitions' in text


@pytest.mark.parametrize("codec", CODECS)
def test_produce_and_consume(broker, codec):
    """kcat -P with -z <codec>, keys and headers; kcat -C reads it all back."""
    topic = unique_topic(f"kcat-{codec}")
    lines = produced_lines(400)
    kcat_produce(broker, topic, [f"{k}:{v}" for k, v in lines], "-K:", "-z", codec, "-H", "origin=kcat", "-H", "empty=")
    got = read_json(broker, topic)
    assert len(got) == len(lines)
    by_partition = defaultdict(list)
    for m in got:
        by_partition[m["partition"]].append(m)
        assert m["headers"] == ["origin", "kcat", "empty", ""]
        # librdkafka's consistent_random partitioner: CRC32 of the key.
        assert m["partition"] == zlib.crc32(m["key"].encode()) % PARTITIONS
    sent = defaultdict(list)
    for k, v in lines:
        sent[zlib.crc32(k.encode()) % PARTITIONS].append((k, v))
    for p, msgs in by_partition.items():
        assert [m["offset"] for m in msgs] == list(range(len(msgs)))
        assert [(m["key"], m["payload"]) for m in msgs] == sent[p], f"partition {p} differs"
    # Most batches must really use the codec: librdkafka 2.0 keeps
    # compression off unless Produce's range includes v0, and LZ4 off unless
    # FindCoordinator is advertised (CLIENTS.md §5.1, §8.3).
    codecs = codecs_on_disk(broker, topic)
    assert set(codecs) <= {codec, "none"}, set(codecs)
    assert codecs.count(codec) * 2 > len(codecs), codecs


def test_produce_to_a_partition(broker):
    topic = unique_topic("kcat-part")
    kcat_produce(broker, topic, [f"m{i}" for i in range(10)], "-p", "2")
    got = read_json(broker, topic)
    assert [(m["partition"], m["offset"], m["payload"]) for m in got] == [(2, i, f"m{i}") for i in range(10)]


def test_consume_is_byte_exact(broker):
    """What another client wrote (binary keys and values, null and empty
    ones, explicit timestamps) comes out of kcat -C byte for byte."""
    topic = unique_topic("kcat-binary")
    messages = make_messages(300, seed=11)
    delivered = Confluent(broker.bootstrap_servers).produce(topic, messages, "gzip", "all")
    where = {d.index: d for d in delivered}
    expected = sorted((where[m.index].partition, where[m.index].offset, m.timestamp, m.key, m.value) for m in messages)
    assert sorted(read_binary(broker, topic, "-o", "beginning")) == expected


def test_consume_headers_with_null_values(broker):
    topic = unique_topic("kcat-headers")
    producer = Confluent(broker.bootstrap_servers).producer()
    producer.produce(topic, value=b"v", partition=0, headers=[("a", None), ("b", b""), ("a", b"again")])
    assert producer.flush(30) == 0
    (m,) = read_json(broker, topic)
    assert m["headers"] == ["a", None, "b", "", "a", "again"]


def test_consume_from_offsets(broker):
    """-o <n>, -o -<n> (from the end) and -c: ListOffsets then Fetch at an offset."""
    topic = unique_topic("kcat-offsets")
    kcat_produce(broker, topic, [f"m{i}" for i in range(50)], "-p", "0")
    middle = read_binary(broker, topic, "-p", "0", "-o", "20", "-c", "5")
    assert [(o, v) for _, o, _, _, v in middle] == [(o, f"m{o}".encode()) for o in range(20, 25)]
    tail = read_binary(broker, topic, "-p", "0", "-o", "-3")
    assert [o for _, o, _, _, _ in tail] == [47, 48, 49]
    assert read_binary(broker, topic, "-p", "0", "-o", "end") == []


def test_query_offsets_by_time(broker):
    """kcat -Q: ListOffsets by timestamp; a time past the last message gives -1."""
    topic = unique_topic("kcat-query")
    messages = make_messages(60, seed=5)
    delivered = Confluent(broker.bootstrap_servers).produce(topic, messages, "none", "all")
    first_at = {}
    for m in messages:
        d = next(d for d in delivered if d.index == m.index)
        first_at.setdefault(d.partition, (m.timestamp, d.offset))
    probe = messages[30]
    d30 = next(d for d in delivered if d.index == 30)
    args = []
    for p in range(PARTITIONS):
        args += ["-t", f"{topic}:{p}:{probe.timestamp if p == d30.partition else messages[-1].timestamp + 1}"]
    out = kcat(broker, "-Q", *args).decode().splitlines()
    answers = {int(line.split("[")[1].split("]")[0]): int(line.rsplit(" ", 1)[1]) for line in out if "offset" in line}
    assert answers == {p: (d30.offset if p == d30.partition else -1) for p in range(PARTITIONS)}


def test_consumer_waits_for_new_messages(broker):
    """kcat -C without -e long-polls; what is produced afterwards arrives."""
    topic = unique_topic("kcat-follow")
    kcat_produce(broker, topic, ["before"], "-p", "1")
    proc = subprocess.Popen(
        [
            KCAT,
            "-b",
            broker.bootstrap_servers,
            "-C",
            "-t",
            topic,
            "-p",
            "1",
            "-o",
            "beginning",
            "-c",
            "4",
            "-u",
            "-f",
            "%o %s\n",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    watchdog = threading.Timer(30, proc.kill)  # bounds the blocking readline below
    watchdog.start()
    try:
        # kcat has read the first message once its first line is out.
        assert proc.stdout.readline() == b"0 before\n"
        started = time.monotonic()
        kcat_produce(broker, topic, ["a", "b", "c"], "-p", "1")
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert out == b"1 a\n2 b\n3 c\n"
        assert time.monotonic() - started < 30
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
