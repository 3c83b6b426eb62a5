"""A leader's view of its followers: their progress, the in-sync replica
set (ISR) and the high watermark it allows. Pure data; time (ms) comes in
as a parameter, nothing here reads a clock, logs or does I/O.

Theory of operation (Kafka's Partition.scala and Replica.scala).

*Followers.* Each fetch of a follower tells the leader the follower's log
end offset (the fetch offset: it holds, and has fsynced, everything below
it). A follower is *caught up* when it has fetched up to the leader's log
end, and it stays so for ``replica.lag.time.max.ms`` after that:
``last_caught_up_ms`` is the time of the last fetch that reached the
leader's log end as it was then, or, when a fetch reaches the log end the
leader had at the follower's previous fetch, the time of that previous
fetch. So a follower that always trails a busy leader by one produce is
still caught up, and one that stopped fetching, or keeps falling further
behind, stops being caught up after the lag time.

*The ISR.* The committed ISR is what the partition's state (the ZooKeeper
znode) says. The leader changes it one proposal at a time: an *expand*
(a follower in the assignment, not in the ISR, whose log end reached both
the high watermark and the start of the current leader epoch: then it
holds everything committed, including what earlier leaders committed) or
a *shrink* (ISR followers not caught up; the leader itself never leaves).
While a proposal is in flight no other is made. A pending expand counts
at once toward the high watermark (it only makes the high watermark
harder to advance, so it is safe before it is written); a pending shrink
does not (until written, the old ISR is the one a new leader could be
chosen from, so the high watermark must still wait for all of it). The
ISR counted is the *maximal* ISR: committed plus a pending expand.

A proposal is written by someone else (the ISR writer); the outcome comes
back as ``committed`` (the new ISR and state version), or as nothing at
all when the write was refused because the state changed meanwhile: the
proposal then stays in flight, so nothing else is proposed over a stale
version, until the newer state arrives (``apply_state``), which replaces
it, as Kafka's leader waits for new metadata after INVALID_UPDATE_VERSION.

*The high watermark* is the smallest log end over the leader (its log end,
or its fsynced offset when the durable rule applies) and every member of
the maximal ISR; a follower outside the ISR that is caught up and alive
holds it back too, so that it can catch up to it and join (Kafka 2.7+). It
never moves back, stays within [log start, log end], and does not advance
while the committed ISR is smaller than ``min.insync.replicas`` (bounded
by the replication factor: Kafka 3.7+'s effective minimum).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

UNKNOWN = -1
EXPAND = "expand"
SHRINK = "shrink"


class FollowerState:
    """What the leader knows of one follower since it became leader."""

    __slots__ = ("last_caught_up_ms", "last_fetch_leader_leo", "last_fetch_ms", "leo")

    def __init__(self, last_caught_up_ms: int = 0):
        self.leo = UNKNOWN
        self.last_fetch_ms = 0
        self.last_fetch_leader_leo = UNKNOWN
        self.last_caught_up_ms = last_caught_up_ms

    def fetched(self, fetch_offset: int, now_ms: int, leader_leo: int) -> None:
        """Kafka's Replica.updateFetchStateOrThrow."""
        if fetch_offset >= leader_leo:
            self.last_caught_up_ms = max(self.last_caught_up_ms, now_ms)
        elif fetch_offset >= self.last_fetch_leader_leo:
            self.last_caught_up_ms = max(self.last_caught_up_ms, self.last_fetch_ms)
        self.leo = fetch_offset
        self.last_fetch_leader_leo = max(leader_leo, self.last_fetch_leader_leo)
        self.last_fetch_ms = now_ms

    def caught_up(self, leader_leo: int, now_ms: int, max_lag_ms: int) -> bool:
        return self.leo == leader_leo or now_ms - self.last_caught_up_ms <= max_lag_ms

    def __repr__(self) -> str:
        return (
            f"FollowerState(leo={self.leo}, last_fetch_ms={self.last_fetch_ms}, "
            f"last_fetch_leader_leo={self.last_fetch_leader_leo}, last_caught_up_ms={self.last_caught_up_ms})"
        )


class IsrChange(NamedTuple):
    """One proposal: the ISR to write over state ``version``."""

    kind: str  # EXPAND or SHRINK
    isr: tuple[int, ...]  # the whole proposed ISR, in the order to write
    replicas: tuple[int, ...]  # who joins or leaves
    leader_epoch: int
    version: int  # the state version it is written over (the write expects it)
    old_isr: tuple[int, ...]
    reason: str


def _alive(replica_id: int) -> bool:
    return True


class LeaderState:
    """One leadership (one leader epoch) of a partition with followers."""

    __slots__ = ("epoch_start", "followers", "isr", "isr_order", "leader_epoch", "node_id", "pending", "version")

    def __init__(
        self,
        node_id: int,
        replicas,
        isr,
        leader_epoch: int,
        version: int,
        epoch_start: int,
        now_ms: int,
    ):
        self.node_id = node_id
        self.leader_epoch = leader_epoch
        self.version = version
        self.epoch_start = epoch_start
        self.isr_order: tuple[int, ...] = tuple(isr)
        self.isr: frozenset[int] = frozenset(isr)
        self.pending: IsrChange | None = None
        # A follower in the ISR starts caught up (the controller chose the
        # ISR); one outside it starts as never caught up, so that it does
        # not hold back the high watermark before it has fetched.
        self.followers: dict[int, FollowerState] = {
            r: FollowerState(now_ms if r in self.isr else 0) for r in dict.fromkeys((*replicas, *isr)) if r != node_id
        }

    # -- the ISR -------------------------------------------------------------------

    @property
    def maximal_isr(self) -> frozenset[int]:
        pending = self.pending
        if pending is not None and pending.kind == EXPAND:
            return self.isr | frozenset(pending.replicas)
        return self.isr

    def new_epoch(self, leader_epoch: int, version: int, isr, replicas, epoch_start: int, now_ms: int) -> None:
        """The same leader at a newer leader epoch (Kafka's resetReplicaState
        for a leader re-elected): what the followers fetched is kept, their
        caught-up clocks restart from now for ISR members and from never
        for the others."""
        self.leader_epoch = leader_epoch
        self.epoch_start = epoch_start
        self.apply_state(isr, version)
        old = self.followers
        self.followers = {}
        for r in dict.fromkeys((*replicas, *isr)):
            if r == self.node_id:
                continue
            in_sync = r in self.isr
            f = self.followers[r] = FollowerState(now_ms if in_sync else 0)
            before = old.get(r)
            if before is not None:
                f.leo = before.leo
            f.last_fetch_leader_leo = epoch_start
            f.last_fetch_ms = now_ms if in_sync else 0

    def apply_state(self, isr, version: int) -> None:
        """A newer state of this leadership (an ISR written by this leader,
        seen through the metadata, or by someone else): it is the committed
        ISR and replaces any proposal in flight."""
        self.isr_order = tuple(isr)
        self.isr = frozenset(isr)
        self.version = version
        self.pending = None
        for r in self.isr:
            if r != self.node_id and r not in self.followers:
                self.followers[r] = FollowerState()

    def committed(self, change: IsrChange, version: int) -> bool:
        """``change`` was written as state ``version``: False if it is no
        longer the proposal in flight (a newer state replaced it)."""
        if self.pending is not change:
            return False
        self.isr_order = change.isr
        self.isr = frozenset(change.isr)
        self.version = version
        self.pending = None
        return True

    # -- followers -----------------------------------------------------------------

    def follower_fetched(
        self,
        replica_id: int,
        fetch_offset: int,
        now_ms: int,
        leader_leo: int,
        high_watermark: int,
        alive: bool = True,
    ) -> IsrChange | None:
        """Record a fetch; the expand it makes due, if any (then in flight)."""
        f = self.followers.get(replica_id)
        if f is None:
            return None  # not a replica of this partition
        f.fetched(fetch_offset, now_ms, leader_leo)
        if self.pending is not None or replica_id in self.isr or not alive:
            return None
        if f.leo < high_watermark or f.leo < self.epoch_start:
            return None
        isr = (*self.isr_order, replica_id)
        reason = (
            f"follower {replica_id} caught up to offset {f.leo} "
            f"(high watermark {high_watermark}, leader epoch start {self.epoch_start})"
        )
        self.pending = IsrChange(EXPAND, isr, (replica_id,), self.leader_epoch, self.version, self.isr_order, reason)
        return self.pending

    def out_of_sync(self, now_ms: int, leader_leo: int, max_lag_ms: int) -> list[int]:
        """ISR followers not caught up (none while a proposal is in flight)."""
        if self.pending is not None:
            return []
        out = []
        for r in self.isr_order:
            if r == self.node_id:
                continue
            f = self.followers.get(r)
            if f is None or not f.caught_up(leader_leo, now_ms, max_lag_ms):
                out.append(r)
        return out

    def maybe_shrink(self, now_ms: int, leader_leo: int, max_lag_ms: int) -> IsrChange | None:
        """The shrink due now, if any (then in flight)."""
        out = self.out_of_sync(now_ms, leader_leo, max_lag_ms)
        if not out:
            return None
        isr = tuple(r for r in self.isr_order if r not in out)
        reasons = []
        for r in out:
            f = self.followers.get(r)
            if f is None or f.last_caught_up_ms <= 0:
                reasons.append(f"follower {r} not caught up since this leadership began")
            else:
                reasons.append(f"follower {r} not caught up for {now_ms - f.last_caught_up_ms} ms")
        self.pending = IsrChange(
            SHRINK, isr, tuple(out), self.leader_epoch, self.version, self.isr_order, "; ".join(reasons)
        )
        return self.pending

    # -- the high watermark ----------------------------------------------------------

    def high_watermark(
        self,
        current: int,
        log_start: int,
        leader_leo: int,
        leader_offset: int,
        now_ms: int,
        max_lag_ms: int,
        min_insync: int,
        alive: Callable[[int], bool] = _alive,
    ) -> int:
        """The high watermark after ``current``: never lower, within [log
        start, log end]. ``leader_offset`` is what the leader counts of its
        own log: its log end, or its fsynced offset under the durable rule."""
        if len(self.isr) < min(min_insync, len(self.followers) + 1):
            return current
        hw = min(leader_offset, leader_leo)
        maximal = self.maximal_isr
        for r, f in self.followers.items():
            if f.leo < hw and (r in maximal or (f.caught_up(leader_leo, now_ms, max_lag_ms) and alive(r))):
                hw = f.leo
        if hw <= current:
            return current
        return max(hw, log_start)
