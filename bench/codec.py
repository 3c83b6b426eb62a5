"""Codec micro-benchmark: decode + encode of the two messages that dominate
a broker's protocol work.

    python -m bench.codec [--repeat N]

1. A Produce v9 request frame carrying one 1 MiB record batch: decode the
   frame (header + body) and encode it again as a chunk list. The batch must
   come through as a view of the frame and go out by reference: the run
   fails if either side copied it. A plain 1 MiB copy is timed beside it for
   scale.
2. A Metadata v12 response for 100 topics x 10 partitions (3 replicas each).
3. The produce checks of one batch (protocol/record_check.py), as the
   broker runs them on every produced batch: header, CRC and every record,
   for batches of 1 KiB and 100 B values uncompressed (with the C record
   scanner and with the Python one) and compressed with each codec. The
   CRC alone is timed beside them, and the cost per record is given.

Prints the median and p90 of per-operation times over the repetitions.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

from pybroker.protocol import record_scan
from pybroker.protocol.compression import Compression
from pybroker.protocol.framing import decode_request, encode_request, encode_response
from pybroker.protocol.messages.metadata_response import (
    MetadataResponse,
    MetadataResponseBroker,
    MetadataResponsePartition,
    MetadataResponseTopic,
)
from pybroker.protocol.messages.produce_request import PartitionProduceData, ProduceRequest, TopicProduceData
from pybroker.protocol.record_batch import RecordBatch
from pybroker.protocol.record_check import BatchCheck, Rules, produced_batch
from pybroker.protocol.records import NewRecord, build_batch


def timeit(fn, repeat: int, inner: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - t0) / inner)
    return samples


def fmt(samples: list[float]) -> str:
    qs = statistics.quantiles(samples, n=10)
    return f"median {statistics.median(samples) * 1e6:9.1f} us   p90 {qs[-1] * 1e6:9.1f} us"


def produce_frame() -> memoryview:
    batch = bytes(1024 * 1024)
    req = ProduceRequest(
        acks=-1,
        timeout_ms=30000,
        topic_data=[TopicProduceData(name="bench", partition_data=[PartitionProduceData(index=0, records=batch)])],
    )
    frame = encode_request(req, 9, correlation_id=1, client_id="bench")
    return memoryview(frame)[4:]


def metadata_response() -> MetadataResponse:
    brokers = [MetadataResponseBroker(node_id=i, host="127.0.0.1", port=9092 + i) for i in range(3)]
    topics = [
        MetadataResponseTopic(
            name=f"topic-{t}",
            topic_id=uuid.uuid4(),
            partitions=[
                MetadataResponsePartition(
                    partition_index=p,
                    leader_id=p % 3,
                    leader_epoch=7,
                    replica_nodes=[0, 1, 2],
                    isr_nodes=[0, 1, 2],
                )
                for p in range(10)
            ],
        )
        for t in range(100)
    ]
    return MetadataResponse(brokers=brokers, cluster_id="bench-cluster", controller_id=0, topics=topics)


def batch_checks(repeat: int) -> None:
    """Time the produce checks of one batch, per batch and per record."""
    now = int(time.time() * 1000)
    rules = Rules(
        "bench-0", max_message_bytes=16 << 20, compact=False, log_append_time=False,
        before_max_ms=2**63 - 1, after_max_ms=3_600_000, now=now,
    )
    print("Produce checks of one batch (header, CRC, every record)")
    for value_size, count in ((1024, 1000), (100, 10000)):
        for codec in Compression:
            records = [NewRecord(b"key-%d" % i, b"v" * value_size, (), now) for i in range(count)]
            raw = bytearray(build_batch(records, compression=codec))
            scanners = record_scan.IMPLEMENTATIONS if codec is Compression.NONE else {"c": record_scan.scan}
            for name, scan in scanners.items():

                def check():
                    BatchCheck(produced_batch(raw, 9), rules, scan).run()

                inner = 2 if name == "python" else 20
                samples = timeit(check, max(3, repeat // 5) if name == "python" else repeat, inner)
                label = f"{count} x {value_size} B {codec.name.lower():6s} {name:6s} ({len(raw) >> 10} KiB)"
                per_record = statistics.median(samples) / count * 1e9
                print(f"  {label:38s}", fmt(samples), f"  {per_record:7.1f} ns/record")
            if codec is Compression.NONE:
                batch = RecordBatch(raw)
                print(f"  {'  for scale: its CRC alone':38s}", fmt(timeit(batch.compute_crc, repeat, 20)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="codec micro-benchmark")
    ap.add_argument("--repeat", type=int, default=30)
    args = ap.parse_args(argv)

    frame = produce_frame()
    header, body = decode_request(frame)
    records = body.topic_data[0].partition_data[0].records
    assert isinstance(records, memoryview) and records.obj is frame.obj, "decode copied the batch"
    chunks = encode_response(body, 9, header.correlation_id, api_key=0)  # same bytes path as a request body
    assert any(c is records for c in chunks), "encode copied the batch"

    def produce_roundtrip():
        _, req = decode_request(frame)
        req.encode_chunks(9)

    print("Produce v9 request, one 1 MiB batch")
    print("  decode                ", fmt(timeit(lambda: decode_request(frame), args.repeat, 200)))
    print("  encode (chunks)       ", fmt(timeit(lambda: body.encode_chunks(9), args.repeat, 200)))
    print("  decode + encode       ", fmt(timeit(produce_roundtrip, args.repeat, 200)))
    print("  for scale: 1 MiB copy ", fmt(timeit(lambda: bytes(records), args.repeat, 200)))

    meta = metadata_response()
    data = meta.encode(12)
    print(f"Metadata v12 response, 100 topics x 10 partitions ({len(data)} bytes)")
    print("  encode                ", fmt(timeit(lambda: meta.encode(12), args.repeat, 5)))
    print("  decode                ", fmt(timeit(lambda: MetadataResponse.decode(data, 12), args.repeat, 5)))
    batch_checks(args.repeat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
