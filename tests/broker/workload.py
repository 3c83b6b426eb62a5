"""Messages to send through real clients, and the checks on what comes back.

A workload is a deterministic list of messages (keys, values, headers with
empty, null and repeated entries, explicit increasing timestamps). After a
client produced it and read it back, ``check_round_trip`` compares what
was read with what was sent, partition by partition and byte for byte.
"""

from __future__ import annotations

import os
import random
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pybroker.protocol.record_batch import split_batches


@dataclass(frozen=True)
class Message:
    index: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    timestamp: int


@dataclass(frozen=True)
class Delivered:
    """What the producer reported for one message (offset -1 when acks=0)."""

    index: int
    partition: int
    offset: int


@dataclass(frozen=True)
class Consumed:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    timestamp: int


def make_messages(
    n: int, seed: int, null_header_values: bool = True, base_timestamp: int | None = None
) -> list[Message]:
    """n messages; timestamps strictly increase with the index (1 ms apart,
    ending about now) so offsets_for_times has exact answers."""
    rng = random.Random(seed)
    if base_timestamp is None:
        base_timestamp = int(time.time() * 1000) - n - 60_000
    keys = [f"key-{k}".encode() for k in range(40)] + [b"", bytes(range(256))]
    out = []
    for i in range(n):
        key = None if i % 17 == 5 else rng.choice(keys)
        size = rng.choice((0, 1, 7, 100, 1000, 3000))
        # Half random (incompressible), half repetitive, so every codec has work.
        value = rng.randbytes(size // 2) + (b"pybroker-%d " % i) * (size // 24)
        if i % 23 == 11 and key is not None:
            value = None  # a tombstone
        headers: list[tuple[str, bytes | None]] = []
        if i % 5:
            headers = [("seq", str(i).encode()), ("empty", b""), ("bin", rng.randbytes(rng.randrange(0, 20)))]
            headers.append(("null", None if null_header_values else b"not-null"))
            if i % 3 == 0:
                headers += [("dup", b"first"), ("dup", b"second"), ("ünï", "çødé".encode())]
        out.append(Message(i, key, value, tuple(headers), base_timestamp + i))
    return out


def check_round_trip(
    messages: list[Message],
    delivered: list[Delivered],
    consumed: list[Consumed],
    partitions: int,
    partitioner: Callable[[bytes, int], int | None] | None,
    acked: bool,
) -> dict[int, list[Message]]:
    """Everything sent came back exactly once, in send order per partition,
    byte-identical; keys stick to one partition (the client's partitioner);
    reported offsets match consumed ones. Returns the messages per partition."""
    assert sorted(d.index for d in delivered) == [m.index for m in messages], "a delivery report is missing"
    where = {d.index: d for d in delivered}
    by_key: dict[bytes, set[int]] = defaultdict(set)
    expected: dict[int, list[Message]] = defaultdict(list)
    for m in messages:
        d = where[m.index]
        assert 0 <= d.partition < partitions
        expected[d.partition].append(m)
        if m.key is not None:
            fixed = partitioner(m.key, partitions) if partitioner is not None else d.partition
            if fixed is not None:  # None: the partitioner spreads this key at random
                by_key[m.key].add(d.partition)
                assert d.partition == fixed, f"key {m.key!r} went to {d.partition}, the partitioner says {fixed}"
    for key, parts in by_key.items():
        assert len(parts) == 1, f"key {key!r} landed in partitions {sorted(parts)}"

    got: dict[int, list[Consumed]] = defaultdict(list)
    for c in consumed:
        got[c.partition].append(c)
    assert sorted(got) == sorted(expected), "messages read from other partitions than they were sent to"
    for p, msgs in expected.items():
        read = got[p]
        assert len(read) == len(msgs), f"partition {p}: sent {len(msgs)}, read {len(read)}"
        assert [c.offset for c in read] == list(range(len(msgs))), f"partition {p}: offsets are not 0..n-1"
        for m, c in zip(msgs, read):
            assert (c.key, c.value) == (m.key, m.value), f"partition {p} offset {c.offset}: message {m.index} differs"
            assert c.headers == m.headers, f"partition {p} offset {c.offset}: headers of message {m.index} differ"
            assert c.timestamp == m.timestamp, f"partition {p} offset {c.offset}: timestamp differs"
            if acked:
                assert where[m.index].offset == c.offset, f"message {m.index} was acknowledged at another offset"
    return expected


def wait_for(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.02):
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)  # polling interval, bounded by the deadline above


def batches_on_disk(data_dir: Path, topic: str):
    """(partition, RecordBatch) for every batch in the topic's segment files."""
    for d in sorted(Path(data_dir).iterdir()):
        name, _, index = d.name.rpartition("-")
        if name != topic or not d.is_dir():
            continue
        for seg in sorted(d.glob("*.log")):
            data = seg.read_bytes()
            batches, _ = split_batches(data)
            for b in batches:
                yield int(index), b


def codec_name(n: int) -> str:
    return ("none", "gzip", "snappy", "lz4", "zstd")[n]


def unique_topic(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{random.randrange(1 << 30)}"
