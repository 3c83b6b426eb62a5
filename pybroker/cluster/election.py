"""Who leads a partition: the controller's choices as plain functions.

Kafka's ZooKeeper controller decides leaders with a handful of rules
(``PartitionStateMachine.initializeLeaderAndIsrForPartitions`` and
``PartitionLeaderElectionAlgorithms``; ``ReplicaStateMachine`` for the
ISR of a replica going offline). The assignment order is the order of
preference everywhere: its head is the preferred leader, and when several
replicas qualify the earliest in the assignment wins. ``live`` is the set
of brokers registered in ZooKeeper; ``isr`` the partition's in-sync
replicas as its state znode holds them.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence


def initial_leader_and_isr(replicas: Sequence[int], live: Collection[int]) -> tuple[int, list[int]] | None:
    """A new partition going online: its live replicas form the ISR and
    the first of them leads; None when no replica is live (it stays new)."""
    isr = [r for r in replicas if r in live]
    if not isr:
        return None
    return isr[0], isr


def offline_partition_leader(
    replicas: Sequence[int], isr: Collection[int], live: Collection[int], unclean: bool
) -> int | None:
    """A partition whose leader is gone: the first live replica in the ISR;
    failing that, with unclean election allowed, the first live replica at
    all (which may lose acknowledged writes)."""
    for r in replicas:
        if r in live and r in isr:
            return r
    if unclean:
        for r in replicas:
            if r in live:
                return r
    return None


def preferred_replica_leader(replicas: Sequence[int], isr: Collection[int], live: Collection[int]) -> int | None:
    """Back to the preferred replica (the assignment's head), only if it is
    live and in sync."""
    if replicas and replicas[0] in live and replicas[0] in isr:
        return replicas[0]
    return None


def controlled_shutdown_leader(
    replicas: Sequence[int], isr: Collection[int], live: Collection[int], shutting_down: Collection[int]
) -> int | None:
    """Leadership moving off brokers that are shutting down: the first
    live, in-sync replica not itself shutting down."""
    for r in replicas:
        if r in live and r in isr and r not in shutting_down:
            return r
    return None


def isr_without(isr: Sequence[int], dead: Collection[int]) -> list[int]:
    """The ISR once the ``dead`` replicas have left it, one at a time as
    the controller takes them offline. The last member is never removed
    (``doRemoveReplicasFromIsr`` keeps an ISR of one as it is): it is the
    replica holding every acknowledged write, and a later clean election
    needs it named there."""
    result = list(isr)
    for r in list(result):
        if r in dead and len(result) > 1:
            result.remove(r)
    return result
