"""Kafka's transactions_test.py on one machine: seeded messages copied
from an input topic to an output topic by two transactional copiers
(``txn_copier.py``, separate processes) while brokers are killed with
kill -9 or restarted and copiers are killed with kill -9, all drawn from
a seed; a read_committed reader watches the output meanwhile.

The check (``check_copy``, pure) counts, and a run passes when each is 0:

``missing``
    an input value not in the output (read at read_committed);
``duplicate``
    a value more than once in the output;
``order``
    two output values of a partition in the other order than in the input;
``aborted-read`` (Jepsen's G1a)
    the reader saw, at read_committed, a value at an offset where the final
    committed output does not hold it: it read a write that was aborted;
``hanging-transaction``
    an output partition whose last stable offset stays below its high
    watermark once the copiers are done (a transaction no one ends).

    python -m tests.chaos.txn_copy --seed 1 [--messages 20000] [--faults 4]
"""

from __future__ import annotations

import argparse
import itertools
import random
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from pybroker.local_cluster import LocalCluster, wait_for

INPUT, OUTPUT, GROUP = "copy-input", "copy-output", "copy-group"
PARTITIONS = 3
COPIERS = {"copier-0": [0, 1], "copier-1": [2]}
PROPS = {
    "auto.create.topics.enable": "false",
    "offsets.topic.num.partitions": "3",
    "transaction.state.log.num.partitions": "3",
    "replica.lag.time.max.ms": "2000",
    "zookeeper.session.timeout.ms": "4000",
    "transaction.abort.timed.out.transaction.cleanup.interval.ms": "1000",
}
COPY_DEADLINE_S = 300
HANG_DEADLINE_S = 60  # past the copiers' transaction.timeout.ms (20 s) and the abort check
# A copier that commits nothing for this long is stalled in its client:
# librdkafka's send_offsets_to_transaction waits forever for a group
# coordinator that left the metadata (librdkafka issues #5511 and #5456,
# open). It is killed and started again, as an operator would, and counted.
STALL_S = 60
MAX_COPIER_RESTARTS = 20
ANOMALIES = ("missing", "duplicate", "order", "aborted-read", "hanging-transaction")


def check_copy(
    inputs: dict[int, list[str]],
    outputs: dict[int, list[tuple[int, str]]],
    reads: list[tuple[int, int, str]],
    hanging: list[int],
) -> dict[str, int]:
    """The anomalies (see the module docstring). ``outputs``: per partition
    the final read_committed records as (offset, value); ``reads``: what
    the reader saw as (partition, offset, value); ``hanging``: partitions
    whose last stable offset never reached the high watermark."""
    found = dict.fromkeys(ANOMALIES, 0)
    final = {(p, o): v for p, records in outputs.items() for o, v in records}
    for p, values in inputs.items():
        out = [v for _, v in outputs.get(p, [])]
        seen: set[str] = set()
        for v in out:
            found["duplicate"] += v in seen
            seen.add(v)
        found["missing"] += len(set(values) - seen)
        where = {v: i for i, v in enumerate(values)}
        ranks = [where[v] for v in out if v in where]
        found["order"] += sum(1 for a, b in itertools.pairwise(ranks) if b < a)
    found["aborted-read"] = sum(1 for p, o, v in reads if final.get((p, o)) != v)
    found["hanging-transaction"] = len(hanging)
    return found


@dataclass
class CopyRun:
    seed: int
    messages: int
    faults: list[str] = field(default_factory=list)
    restarts: int = 0
    stalls: int = 0
    reads: int = 0
    copied: int = 0
    anomalies: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.anomalies) and not any(self.anomalies.values()) and self.copied == self.messages

    def format(self) -> str:
        verdict = "PASS" if self.ok else "FAIL"
        lines = [
            f"txn-copy seed {self.seed}: {verdict} in {self.seconds:.0f} s",
            f"  {self.messages} seeded, {self.copied} in the output, {self.reads} read by the read_committed reader",
            (
                f"  copier restarts {self.restarts}, stalled copiers restarted {self.stalls};"
                f" faults: {', '.join(self.faults) or 'none'}"
            ),
            "  " + ", ".join(f"{k} {v}" for k, v in self.anomalies.items()),
        ]
        return "\n".join(lines)


class Copier:
    def __init__(self, name: str, partitions: list[int], until: dict[int, int], bootstrap: str, logs: Path):
        self.name, self.partitions, self.until = name, partitions, until
        self.bootstrap, self.log = bootstrap, logs / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        cmd = [sys.executable, "-m", "tests.chaos.txn_copier", "--bootstrap", self.bootstrap, "--input", INPUT,
               "--output", OUTPUT, "--partitions", ",".join(map(str, self.partitions)),
               "--until", ",".join(str(self.until[p]) for p in self.partitions), "--txn-id", self.name,
               "--group", GROUP, "--max-per-txn", "100", "--pause-ms", "150"]
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=Path(__file__).parents[2])

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def progress(self) -> int:
        """Transactions committed so far, by this copier's every run."""
        try:
            return self.log.read_bytes().count(b'{"copied": ')
        except OSError:
            return 0

    def done(self) -> bool:
        return self.proc is not None and self.proc.poll() == 0

    def crashed(self) -> bool:
        return self.proc is not None and self.proc.poll() not in (None, 0)


class Reader(threading.Thread):
    """A read_committed consumer of every output partition, from the start."""

    def __init__(self, bootstrap: str):
        super().__init__(daemon=True)
        self.bootstrap = bootstrap
        self.reads: list[tuple[int, int, str]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        from confluent_kafka import Consumer, TopicPartition

        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "copy-reader",
                      "isolation.level": "read_committed", "enable.auto.commit": False})
        c.assign([TopicPartition(OUTPUT, p, 0) for p in range(PARTITIONS)])
        try:
            while not self.stopping.is_set():
                m = c.poll(0.2)
                if m is not None and m.error() is None:
                    self.reads.append((m.partition(), m.offset(), m.value().decode()))
        finally:
            c.close()


def run(seed: int, out: Path, messages: int = 20_000, faults: int = 4) -> CopyRun:
    started = time.monotonic()
    result = CopyRun(seed, messages)
    rng = random.Random(seed)
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with LocalCluster(3, overrides=PROPS, log_dir=logs) as cluster:
        bootstrap = cluster.bootstrap_servers
        for topic in (INPUT, OUTPUT):
            _create(bootstrap, topic)
        inputs = _seed(bootstrap, messages)
        until = {p: len(v) for p, v in inputs.items()}
        copiers = [Copier(name, parts, until, bootstrap, logs) for name, parts in COPIERS.items()]
        reader = Reader(bootstrap)
        reader.start()
        for copier in copiers:
            copier.start()
        for _ in range(faults):
            time.sleep(rng.uniform(1, 3))
            result.faults.append(_fault(rng, cluster, copiers))
            result.restarts += _restart_crashed(copiers)
        deadline = time.monotonic() + COPY_DEADLINE_S
        last = {c.name: (c.progress(), time.monotonic()) for c in copiers}
        while not all(c.done() for c in copiers):
            if time.monotonic() > deadline or result.restarts > MAX_COPIER_RESTARTS:
                for c in copiers:
                    if c.proc.poll() is None:
                        c.kill()
                break
            result.restarts += _restart_crashed(copiers)
            result.stalls += _restart_stalled(copiers, last, time.monotonic())
            time.sleep(0.2)  # the copiers run on their own; this loop only watches them
        hanging = _hanging(bootstrap)
        outputs = _read_output(bootstrap)
        reader.stopping.set()
        reader.join(30)
    result.reads = len(reader.reads)
    result.copied = sum(len(v) for v in outputs.values())
    result.anomalies = check_copy(inputs, outputs, reader.reads, hanging)
    result.seconds = time.monotonic() - started
    (out / "report.txt").write_text(result.format() + "\n")
    return result


def _create(bootstrap: str, topic: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    new = NewTopic(topic, PARTITIONS, 3, config={"min.insync.replicas": "2"})
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until its answer is in
    assert admin.create_topics([new])[topic].result(30) is None


def _seed(bootstrap: str, messages: int) -> dict[int, list[str]]:
    """Write the input (idempotent, acks=all); the values per partition in log order."""
    from confluent_kafka import Producer

    placed: dict[int, list[tuple[int, str]]] = {p: [] for p in range(PARTITIONS)}
    errors = []

    def report(err, msg):
        if err is not None:
            errors.append(err)
        else:
            placed[msg.partition()].append((msg.offset(), msg.value().decode()))

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    for i in range(messages):
        producer.produce(INPUT, f"v-{i}".encode(), partition=i % PARTITIONS, on_delivery=report)
        if i % 1000 == 999:
            producer.poll(0)
    assert producer.flush(60) == 0 and not errors, errors[:3]
    return {p: [v for _, v in sorted(recs)] for p, recs in placed.items()}


def _fault(rng: random.Random, cluster: LocalCluster, copiers: list[Copier]) -> str:
    kind = rng.choice(["kill-broker", "restart-broker", "kill-copier"])
    if kind == "kill-copier":
        copier = rng.choice(copiers)
        if copier.proc.poll() is None:
            copier.kill()
            copier.start()
        return f"kill -9 {copier.name}"
    broker = rng.choice(cluster.brokers)
    if kind == "kill-broker":
        broker.kill()
        time.sleep(rng.uniform(2, 5))
    else:
        broker.stop()
    broker.start()
    _wait_full_isrs(cluster)
    return f"{'kill -9' if kind == 'kill-broker' else 'restart'} broker {broker.node_id}"


def _wait_full_isrs(cluster: LocalCluster) -> None:
    def full() -> bool:
        answer = cluster.metadata([INPUT, OUTPUT, "__transaction_state"])
        return all(len(p.isr_nodes) == 3 and p.leader_id >= 0 for t in answer.topics for p in t.partitions)

    wait_for(full, 90, "every partition back to three in-sync replicas")


def _restart_stalled(copiers: list[Copier], last: dict[str, tuple[int, float]], now: float) -> int:
    """Kill and start again a running copier that committed nothing for
    STALL_S; ``last``: each one's progress and since when (updated)."""
    restarted = 0
    for copier in copiers:
        if copier.done() or copier.proc.poll() is not None:
            continue
        count, since = last[copier.name]
        current = copier.progress()
        if current != count:
            last[copier.name] = (current, now)
        elif now - since > STALL_S:
            copier.kill()
            copier.start()
            last[copier.name] = (current, now)
            restarted += 1
    return restarted


def _restart_crashed(copiers: list[Copier]) -> int:
    restarted = 0
    for copier in copiers:
        if copier.crashed():
            copier.start()
            restarted += 1
    return restarted


def _hanging(bootstrap: str) -> list[int]:
    """Output partitions whose last stable offset stays below the high watermark."""
    from confluent_kafka import Consumer, TopicPartition

    def watermarks(isolation: str) -> dict[int, int]:
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": "copy-check", "isolation.level": isolation})
        try:
            return {p: c.get_watermark_offsets(TopicPartition(OUTPUT, p), timeout=10)[1] for p in range(PARTITIONS)}
        finally:
            c.close()

    deadline = time.monotonic() + HANG_DEADLINE_S
    while True:
        lso, hw = watermarks("read_committed"), watermarks("read_uncommitted")
        behind = [p for p in range(PARTITIONS) if lso[p] < hw[p]]
        if not behind or time.monotonic() > deadline:
            return behind
        time.sleep(0.5)


def _read_output(bootstrap: str) -> dict[int, list[tuple[int, str]]]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "copy-final", "isolation.level": "read_committed",
                  "enable.auto.commit": False, "enable.partition.eof": True})
    c.assign([TopicPartition(OUTPUT, p, 0) for p in range(PARTITIONS)])
    out: dict[int, list[tuple[int, str]]] = {p: [] for p in range(PARTITIONS)}
    at_end: set[int] = set()
    deadline = time.monotonic() + 120
    try:
        while len(at_end) < PARTITIONS and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == -191:  # _PARTITION_EOF, at the last stable offset
                    at_end.add(m.partition())
                continue
            at_end.discard(m.partition())
            out[m.partition()].append((m.offset(), m.value().decode()))
    finally:
        c.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.txn_copy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--faults", type=int, default=4)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="pybroker-txn-copy-"))
    result = run(args.seed, out, args.messages, args.faults)
    print(result.format())
    print(f"history and logs: {out}")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
