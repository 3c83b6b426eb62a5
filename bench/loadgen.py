"""The load generator: the same client programs against every broker.

    python -m bench.loadgen produce|consume|latency-produce|latency-consume|connections ...

Each command runs in its own process (the harness starts several at once),
prints "ready" when connected, waits for a line on stdin before it starts
(so that concurrent producers start together), and prints one JSON line of
results at the end.

Every value starts with a 16-byte stamp: producer number (u32), sequence
(u32), send time (i64, ns since the epoch); the rest is filler. Consumers
check the stamps: each (producer, sequence) exactly once, none missing.
Producers and consumers are librdkafka (confluent-kafka); the connection
storm uses pybroker's own codec over asyncio because 200 librdkafka
instances would need thousands of threads on a 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import struct
import sys
import time

# (producer, sequence number, send time): the time is CLOCK_MONOTONIC's,
# which every process of the machine shares and which a step of the wall
# clock does not move (one full run showed latencies longer than its case
# lasted).
STAMP = struct.Struct(">IIq")
WARM_UP = 0xFFFFFFFF  # the sequence number of a message sent before a measurement


def _emit(result: dict) -> None:
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def _ready_then_wait() -> None:
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.readline()


def _percentiles(samples: list[float]) -> dict:
    if not samples:
        return {"p50": None, "p99": None, "p999": None, "max": None}
    s = sorted(samples)

    def at(q: float) -> float:
        return s[min(len(s) - 1, int(q * len(s)))]

    return {"p50": at(0.50), "p99": at(0.99), "p999": at(0.999), "max": s[-1]}


# -- produce --------------------------------------------------------------------


def produce(args) -> None:
    from confluent_kafka import KafkaException, Producer

    errors = []

    def on_error(err, msg):
        # delivery.report.only.error: called for failed messages only, so a
        # fast run pays no Python callback per message.
        if err is not None:
            errors.append(str(err))

    conf = {
        "bootstrap.servers": args.bootstrap,
        "linger.ms": args.linger_ms,
        "acks": args.acks,
        "delivery.report.only.error": True,
        "on_delivery": on_error,
        "message.timeout.ms": 120000,
        **json.loads(args.client_conf),
    }
    if args.spread:
        # Keyless messages stick to one partition for a while by default;
        # the 1,000-partition scenario wants every partition written.
        conf["sticky.partitioning.linger.ms"] = 0
        conf["partitioner"] = "random"
    per_txn = args.per_txn
    if per_txn:
        # A transactional producer (always acks=all and idempotent), one
        # transaction per ``per_txn`` messages.
        conf.update({
            "transactional.id": f"bench-{args.topic}-{args.producer}",
            "acks": "all",
            "transaction.timeout.ms": conf["message.timeout.ms"],  # librdkafka wants it at least as long
        })
    p = Producer(conf)
    if per_txn:
        p.init_transactions(60)
    commit_ms: list[float] = []
    md = p.list_topics(args.topic, timeout=30)
    if args.topic not in md.topics or md.topics[args.topic].error is not None:
        raise SystemExit(f"topic {args.topic} not available: {md.topics.get(args.topic)}")
    filler = os.urandom(max(0, args.size - STAMP.size))
    pid = args.producer
    _ready_then_wait()
    start = time.time()
    for seq in range(args.count):
        if per_txn and seq % per_txn == 0:
            p.begin_transaction()
        value = STAMP.pack(pid, seq, time.monotonic_ns()) + filler
        while True:
            try:
                p.produce(args.topic, value)
                break
            except BufferError:
                p.poll(0.005)
        p.poll(0)
        if per_txn and (seq % per_txn == per_txn - 1 or seq == args.count - 1):
            began = time.perf_counter()
            try:
                p.commit_transaction(120)
            except KafkaException as exc:
                errors.append(str(exc))
                break
            commit_ms.append((time.perf_counter() - began) * 1000)
    left = p.flush(120)
    end = time.time()
    try:
        p.poll(0)
    except KafkaException as exc:
        errors.append(str(exc))
    _emit(
        {
            "sent": args.count,
            "acked": args.count - len(errors) - left,
            "unflushed": left,
            "errors": errors[:5],
            "error_count": len(errors),
            "start": start,
            "end": end,
            "bytes": args.count * args.size,
            "commits": len(commit_ms),
            "commit_ms": _percentiles(commit_ms),
        }
    )


# -- consume --------------------------------------------------------------------


def consume(args) -> None:
    from confluent_kafka import Consumer

    conf = {
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "fetch.max.bytes": args.fetch_max_bytes,
        "max.partition.fetch.bytes": args.partition_max_bytes,
        # librdkafka stops fetching for fetch.queue.backoff.ms (1 s by
        # default) whenever its local queue is full; that pause, not the
        # broker, then decides the rate. Kafka's Java consumer has no such
        # pause.
        "fetch.queue.backoff.ms": 10,
        **json.loads(args.client_conf),
    }
    if args.receive_max_bytes:
        conf["receive.message.max.bytes"] = args.receive_max_bytes
    c = Consumer(conf)
    expected = args.producers * args.per_producer
    seen = [bytearray(args.per_producer) for _ in range(args.producers)]
    dups = strays = wrong_size = got = nbytes = 0
    errors: list[str] = []
    _ready_then_wait()
    t0 = time.time()
    c.subscribe([args.topic])
    first = last = None
    deadline = t0 + args.timeout
    unpack = STAMP.unpack_from
    while got < expected and time.time() < deadline:
        # Ask for no more than is missing: consume() waits for its count or
        # its timeout, and the last call must not time the timeout.
        msgs = c.consume(min(10000, expected - got), 0.5)
        if not msgs:
            if last is not None and time.time() - last > args.stall:
                break  # what is missing is not coming: the result says so
            continue
        if first is None:
            first = time.time()
        for m in msgs:
            if m.error() is not None:
                if len(errors) < 5:
                    errors.append(str(m.error()))
                continue
            v = m.value()
            if len(v) != args.size:
                wrong_size += 1
            producer, seq, _ = unpack(v)
            if producer >= args.producers or seq >= args.per_producer:
                strays += 1
                continue
            row = seen[producer]
            if row[seq]:
                dups += 1
            else:
                row[seq] = 1
                got += 1
            nbytes += len(v)
        last = time.time()
    missing = expected - got
    c.close()
    _emit(
        {
            "expected": expected,
            "unique": got,
            "missing": missing,
            "duplicates": dups,
            "strays": strays,
            "wrong_size": wrong_size,
            "errors": errors,
            "join_seconds": (first - t0) if first else None,
            "start": first,
            "end": last,
            "bytes": nbytes,
        }
    )


# -- raw fetch ------------------------------------------------------------------


def fetch(args) -> None:
    """Read a topic from the start with back-to-back Fetch requests on one
    connection, as a consumer's fetcher does, but hand the record batches
    to nobody: the figure is what the broker serves, not what a client
    library can decode. Each pass counts records from the batch headers
    and checks every partition's batches follow on without a gap.

    ``--by-leader`` (a cluster): one connection per leader, each asked for
    its own partitions; every round sends on all of them before reading
    any answer, as a consumer's one fetcher per broker would, and a leader
    whose partitions are all read to their high watermark is left out."""
    from pybroker.protocol.record_batch import split_batches
    from pybroker.protocol.registry import ApiKey

    from .rawclient import RawClient, by_leader

    if args.by_leader:
        groups = by_leader(args.bootstrap, args.topic)
    else:
        with RawClient(args.bootstrap, timeout=60, ca=args.ca) as probe:
            groups = {args.bootstrap: probe.partitions(args.topic)}
    if not any(groups.values()):
        raise SystemExit(f"topic {args.topic} has no partitions")
    passes = []
    problems: list[str] = []
    clients = {address: RawClient(address, timeout=60, ca=args.ca) for address in groups}
    try:
        for c in clients.values():
            c.version(ApiKey.FETCH, 4, 12)  # negotiated before the clock starts
        _ready_then_wait()
        for _ in range(args.passes):
            offsets = {address: dict.fromkeys(parts, 0) for address, parts in groups.items()}
            ends = {address: dict.fromkeys(parts, None) for address, parts in groups.items()}
            records = nbytes = fetches = 0
            start = time.time()
            deadline = start + args.timeout
            while records < args.expect and time.time() < deadline:
                asked = [
                    address
                    for address, end in ends.items()
                    if not args.by_leader or any(e is None or offsets[address][p] < e for p, e in end.items())
                ]
                if not asked:
                    break  # every partition read to its high watermark
                for address in asked:
                    clients[address].send_fetch(
                        args.topic, offsets[address], args.fetch_max_bytes, args.partition_max_bytes
                    )
                for address in asked:
                    answer, size = clients[address].receive_fetch(reuse=True)
                    fetches += 1
                    nbytes += size
                    at = offsets[address]
                    for p, data in answer.items():
                        if data.error_code:
                            problems.append(f"partition {p}: error {data.error_code}")
                            continue
                        ends[address][p] = data.high_watermark
                        batches, _ = split_batches(data.records or b"")
                        for b in batches:
                            if b.base_offset != at[p]:
                                problems.append(f"partition {p}: batch at {b.base_offset}, expected {at[p]}")
                            records += b.record_count
                            at[p] = b.base_offset + b.last_offset_delta + 1
            end = time.time()
            passes.append({"records": records, "bytes": nbytes, "fetches": fetches, "seconds": end - start})
            if records != args.expect:
                problems.append(f"read {records:,} records of {args.expect:,}")
    finally:
        for c in clients.values():
            c.close()
    _emit({"passes": passes, "problems": problems[:5]})


# -- latency --------------------------------------------------------------------


def latency_consume(args) -> None:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": f"latency-{os.getpid()}",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 100,
        }
    )
    md = c.list_topics(args.topic, timeout=30)
    parts = sorted(md.topics[args.topic].partitions)
    assignment = []
    for p in parts:
        _, high = c.get_watermark_offsets(TopicPartition(args.topic, p), timeout=30)
        assignment.append(TopicPartition(args.topic, p, high))
    c.assign(assignment)
    # One empty poll so every partition's position is set before the
    # producer starts: otherwise the first messages measure the start-up.
    c.consume(100, 0.5)
    latencies: list[float] = []
    seen = bytearray(args.expect)
    dups = 0
    _ready_then_wait()
    deadline = time.time() + args.timeout
    got = 0
    while got < args.expect and time.time() < deadline:
        # poll, not consume(n, timeout): consume waits for n messages or the
        # timeout, which would measure the batching, not the broker.
        m = c.poll(0.1)
        now = time.monotonic_ns()
        if m is None or m.error() is not None:
            continue
        _, seq, sent = STAMP.unpack_from(m.value())
        if seq >= args.expect:
            continue
        if seen[seq]:
            dups += 1
            continue
        seen[seq] = 1
        got += 1
        latencies.append((now - sent) / 1e6)
    c.close()
    _emit(
        {
            "expected": args.expect,
            "unique": got,
            "missing": args.expect - got,
            "duplicates": dups,
            **_percentiles(latencies),
        }
    )


def latency_produce(args) -> None:
    from confluent_kafka import Producer

    errors = []

    def on_error(err, msg):
        if err is not None:
            errors.append(str(err))

    p = Producer(
        {
            "bootstrap.servers": args.bootstrap,
            "linger.ms": args.linger_ms,
            "acks": args.acks,
            "delivery.report.only.error": True,
            "on_delivery": on_error,
        }
    )
    md = p.list_topics(args.topic, timeout=30)
    filler = os.urandom(max(0, args.size - STAMP.size))
    # One message to every partition, acknowledged before the clock starts:
    # librdkafka connects to a partition's leader on its first message, and
    # in a cluster that is two more brokers whose connection set-up the
    # first measured messages would otherwise wait for. Its sequence number
    # is beyond the count, so the consumer skips it.
    for partition in md.topics[args.topic].partitions:
        p.produce(args.topic, STAMP.pack(0, WARM_UP, time.monotonic_ns()) + filler, partition=partition)
    p.flush(60)
    _ready_then_wait()
    # Paced in 1 ms ticks: a tick sends what the schedule says is due, so a
    # late tick catches up instead of lowering the rate.
    start = time.perf_counter()
    sent = 0
    while sent < args.count:
        due = min(args.count, int((time.perf_counter() - start) * args.rate) + 1)
        while sent < due:
            p.produce(args.topic, STAMP.pack(0, sent, time.monotonic_ns()) + filler)
            sent += 1
        p.poll(0)
        wait = sent / args.rate - (time.perf_counter() - start)
        if wait > 0:
            time.sleep(min(wait, 0.001))
    left = p.flush(60)
    elapsed = time.perf_counter() - start
    _emit({"sent": sent, "unflushed": left, "error_count": len(errors), "errors": errors[:5], "rate": sent / elapsed})


# -- connection storm -----------------------------------------------------------


async def _storm_one(n: int, args, batch: bytes, versions: dict, leaders: dict, stats: dict, stop_at: float) -> None:
    from pybroker.protocol.framing import decode_response, encode_request
    from pybroker.protocol.messages.produce_request import PartitionProduceData, ProduceRequest, TopicProduceData
    from pybroker.protocol.registry import ApiKey

    partition = n % args.partitions
    address = leaders.get(partition) or args.bootstrap.split(",", 1)[0]
    reader, writer = await asyncio.open_connection(*address.rsplit(":", 1))
    try:
        version = versions["produce"]
        correlation = 0
        while time.monotonic() < stop_at:
            correlation += 1
            req = ProduceRequest(
                acks=1,
                timeout_ms=30000,
                topic_data=[
                    TopicProduceData(
                        name=args.topic, partition_data=[PartitionProduceData(index=partition, records=batch)]
                    )
                ],
            )
            t = time.perf_counter()
            writer.write(encode_request(req, version, correlation, f"storm-{n}"))
            size = struct.unpack(">i", await reader.readexactly(4))[0]
            frame = await reader.readexactly(size)
            stats["latencies"].append((time.perf_counter() - t) * 1000)
            _, resp = decode_response(ApiKey.PRODUCE, version, frame)
            code = resp.responses[0].partition_responses[0].error_code
            if code:
                stats["errors"] += 1
            else:
                stats["requests"] += 1
    finally:
        writer.close()


async def _storm(args) -> dict:
    from pybroker.protocol.records import NewRecord, build_batch
    from pybroker.protocol.registry import ApiKey

    from .rawclient import RawClient

    with RawClient(args.bootstrap) as probe:
        versions = {"produce": probe.version(ApiKey.PRODUCE, 3, 9)}
        # A cluster: each connection goes to its partition's leader.
        leaders = probe.leaders(args.topic) if args.by_leader else {}
    now = int(time.time() * 1000)
    batch = build_batch(
        [NewRecord(value=os.urandom(100), timestamp=now) for _ in range(args.records)], base_timestamp=now
    )
    stats = {"latencies": [], "requests": 0, "errors": 0}
    _ready_then_wait()
    stop_at = time.monotonic() + args.seconds
    start = time.monotonic()
    results = await asyncio.gather(
        *(_storm_one(n, args, batch, versions, leaders, stats, stop_at) for n in range(args.connections)),
        return_exceptions=True,
    )
    elapsed = time.monotonic() - start
    failures = [repr(r) for r in results if isinstance(r, BaseException)]
    return {
        "connections": args.connections,
        "failed_connections": len(failures),
        "failures": failures[:3],
        "requests": stats["requests"],
        "errors": stats["errors"],
        "records": stats["requests"] * args.records,
        "seconds": elapsed,
        **_percentiles(stats["latencies"]),
    }


def connections(args) -> None:
    _emit(asyncio.run(_storm(args)))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.loadgen")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("produce")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--acks", default="1")
    p.add_argument("--linger-ms", type=int, default=5)
    p.add_argument("--producer", type=int, default=0)
    p.add_argument("--spread", action="store_true")
    p.add_argument("--per-txn", type=int, default=0, help="transactional: messages per transaction")
    p.add_argument("--client-conf", default="{}", help="more librdkafka settings, a JSON object (security.protocol …)")
    p.set_defaults(fn=produce)

    c = sub.add_parser("consume")
    c.add_argument("--bootstrap", required=True)
    c.add_argument("--topic", required=True)
    c.add_argument("--group", required=True)
    c.add_argument("--producers", type=int, required=True)
    c.add_argument("--per-producer", type=int, required=True)
    c.add_argument("--size", type=int, required=True)
    # librdkafka's defaults: fetches of up to 1 MiB per partition.
    c.add_argument("--fetch-max-bytes", type=int, default=52428800)
    c.add_argument("--partition-max-bytes", type=int, default=1 << 20)
    c.add_argument("--receive-max-bytes", type=int, default=0)
    c.add_argument("--timeout", type=float, default=120)
    c.add_argument("--stall", type=float, default=20, help="give up after this long without a message")
    c.add_argument("--client-conf", default="{}", help="more librdkafka settings, a JSON object (security.protocol …)")
    c.set_defaults(fn=consume)

    f = sub.add_parser("fetch")
    f.add_argument("--bootstrap", required=True)
    f.add_argument("--topic", required=True)
    f.add_argument("--expect", type=int, required=True)
    f.add_argument("--passes", type=int, default=3)
    # The Java consumer's and librdkafka's defaults.
    f.add_argument("--fetch-max-bytes", type=int, default=52428800)
    f.add_argument("--partition-max-bytes", type=int, default=1 << 20)
    f.add_argument("--timeout", type=float, default=120)
    f.add_argument("--by-leader", action="store_true", help="a cluster: each partition from its leader")
    f.add_argument("--ca", help="an SSL listener: TLS, trusting this CA (PEM)")
    f.set_defaults(fn=fetch)

    lc = sub.add_parser("latency-consume")
    lc.add_argument("--bootstrap", required=True)
    lc.add_argument("--topic", required=True)
    lc.add_argument("--expect", type=int, required=True)
    lc.add_argument("--timeout", type=float, default=120)
    lc.set_defaults(fn=latency_consume)

    lp = sub.add_parser("latency-produce")
    lp.add_argument("--bootstrap", required=True)
    lp.add_argument("--topic", required=True)
    lp.add_argument("--rate", type=int, required=True)
    lp.add_argument("--count", type=int, required=True)
    lp.add_argument("--size", type=int, default=1024)
    lp.add_argument("--acks", default="1")
    lp.add_argument("--linger-ms", type=int, default=1)
    lp.set_defaults(fn=latency_produce)

    s = sub.add_parser("connections")
    s.add_argument("--bootstrap", required=True)
    s.add_argument("--topic", required=True)
    s.add_argument("--partitions", type=int, required=True)
    s.add_argument("--connections", type=int, default=200)
    s.add_argument("--records", type=int, default=10)
    s.add_argument("--seconds", type=float, default=10)
    s.add_argument("--by-leader", action="store_true", help="a cluster: each connection to its partition's leader")
    s.set_defaults(fn=connections)

    args = ap.parse_args(argv)
    args.fn(args)


if __name__ == "__main__":
    main()
