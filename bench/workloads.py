"""The workloads, each a named scenario run the same way against every
broker. A workload returns a dict of figures plus ``flags``: what went
wrong or what the broker got away with (lost or duplicated messages, a
high watermark that disagrees with what was acknowledged, a Fetch that
ignored its size limits), and ``notes`` on the measurement itself. Neither
stops the run; both go in the tables.

Sizes come from a Plan (full or --quick). A workload's topics are created
with the broker kind's replication factor and, for the replication cases,
the topic configs of a Durability (min.insync.replicas, write.caching),
named in the workload's name. acks=all to such a topic is probed first
with one Produce per partition: a broker that refuses it (NOT_ENOUGH_REPLICAS
while followers are not in sync) gets that refusal as the workload's flag,
not two minutes of a client's retries.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import ProtocolError
from pybroker.protocol.record_batch import iter_batches
from pybroker.protocol.records import NewRecord, build_batch

from .brokers import BrokerProcess
from .clients import loadgen_argv, run_together
from .metrics import check_messages_in
from .rawclient import RawClient, by_leader


@dataclass(frozen=True)
class Plan:
    quick: bool
    producers: int  # concurrent producer processes
    count_1k: int  # messages per producer, 1 KiB values
    count_100b: int  # messages per producer, 100 B values
    repeats: int  # produce runs per case (median reported)
    latency_seconds: float
    latency_cases: tuple  # (rate, acks)
    wide_partitions: int
    wide_count: int  # messages per producer on the wide topic
    storm_connections: int
    storm_seconds: float
    startup_topics: int
    startup_partitions_each: int
    replication_latency_rates: tuple = (10000,)  # the replication cases' end-to-end latency, acks=all


FULL = Plan(
    quick=False,
    producers=3,
    count_1k=150_000,
    count_100b=600_000,
    repeats=3,
    latency_seconds=10,
    latency_cases=((1000, "1"), (10000, "1"), (1000, "all"), (10000, "all")),
    wide_partitions=1000,
    wide_count=50_000,
    storm_connections=200,
    storm_seconds=10,
    startup_topics=10,
    startup_partitions_each=1000,
)

QUICK = Plan(
    quick=True,
    producers=3,
    count_1k=5_000,
    count_100b=20_000,
    repeats=1,
    latency_seconds=2,
    latency_cases=((1000, "1"), (10000, "1")),
    wide_partitions=1000,
    wide_count=2_000,
    storm_connections=200,
    storm_seconds=2,
    startup_topics=2,
    startup_partitions_each=500,
)

PRODUCE_CASES = (("1k", 1024, "1"), ("1k", 1024, "all"), ("100b", 100, "1"), ("100b", 100, "all"))


@dataclass(frozen=True)
class Durability:
    """Topic configs a workload's topics are created with; ``name`` goes in
    the workload's name ("" for the broker's defaults)."""

    name: str = ""
    configs: tuple = ()  # ((config, value), ...)

    @property
    def min_insync(self) -> int:
        return int(dict(self.configs).get("min.insync.replicas", 1))

    def about(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.configs)

    def topic(self, stem: str) -> str:
        return f"{stem}-{self.name}" if self.name else stem


DEFAULTS = Durability()
# The replicated topics of issue 15: acks=all waits for every in-sync
# replica and is refused below two; write.caching=true leaves fsync out of
# the high watermark (the durable high watermark's cost is the difference).
ISR2 = Durability("isr2", (("min.insync.replicas", "2"),))
ISR2_CACHED = Durability("isr2-cached", (("min.insync.replicas", "2"), ("write.caching", "true")))
REPLICATION_CASES = (ISR2, ISR2_CACHED)


class Run:
    """One broker's pass through the workloads."""

    def __init__(self, broker: BrokerProcess, plan: Plan, workdir: Path):
        self.broker = broker
        self.plan = plan
        self.workdir = workdir
        self.client_log = workdir / f"{broker.kind.name}-clients.log"
        self.topics_made = 0
        # The topic each size's last acks=1 run wrote (with a durability's
        # name: its acks=all run), for the consume workload.
        self.produced: dict[str, tuple[str, int, int]] = {}
        self.probes = 0
        self.refused: dict[str, str] = {}  # like produced: what a refusal left unwritten
        self.metrics_notes: list[str] = []  # pybroker-metrics: what /metrics said of each produce run
        # Where the load generator's producers and consumers connect, and the
        # librdkafka settings that takes (bench.tls: an SSL or SASL_SSL
        # listener); topics are made and checked on the broker's bootstrap.
        self.client_bootstrap = broker.bootstrap
        self.client_conf: dict = {}

    # -- helpers ------------------------------------------------------------------

    def create_topic(self, name: str, partitions: int, durability: Durability = DEFAULTS) -> None:
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.broker.bootstrap})
        topic = NewTopic(name, partitions, self.broker.kind.replication_factor, config=dict(durability.configs))
        futures = admin.create_topics([topic], request_timeout=120, operation_timeout=120)
        futures[name].result(180)
        deadline = time.monotonic() + 120
        with RawClient(self.broker.bootstrap) as c:
            # A cluster's partitions are usable once each has a leader.
            ready = c.partitions if self.broker.kind.brokers == 1 else c.leaders
            while len(ready(name)) < partitions:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} never showed {partitions} partitions")
                time.sleep(0.05)

    def leaders(self, topic: str) -> dict[int, str]:
        """Where to ask about each partition: a single broker for all, a cluster's leaders for theirs."""
        with RawClient(self.broker.bootstrap) as c:
            if self.broker.kind.brokers == 1:
                return dict.fromkeys(c.partitions(topic), self.broker.bootstrap)
            return c.leaders(topic)

    def latest_offsets(self, topic: str) -> dict[int, int]:
        """Every partition's high watermark, from its leader."""
        leaders = self.leaders(topic)
        offsets: dict[int, int] = {}
        for address in sorted(set(leaders.values())):
            with RawClient(address) as c:
                offsets.update(c.latest_offsets(topic, [p for p, a in leaders.items() if a == address]))
        return offsets

    def measured(self, fn):
        """Run ``fn`` and return (its result, broker CPU seconds, peak RSS)."""
        # What earlier workloads left in the page cache goes to disk now,
        # not in the middle of this one's fsyncs.
        os.sync()
        self.broker.reset_peak_rss()
        cpu = self.broker.cpu_seconds()
        result = fn()
        return result, self.broker.cpu_seconds() - cpu, self.broker.peak_rss_bytes()

    def check_high_watermarks(self, topic: str, acked: int, flags: list, markers: int = 0) -> float:
        """Whether the high watermarks sum to what was acknowledged (plus up
        to ``markers`` transaction markers); returns how long they took to
        get there. A cluster's may lag its leaders' acks=1 answers while
        followers copy: given up to 30 s."""
        t = time.monotonic()
        deadline = t + (30 if self.broker.kind.brokers > 1 else 0)
        while True:
            total = sum(self.latest_offsets(topic).values())
            if total >= acked or time.monotonic() >= deadline:
                break
            time.sleep(0.01)
        if not acked <= total <= acked + markers:
            # Whether the data is really gone, the consume workload tells.
            flags.append(
                f"wrong high watermark: ListOffsets(latest) sums to {total:,} for {acked:,} acknowledged messages"
            )
        return time.monotonic() - t

    def refusal(self, durability: Durability, acks: str) -> str | None:
        """Why acks=all cannot be measured on topics of this durability, or
        None: one Produce (acks=all) to each partition of a probe topic
        created like the workload's, sent to its leader, and again for up to
        10 s while any is refused (a new topic's leaders may not know yet
        that they lead, nor its followers have caught up)."""
        if acks != "all" or durability.min_insync <= 1:
            return None
        self.probes += 1
        topic = f"bench-probe-{durability.name}-{self.probes}"
        self.create_topic(topic, 6, durability)
        now = int(time.time() * 1000)
        batch = build_batch([NewRecord(value=b"probe", timestamp=now)], base_timestamp=now)
        refused: dict[int, tuple[int, str | None]] = dict.fromkeys(range(6), (-1, None))
        deadline = time.monotonic() + 10
        while True:
            for address, partitions in by_leader(self.broker.bootstrap, topic).items():
                with RawClient(address, timeout=60) as c:
                    for p in partitions:
                        if p in refused:
                            code, message = c.produce_once(topic, p, batch, acks=-1, timeout_ms=30000)
                            if code:
                                refused[p] = (code, message)
                            else:
                                del refused[p]
            if not refused or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if not refused:
            return None
        counts = Counter(_code_name(code) for code, _ in refused.values())
        example = next((m for _, m in refused.values() if m), "")
        return (
            f"refused: acks=all to a topic with {durability.about()} got "
            + ", ".join(f"{name} on {n} of 6 partitions" for name, n in counts.items())
            + (f" ({example})" if example else "")
            + " for 10 s; nothing measured"
        )

    # -- produce ------------------------------------------------------------------

    def run_producers(
        self, topic: str, count: int, size: int, acks: str, flags: list, spread: bool = False, per_txn: int = 0
    ) -> dict:
        """The plan's producer processes, ``count`` messages each, at once;
        checks every message was acknowledged and the high watermarks agree."""
        argvs = [
            loadgen_argv(
                "produce",
                bootstrap=self.client_bootstrap,
                topic=topic,
                count=count,
                size=size,
                acks=acks,
                producer=n,
                spread=spread,
                per_txn=per_txn or None,
                client_conf=json.dumps(self.client_conf) if self.client_conf else None,
            )
            for n in range(self.plan.producers)
        ]
        results, cpu, rss = self.measured(lambda: run_together(argvs, self.client_log, timeout=600))
        acked = sum(r["acked"] for r in results)
        for r in results:
            if r["error_count"] or r["unflushed"]:
                flags.append(
                    f"producer errors: {r['error_count']} failed, {r['unflushed']} unflushed: {r['errors'][:2]}"
                )
        # Each commit writes a marker to every partition of its transaction.
        markers = sum(r.get("commits", 0) for r in results) * 6
        hw_s = self.check_high_watermarks(topic, acked, flags, markers)
        if self.broker.kind.metrics_url:
            check_messages_in(self.broker.kind.metrics_url, topic, acked + markers, flags, self.metrics_notes)
        seconds = max(r["end"] for r in results) - min(r["start"] for r in results)
        commits = [r["commit_ms"] for r in results if r.get("commits")]
        return {
            "msgs": acked / seconds,
            "mbs": acked * size / seconds / 1e6,
            "cpu": cpu,
            "rss": rss,
            "hw_s": hw_s,
            "commit_p50": statistics.median(c["p50"] for c in commits) if commits else None,
            "commit_p99": max(c["p99"] for c in commits) if commits else None,
        }

    def transactions(self, per_txn: int) -> dict:
        """Transactional produce of 1 KiB messages, ``per_txn`` a transaction."""
        plan = self.plan
        runs = []
        flags: list[str] = []
        for rep in range(plan.repeats):
            topic = f"bench-txn{per_txn}-{rep}"
            self.create_topic(topic, 6)
            runs.append(self.run_producers(topic, plan.count_1k, 1024, "all", flags, per_txn=per_txn))
        return {
            "msg_s": statistics.median(r["msgs"] for r in runs),
            "mb_s": statistics.median(r["mbs"] for r in runs),
            "commit_p50": statistics.median(r["commit_p50"] for r in runs),
            "commit_p99": statistics.median(r["commit_p99"] for r in runs),
            "cpu_s": statistics.median(r["cpu"] for r in runs),
            "peak_rss": max(r["rss"] for r in runs),
            "runs": len(runs),
            "flags": sorted(set(flags)),
            "notes": [],
        }

    def produce(self, label: str, size: int, acks: str, durability: Durability = DEFAULTS) -> dict:
        plan = self.plan
        notes = [f"topic configs: {durability.about()}"] if durability.configs else []
        refused = self.refusal(durability, acks)
        if refused:
            self.refused[durability.topic(label)] = refused
            return {"flags": [refused], "notes": notes}
        count = plan.count_1k if size == 1024 else plan.count_100b
        runs = []
        flags: list[str] = []
        for rep in range(plan.repeats):
            topic = f"{durability.topic(f'bench-{label}')}-acks{acks}-{rep}"
            self.create_topic(topic, 6, durability)
            runs.append(self.run_producers(topic, count, size, acks, flags))
            if acks == "1" or durability.name:
                self.produced[durability.topic(label)] = (topic, count, size)
        lag = max(r["hw_s"] for r in runs)
        notes += self.metrics_notes
        self.metrics_notes = []
        if self.broker.kind.brokers > 1 and lag > 0.05:
            notes.append(f"the high watermarks covered every acknowledged message {lag:.2f} s after the last answer")
        return {
            "msg_s": statistics.median(r["msgs"] for r in runs),
            "mb_s": statistics.median(r["mbs"] for r in runs),
            "cpu_s": statistics.median(r["cpu"] for r in runs),
            "peak_rss": max(r["rss"] for r in runs),
            "runs": len(runs),
            "flags": sorted(set(flags)),
            "notes": notes,
        }

    # -- consume ------------------------------------------------------------------

    def fetch_limit_flags(self, topic: str) -> tuple[list[str], bool]:
        """Ask for 64 KiB from a partition holding much more and check the
        answer keeps to it (KIP-74 lets only a single oversized first batch
        through). Returns (flags, ignores limits)."""
        limit = 64 * 1024
        try:
            latest = self.latest_offsets(topic)
            partition = max(latest, key=latest.get)
            with RawClient(self.leaders(topic)[partition], timeout=60) as c:
                data, frame_size = c.fetch_once(topic, partition, 0, limit, limit)
        except Exception as exc:
            return [f"Fetch limit check not possible: {exc}"], False
        flags = []
        records = data.records or b""
        if len(records) > limit:
            try:
                batches = sum(1 for _ in iter_batches(memoryview(bytes(records))))
            except ProtocolError:
                batches = -1
            if batches != 1:
                flags.append(
                    f"ignores fetch limits: {frame_size:,} bytes answered a Fetch limited to {limit:,} ({batches} batches)"
                )
        if data.high_watermark != latest[partition]:
            flags.append(f"Fetch high watermark {data.high_watermark} differs from ListOffsets {latest[partition]}")
        return flags, bool(flags and "ignores fetch limits" in flags[0])

    def run_consumer(self, topic: str, group: str, count: int, size: int, receive_max: bool, flags: list) -> dict:
        """One group consumer reading everything the producers wrote, each
        message checked once; figures timed from its first message."""
        argv = loadgen_argv(
            "consume",
            bootstrap=self.client_bootstrap,
            topic=topic,
            group=group,
            producers=self.plan.producers,
            per_producer=count,
            size=size,
            receive_max_bytes=2147483647 if receive_max else 0,
            timeout=300,
            client_conf=json.dumps(self.client_conf) if self.client_conf else None,
        )
        (result,), cpu, rss = self.measured(lambda: run_together([argv], self.client_log, timeout=600))
        if result["missing"] or result["duplicates"] or result["strays"] or result["wrong_size"]:
            flags.append(
                f"consumed {result['unique']}/{result['expected']}: {result['missing']} missing, "
                f"{result['duplicates']} duplicated, {result['strays']} unknown, {result['wrong_size']} wrong size"
            )
        if result["errors"]:
            flags.append(f"consumer errors: {result['errors'][:2]}")
        out = {"msg_s": None, "mb_s": None, "join_s": result["join_seconds"], "cpu_s": cpu, "peak_rss": rss}
        if result["start"] and result["end"] and result["end"] > result["start"]:
            seconds = result["end"] - result["start"]
            out["msg_s"] = result["unique"] / seconds
            out["mb_s"] = result["bytes"] / seconds / 1e6
        return out

    def consume(self, label: str) -> dict:
        if label in self.refused:
            return {"flags": ["refused: nothing to read, the produce before it was refused"]}
        if label not in self.produced:
            return {"flags": [f"nothing was produced to read (see produce-{label})"]}
        topic, count, size = self.produced[label]
        flags, cheats = self.fetch_limit_flags(topic)
        # librdkafka refuses a response above receive.message.max.bytes; a
        # broker that ignores the fetch limits gets the largest one so that
        # its consume can be measured at all (and is flagged).
        out = self.run_consumer(topic, f"bench-consume-{label}", count, size, cheats, flags)
        return {**out, "flags": flags}

    def fetch(self, label: str) -> dict:
        """The broker's side of consuming: back-to-back 1 MiB-per-partition
        Fetches of the acks=1 topic, batches counted but not decoded."""
        if label not in self.produced:
            return {"flags": ["nothing was produced to read"]}
        topic, count, _ = self.produced[label]
        flags, _ = self.fetch_limit_flags(topic)
        expect = count * self.plan.producers
        argv = loadgen_argv(
            "fetch",
            bootstrap=self.broker.bootstrap,
            topic=topic,
            expect=expect,
            passes=self.plan.repeats,
            by_leader=self.broker.kind.brokers > 1,
        )
        (result,), cpu, rss = self.measured(lambda: run_together([argv], self.client_log, timeout=600))
        flags += result["problems"]
        passes = [p for p in result["passes"] if p["seconds"] > 0]
        return {
            "msg_s": statistics.median(p["records"] / p["seconds"] for p in passes) if passes else None,
            "mb_s": statistics.median(p["bytes"] / p["seconds"] / 1e6 for p in passes) if passes else None,
            "cpu_s": cpu / max(1, len(result["passes"])),
            "peak_rss": rss,
            "fetch_mb": statistics.median(p["bytes"] / p["fetches"] / 1e6 for p in passes) if passes else None,
            "flags": sorted(set(flags)),
        }

    # -- latency ------------------------------------------------------------------

    def latency(self, rate: int, acks: str, durability: Durability = DEFAULTS) -> dict:
        notes = [f"topic configs: {durability.about()}"] if durability.configs else []
        refused = self.refusal(durability, acks)
        if refused:
            return {"flags": [refused], "notes": notes}
        topic = f"{durability.topic(f'bench-latency-{rate}')}-acks{acks}"
        self.create_topic(topic, 6, durability)
        count = int(rate * self.plan.latency_seconds)
        consumer = loadgen_argv(
            "latency-consume", bootstrap=self.broker.bootstrap, topic=topic, expect=count, timeout=120
        )
        producer = loadgen_argv(
            "latency-produce", bootstrap=self.broker.bootstrap, topic=topic, rate=rate, count=count, acks=acks
        )
        (c, p), cpu, rss = self.measured(lambda: run_together([consumer, producer], self.client_log, timeout=300))
        flags = []
        if c["missing"] or c["duplicates"]:
            flags.append(f"received {c['unique']}/{c['expected']}, {c['duplicates']} duplicated")
        if p["error_count"] or p["unflushed"]:
            flags.append(f"producer errors: {p['errors'][:2]}")
        # A rate the producer could not keep is a measurement note, not a
        # broker fault: the machine is shared with the load generator.
        if p["rate"] < rate * 0.95:
            notes.append(f"the producer reached only {p['rate']:,.0f} msg/s")
        return {
            "p50": c["p50"],
            "p99": c["p99"],
            "p999": c["p999"],
            "cpu_s": cpu,
            "peak_rss": rss,
            "flags": flags,
            "notes": notes,
        }

    # -- scale --------------------------------------------------------------------

    def wide(self) -> dict:
        """Produce across 1,000 partitions (every message to a random one),
        then read it all back with one group consumer."""
        plan = self.plan
        topic = f"bench-wide-{plan.wide_partitions}"
        flags: list[str] = []
        t = time.monotonic()
        self.create_topic(topic, plan.wide_partitions)
        create_s = time.monotonic() - t
        produced = self.run_producers(topic, plan.wide_count, 1024, "1", flags, spread=True)
        consumed = self.run_consumer(topic, "bench-wide", plan.wide_count, 1024, True, flags)
        return {
            "create_s": create_s,
            "produce_msg_s": produced["msgs"],
            "consume_msg_s": consumed["msg_s"],
            "join_s": consumed["join_s"],
            "cpu_s": produced["cpu"] + consumed["cpu_s"],
            "peak_rss": max(produced["rss"], consumed["peak_rss"]),
            "flags": flags,
        }

    def storm(self) -> dict:
        """Many connections at once, each producing small batches (acks=1)
        back to back to its own partition of the wide topic."""
        plan = self.plan
        topic = f"bench-wide-{plan.wide_partitions}"
        argv = loadgen_argv(
            "connections",
            bootstrap=self.broker.bootstrap,
            topic=topic,
            partitions=plan.wide_partitions,
            connections=plan.storm_connections,
            seconds=plan.storm_seconds,
            by_leader=self.broker.kind.brokers > 1,
        )
        (r,), cpu, rss = self.measured(lambda: run_together([argv], self.client_log, timeout=300))
        flags = []
        if r["failed_connections"]:
            flags.append(f"{r['failed_connections']} of {r['connections']} connections failed: {r['failures'][:2]}")
        if r["errors"]:
            flags.append(f"{r['errors']} produce errors")
        return {
            "req_s": r["requests"] / r["seconds"],
            "msg_s": r["records"] / r["seconds"],
            "p50": r["p50"],
            "p99": r["p99"],
            "cpu_s": cpu,
            "peak_rss": rss,
            "flags": flags,
        }


def _code_name(code: int) -> str:
    if code < 0:
        return "no leader"
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"error {code}"


def startup(broker: BrokerProcess, plan: Plan, workdir: Path) -> dict:
    """Create many partitions, put one record in each, stop the broker
    gracefully and time its restart until it answers for all of them."""
    from confluent_kafka import Producer

    run = Run(broker, plan, workdir)
    total = plan.startup_topics * plan.startup_partitions_each
    names = [f"bench-startup-{n}" for n in range(plan.startup_topics)]
    for name in names:
        run.create_topic(name, plan.startup_partitions_each)
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 50, "acks": "1"})
    failures = []
    for name in names:
        for part in range(plan.startup_partitions_each):
            p.produce(name, b"x" * 100, partition=part, on_delivery=lambda err, msg: err and failures.append(str(err)))
            p.poll(0)
    left = p.flush(120)
    flags = []
    if failures or left:
        flags.append(f"{len(failures)} of {total} records failed, {left} unflushed: {failures[:2]}")
    broker.stop()
    answer_s = broker.start(timeout=600)
    deadline = time.monotonic() + 600
    with RawClient(broker.bootstrap, timeout=60) as c:
        while True:
            ready = sum(len(c.partitions(name)) for name in names)
            if ready == total or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        offsets = {name: c.latest_offsets(name, list(range(plan.startup_partitions_each))) for name in names}
    full_s = time.monotonic() - broker.started_at
    if ready != total:
        flags.append(f"only {ready} of {total} partitions after restart")
    kept = sum(1 for name in names for o in offsets[name].values() if o == 1)
    if kept != total:
        flags.append(f"{total - kept} of {total} partitions lost their record across the restart")
    return {
        "partitions": total,
        "answer_s": answer_s,
        "ready_s": full_s,
        "idle_rss": broker.rss_bytes(),
        "flags": flags,
    }
