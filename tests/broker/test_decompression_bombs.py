"""Decompression bombs sent to a broker process: each is answered with an
error, the broker's peak resident memory grows by less than 64 MiB, and a
client producing on another connection meanwhile keeps its p99 under
100 ms (the bound the issue sets). The same on a compacted topic, where the
records used to be decompressed whole.

The bombs: ~1 MB batches of zeros in each codec (1 GiB for zstd and gzip,
230 MiB for lz4, 20 MiB for snappy, about what each codec's ratio allows)
and a well-formed zstd batch whose one record inflates past the cap.
"""

from __future__ import annotations

import gzip
import time

import lz4.frame
import pytest
import zstandard
from confluent_kafka.admin import AdminClient, NewTopic

from pybroker.protocol.compression import Compression, compress

from ..forged import fields, forge, records_of, varint
from .raw_requests import TimedProducer
from .test_backpressure import PeakRss, rss
from .test_bad_input import Conn, log_end, produce_request

MiB = 1 << 20
ROUNDS = 5
P99_BOUND = 0.1


def zeros_batch(codec) -> bytes:
    if codec is Compression.ZSTD:
        body = zstandard.ZstdCompressor(level=3).compress(bytes(1 << 30))
    elif codec is Compression.GZIP:
        body = gzip.compress(bytes(1 << 30), 9)
    elif codec is Compression.LZ4:
        body = lz4.frame.compress(bytes(230 * MiB), block_linked=False)
    else:
        body = compress(Compression.SNAPPY, bytes(20 * MiB))
    return forge(body, 1, codec, base_ts=int(time.time() * 1000), raw_body=True)


def well_formed_bomb(value_size: int) -> bytes:
    """One record whose value is ``value_size`` zeros, zstd: ~1 KB per GiB."""
    head = b"\x00\x00\x00\x02k" + varint(value_size)
    compressor = zstandard.ZstdCompressor(level=3).compressobj()
    body = compressor.compress(varint(len(head) + value_size + 1) + head)
    chunk = bytes(64 * MiB)
    for _ in range(value_size // len(chunk)):
        body += compressor.compress(chunk)
    body += compressor.compress(bytes(value_size % len(chunk)) + b"\x00") + compressor.flush()
    return forge(body, 1, Compression.ZSTD, base_ts=int(time.time() * 1000), raw_body=True)


BOMBS = {
    "zstd-zeros": lambda: zeros_batch(Compression.ZSTD),
    "gzip-zeros": lambda: zeros_batch(Compression.GZIP),
    "lz4-zeros": lambda: zeros_batch(Compression.LZ4),
    "snappy-zeros": lambda: zeros_batch(Compression.SNAPPY),
    "zstd-past-the-cap": lambda: well_formed_bomb(1100 * MiB),
}


@pytest.fixture(scope="module")
def bombs():
    made = {name: make() for name, make in BOMBS.items()}
    for name, batch in made.items():
        assert len(batch) < 1048588, f"{name}: {len(batch)} bytes, above max.message.bytes"
    return made


def peak_rss_reset(pid: int) -> None:
    """Restart the kernel's peak-RSS count (VmHWM) from the current RSS."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


def vm_hwm(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.mark.parametrize("policy", ["delete", "compact"])
def test_bombs_are_refused_in_bounded_memory_without_stalling_others(broker_process, bombs, policy):
    broker = broker_process({"num.partitions": "1"})
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for name in ("bombed", "steady"):
        admin.create_topics([NewTopic(name, 1, 1, config={"cleanup.policy": policy})])[name].result(30)
    with Conn(broker.bootstrap, timeout=60) as sender:
        warm = forge(records_of(fields()), 1, Compression.ZSTD, base_ts=int(time.time() * 1000))
        assert sender.request(produce_request("bombed", warm, acks=1), 9).responses[0].partition_responses[0].error_code == 0
        with TimedProducer(broker.bootstrap, "steady") as steady:
            peak_rss_reset(broker.pid)
            base = rss(broker.pid)
            answers = []
            with PeakRss(broker.pid) as sampled:
                started = time.monotonic()
                for _ in range(ROUNDS):
                    for name, batch in bombs.items():
                        response = sender.request(produce_request("bombed", batch, acks=1), 9)
                        (partition,) = response.responses[0].partition_responses
                        answers.append((name, partition.error_code, partition.error_message))
                ended = time.monotonic()
            hwm_growth = vm_hwm(broker.pid) - base
        end = log_end(sender, "bombed")
    refused = {name: code for name, code, _ in answers}
    assert refused == {"zstd-zeros": 87, "gzip-zeros": 87, "lz4-zeros": 87, "snappy-zeros": 87, "zstd-past-the-cap": 10}
    assert all(code == refused[name] for name, code, _ in answers), answers
    assert end == 1, f"bombs were stored: log end {end}"
    assert hwm_growth < 64 * MiB, f"peak RSS grew by {hwm_growth / MiB:.1f} MiB"
    assert sampled.growth < 64 * MiB, f"sampled RSS grew by {sampled.growth / MiB:.1f} MiB"
    assert not steady.errors, steady.errors
    p99, samples = steady.p99_between(started, ended)
    assert p99 < P99_BOUND, f"another client's produce p99 was {p99 * 1000:.1f} ms over {samples} requests"
    assert broker.alive()
