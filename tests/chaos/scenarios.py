"""The scenarios: which faults, on what schedule, drawn from a seed.

A schedule is a list of steps run one after another: wait ``delay``
seconds (the workload runs meanwhile), inject the fault, hold it
``hold`` seconds, heal it, wait until every ISR is full again. Only one
fault is open at a time: with RF 3 and min.insync.replicas=2 the cluster
is meant to stay available through any one of them, which is what the
availability figures then show.

The same seed gives the same schedule (kinds, partitions, delays, holds);
what the cluster does with it is up to the cluster.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from .cluster import SESSION_MS

ZOMBIE_HOLD = SESSION_MS / 1000 + 5  # a SIGSTOP must outlast the session for the cluster to act
# An acks=all produce to a partition whose ISR fell below min.insync.replicas
# waits for the high watermark, which does not move (Kafka 3.7+), until the
# request's timeout (the clients' 30 s); later requests on the connection
# queue behind it. Only a cut longer than the ISR shrink (replica.lag.time.max.ms)
# plus that timeout shows the clients NOT_ENOUGH_REPLICAS.
PAST_REQUEST_TIMEOUT = 45.0


@dataclass(frozen=True)
class Step:
    delay: float
    kind: str
    partition: int
    hold: float


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    schedule: Callable[[random.Random, int, float], list[Step]]  # (rng, partitions, duration) -> steps
    duration: float = 0.0  # the least time the workload runs, from its start to the final read
    acks: str = "all"
    # Also an anomaly here: a send failed with an error that is not retriable (CLUSTER.md: controlled shutdown).
    strict_errors: bool = False
    # Anomalies this scenario's clients are not promised against (acks=1 may
    # lose what the leader acknowledged alone): reported, not failed.
    tolerated: frozenset[str] = field(default_factory=frozenset)


def _repeat(kind: str, times: int, hold: tuple[float, float]) -> Callable:
    def schedule(rng: random.Random, partitions: int, duration: float) -> list[Step]:
        return [Step(rng.uniform(3, 6), kind, rng.randrange(partitions), rng.uniform(*hold)) for _ in range(times)]

    return schedule


def _fixed(*steps: tuple[str, float]) -> Callable:
    def schedule(rng: random.Random, partitions: int, duration: float) -> list[Step]:
        return [Step(rng.uniform(3, 5), kind, rng.randrange(partitions), hold) for kind, hold in steps]

    return schedule


def _random(rng: random.Random, partitions: int, duration: float) -> list[Step]:
    """A fault every 10 s (counted from the last heal) until ``duration`` of faults is planned."""
    holds = {
        "kill-leader": (4, 10),
        "kill-controller": (4, 10),
        "sigterm-leader": (3, 8),
        "sigstop-leader": (ZOMBIE_HOLD, ZOMBIE_HOLD),
        "zk-down": (5, 20),
        # Shorter than the session: the lease lapses and comes back, no one is elected; longer: a failover.
        "cut-leader-zk": (3, ZOMBIE_HOLD),
        "cut-leader-peers": (6, 12),
    }
    steps, planned = [], 0.0
    while planned < duration:
        kind = rng.choice(sorted(holds))
        step = Step(10.0, kind, rng.randrange(partitions), rng.uniform(*holds[kind]))
        steps.append(step)
        planned += step.delay + step.hold
    return steps


ACKS_1_TOLERATED = frozenset({"lost", "inconsistent-offsets", "duplicate", "order"})

SCENARIOS = {
    s.name: s
    for s in (
        Scenario(
            "kill-leader", "kill -9 the leader of a random partition, 3 times", _repeat("kill-leader", 3, (8, 12))
        ),
        Scenario("kill-controller", "kill -9 the controller, 3 times", _repeat("kill-controller", 3, (8, 12))),
        Scenario(
            "sigterm-leader",
            "SIGTERM (controlled shutdown) of a partition's leader, 3 times; non-retriable client errors count",
            _repeat("sigterm-leader", 3, (5, 8)),
            strict_errors=True,
        ),
        Scenario(
            "sigstop-leader",
            "SIGSTOP a partition's leader for the session timeout + 5 s, then SIGCONT (a zombie), twice",
            _repeat("sigstop-leader", 2, (ZOMBIE_HOLD, ZOMBIE_HOLD)),
        ),
        Scenario(
            "sigstop-leader-acks1",
            "the zombie with acks=1 producers (no idempotence): acknowledged writes may be lost, "
            "but no consumer may read what is later truncated",
            _repeat("sigstop-leader", 2, (ZOMBIE_HOLD, ZOMBIE_HOLD)),
            acks="1",
            tolerated=ACKS_1_TOLERATED,
        ),
        Scenario("zk-down", "ZooKeeper stopped for 20 s, then started again", _repeat("zk-down", 1, (20, 20))),
        Scenario(
            "cut-leader-zk",
            "cut a partition's leader from ZooKeeper only (not from clients or brokers) for the session "
            "timeout + 5 s, 3 times: its lease lapses, another is elected, healed it follows",
            _repeat("cut-leader-zk", 3, (ZOMBIE_HOLD, ZOMBIE_HOLD)),
        ),
        Scenario(
            "cut-leader-peers",
            "cut a partition's leader from the other brokers only (not from ZooKeeper or clients), for 12 s "
            "then for 45 s: its ISR shrinks to itself; acks=all writes wait (the high watermark holds), "
            "past the request timeout they are refused (retriable); non-retriable client errors count",
            _fixed(("cut-leader-peers", 12), ("cut-leader-peers", PAST_REQUEST_TIMEOUT)),
            strict_errors=True,
        ),
        Scenario("random", "a random fault every 10 s for --duration (default 120 s)", _random, duration=120),
        Scenario(
            "smoke",
            "kill -9 a leader, SIGSTOP a leader (zombie), SIGTERM a leader: once each, about 3 minutes",
            _fixed(("kill-leader", 8), ("sigstop-leader", ZOMBIE_HOLD), ("sigterm-leader", 5)),
        ),
    )
}
