"""One chaos run from start to verdict: cluster, topic, workload, the
scenario's faults, heal, full ISRs, final read, checker.

Everything is bounded: each wait has a deadline, and every process is
stopped by its PID (LocalCluster's ``__exit__``) whatever happens,
Ctrl-C included. The run's directory keeps the history
(``history.jsonl``), the brokers' logs (``logs/``) and the report
(``report.txt``); the cluster's data dir is temporary and goes with the
cluster.
"""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from pybroker.local_cluster import wait_for

from .checker import Report, check
from .cluster import ChaosCluster, CommandFactory
from .faults import Faults
from .history import History, read_history
from .scenarios import Scenario
from .workload import Workload, final_read

PARTITIONS = 3
RATE = 100  # sends per second, per producer
RECOVERY_TIMEOUT = 90  # for the ISRs to be full again after a heal
WARMUP_TIMEOUT = 60  # for every partition to have acks before the first fault


@dataclass
class RunResult:
    scenario: str
    seed: int
    out: Path
    report: Report
    harness_errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    tolerated: frozenset[str] = frozenset()

    @property
    def ok(self) -> bool:
        failing = set(self.report.anomalies) - set(self.tolerated)
        return not failing and not self.harness_errors

    def format(self) -> str:
        lines = [f"scenario {self.scenario}, seed {self.seed}, {self.seconds:.0f} s; history in {self.out}"]
        lines.append(self.report.format())
        if self.tolerated and set(self.report.anomalies) & self.tolerated:
            lines.append(
                f"tolerated by this scenario: {', '.join(sorted(set(self.report.anomalies) & self.tolerated))}"
            )
        lines += [f"harness error: {e}" for e in self.harness_errors]
        lines.append("RUN PASSED" if self.ok else "RUN FAILED")
        return "\n".join(lines)


def run(
    scenario: Scenario,
    seed: int,
    out: Path,
    duration: float | None = None,
    partitions: int = PARTITIONS,
    rate: float = RATE,
    command: CommandFactory | None = None,
    overrides: dict[str, str] | None = None,
    log=print,
) -> RunResult:
    began = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    duration = scenario.duration if duration is None else duration
    steps = scenario.schedule(rng, partitions, duration)
    topic = f"chaos-{scenario.name}-{seed}"
    harness_errors: list[str] = []
    history = History(out / "history.jsonl")
    try:
        with ChaosCluster(3, command=command, overrides=overrides, log_dir=out / "logs") as cluster:
            log(f"cluster up: {cluster.bootstrap_servers}, ZooKeeper {cluster.zookeeper.connect}")
            cluster.create_topic(topic, partitions)
            history.record(
                "meta",
                scenario=scenario.name,
                seed=seed,
                topic=topic,
                partitions=partitions,
                rate=rate,
                acks=scenario.acks,
                steps=[s.__dict__ for s in steps],
                brokers=cluster.bootstrap_servers,
            )
            workload = Workload(cluster, history, topic, partitions, rate=rate, acks=scenario.acks)
            faults = Faults(cluster, history, topic)
            workload.start()
            try:
                _play(cluster, faults, history, topic, partitions, steps, duration, harness_errors, log)
                _heal(cluster, faults, history, topic, harness_errors)
            finally:
                # Also on Ctrl-C, where nothing is healed: the clients stop, then the cluster.
                stuck = workload.stop()
                if stuck:
                    harness_errors.append(f"clients that did not stop in time: {stuck}")
            for name, exc in workload.crashed().items():
                harness_errors.append(f"client {name} crashed: {exc!r}")
            log(f"[{history.now():7.2f}] workload stopped; final read")
            final_read(cluster, history, topic, partitions)
        harness_errors += [f"proxy: {e}" for e in cluster.network.errors]
    finally:
        history.close()
    report = check(read_history(out / "history.jsonl"), strict_errors=scenario.strict_errors)
    result = RunResult(scenario.name, seed, out, report, harness_errors, time.monotonic() - began, scenario.tolerated)
    (out / "report.txt").write_text(result.format() + "\n")
    (out / "report.json").write_text(json.dumps(_summary(result), indent=1, default=str) + "\n")
    return result


def _play(cluster, faults, history, topic, partitions, steps, duration, harness_errors, log) -> None:
    """The schedule: each step's delay, fault, hold, heal and wait for full
    ISRs. A failure of the harness (a broker that will not start again, an
    ISR that stays short) is recorded and ends the schedule; the run then
    goes on to the final read, which is where a broker's bug shows."""
    pause = threading.Event()  # never set: its wait() is the scenario's clock, and Ctrl-C ends it
    try:
        wait_for(
            lambda: history.counts["ack"] >= 10 * partitions and history.counts["poll"] > 0,
            WARMUP_TIMEOUT,
            "the workload's first acks and reads",
            interval=0.2,
        )
        for i, step in enumerate(steps, 1):
            pause.wait(step.delay)  # the schedule, not a synchronisation: the workload runs meanwhile
            fault = faults.inject(step.kind, step.partition)
            log(
                f"[{history.now():7.2f}] fault {i}/{len(steps)}: {step.kind} broker {fault.broker} "
                f"(led {fault.partitions}), held {step.hold:.1f} s"
            )
            pause.wait(step.hold)
            faults.heal(fault)
            log(f"[{history.now():7.2f}] healed {step.kind} {fault.details or ''}")
            cluster.wait_full_isr(topic, RECOVERY_TIMEOUT)
            log(f"[{history.now():7.2f}] every ISR full again")
        left = duration - history.now()
        if left > 0:
            pause.wait(left)
    except Exception as exc:  # noqa: BLE001 - recorded; the final read still says what the clients were promised
        harness_errors.append(f"schedule stopped: {exc!r}")
        history.record("harness", error=repr(exc))
        log(f"[{history.now():7.2f}] schedule stopped: {exc!r}")


def _heal(cluster, faults, history, topic, harness_errors) -> None:
    """Everything back up, every ISR full (bounded); a failure is recorded."""
    try:
        faults.heal_all()
        cluster.wait_full_isr(topic, RECOVERY_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - recorded; the final read goes on with what is up
        harness_errors.append(f"final heal: {exc!r}")
        history.record("harness", error=repr(exc))


def _summary(result: RunResult) -> dict:
    r = result.report
    return {
        "scenario": result.scenario,
        "seed": result.seed,
        "ok": result.ok,
        "anomalies": r.counts,
        "examples": r.examples,
        "sends": r.sends,
        "acks": r.acks,
        "failures": r.failures,
        "unknown": r.unknown,
        "non_retriable": r.non_retriable,
        "client_errors": dict(r.client_errors),
        "longest_gap": r.longest_gap and r.longest_gap.__dict__,
        "faults": [
            {
                "id": f.id,
                "kind": f.kind,
                "broker": f.broker,
                "start": f.start,
                "end": f.end,
                "partitions": f.partitions,
                "longest_gap": f.longest_gap and f.longest_gap.length,
                "failover_ack": f.failover_ack,
                "failover_leader": f.failover_leader,
                "details": f.details,
            }
            for f in r.faults
        ],
        "by_kind": r.by_kind(),
        "harness_errors": result.harness_errors,
        "seconds": result.seconds,
    }
