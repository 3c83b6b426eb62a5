"""A random-operation model of one leadership (isr.py): followers fetch
at random paces, the leader appends and fsyncs, time passes, shrinks are
checked, proposals are written, refused or overtaken by a newer state,
brokers die and come back. After every step the rules Kafka's leader
keeps (Partition.scala) must hold:

* the high watermark never moves back and stays within the log (and
  within the leader's fsynced offset under the durable rule);
* it is never above the log end of any member of the maximal ISR;
* a pending shrink never advances it past the members it would remove;
* a pending expand counts at once: it stays at or below the joiner's log end;
* a follower joins only with its log end at or above both the high
  watermark and the start of the leader epoch;
* it does not advance while the committed ISR is below min.insync.replicas;
* one change in flight; the leader never leaves the ISR."""

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from pybroker.replica.isr import EXPAND, SHRINK, LeaderState

LAG = 1000
LEADER = 0
FOLLOWERS = (1, 2, 3)


class Leadership(RuleBasedStateMachine):
    @initialize(
        epoch_start=st.integers(0, 50),
        hw_gap=st.integers(0, 20),
        behind=st.lists(st.integers(0, 20), min_size=3, max_size=3),
        isr=st.sets(st.sampled_from(FOLLOWERS)),
        min_insync=st.integers(1, 4),
        durable=st.booleans(),
    )
    def start(self, epoch_start, hw_gap, behind, isr, min_insync, durable):
        self.now = 1_000_000
        self.leo = self.recovery = epoch_start
        self.hw = self.hw0 = max(epoch_start - hw_gap, 0)
        self.durable = durable
        self.min_insync = min_insync
        self.alive = {r: True for r in FOLLOWERS}
        self.state = LeaderState(LEADER, (LEADER, *FOLLOWERS), (LEADER, *sorted(isr)), 7, 0, epoch_start, self.now)
        # Each follower's log end: a prefix of the leader's, at most the epoch start.
        self.logs = {r: max(epoch_start - b, 0) for r, b in zip(FOLLOWERS, behind)}

    # -- steps ---------------------------------------------------------------------

    def recompute(self) -> None:
        before = self.hw
        committed_small = len(self.state.isr) < min(self.min_insync, len(FOLLOWERS) + 1)
        self.hw = self.state.high_watermark(
            self.hw,
            0,
            self.leo,
            self.recovery if self.durable else self.leo,
            self.now,
            LAG,
            self.min_insync,
            lambda r: self.alive[r],
        )
        assert self.hw >= before, "the high watermark moved back"
        if committed_small:
            assert self.hw == before, "advanced with the committed ISR below min.insync.replicas"
        pending = self.state.pending
        if pending is not None and pending.kind == SHRINK and self.hw > before:
            removed = min(self.state.followers[r].leo for r in pending.replicas)
            assert self.hw <= removed, "a pending shrink advanced the high watermark past a member it removes"

    def propose(self, change) -> None:
        if change is None:
            return
        assert self.state.pending is change
        assert LEADER in change.isr
        if change.kind == EXPAND:
            (joiner,) = change.replicas
            leo = self.state.followers[joiner].leo
            assert leo >= self.hw and leo >= self.state.epoch_start, "joined below the HW or the epoch start"

    @rule(n=st.integers(1, 10))
    def append(self, n):
        self.leo += n
        self.recompute()

    @rule()
    def flush(self):
        self.recovery = self.leo
        self.recompute()

    @rule(ms=st.integers(1, 800))
    def tick(self, ms):
        self.now += ms

    @rule(r=st.sampled_from(FOLLOWERS), step=st.integers(0, 15), data=st.data())
    def fetch(self, r, step, data):
        if not self.alive[r]:
            return
        self.logs[r] = min(self.logs[r] + step, self.leo)
        pending = self.state.pending
        change = self.state.follower_fetched(r, self.logs[r], self.now, self.leo, self.hw, self.alive[r])
        if pending is not None:
            assert change is None, "a second change while one is in flight"
        self.propose(change)
        self.recompute()

    @rule()
    def shrink_check(self):
        pending = self.state.pending
        change = self.state.maybe_shrink(self.now, self.leo, LAG)
        if pending is not None:
            assert change is None, "a second change while one is in flight"
        self.propose(change)

    @precondition(lambda self: self.state.pending is not None)
    @rule()
    def written(self):
        assert self.state.committed(self.state.pending, self.state.version + 1)
        self.recompute()

    @precondition(lambda self: self.state.pending is not None)
    @rule()
    def refused(self):
        pass  # the proposal stays in flight until a newer state comes

    @rule(drop=st.sets(st.sampled_from(FOLLOWERS)))
    def newer_state(self, drop):
        # The controller only ever removes replicas from the ISR.
        isr = tuple(r for r in self.state.isr_order if r not in drop)
        self.state.apply_state(isr, self.state.version + 2)
        self.recompute()

    @rule(r=st.sampled_from(FOLLOWERS))
    def die_or_come_back(self, r):
        self.alive[r] = not self.alive[r]
        self.recompute()

    # -- what must always hold -----------------------------------------------------------

    @invariant()
    def within_the_log(self):
        assert 0 <= self.hw <= self.leo
        if self.durable and self.hw > self.hw0:
            assert self.hw <= self.recovery

    @invariant()
    def not_above_a_member(self):
        if self.hw == self.hw0:
            return  # never advanced: the previous leader's
        for r in self.state.maximal_isr - {LEADER}:
            assert self.hw <= self.state.followers[r].leo, f"above the log end of ISR member {r}"

    @invariant()
    def a_pending_expand_counts(self):
        pending = self.state.pending
        if pending is not None and pending.kind == EXPAND and self.hw > self.hw0:
            (joiner,) = pending.replicas
            assert self.hw <= self.state.followers[joiner].leo

    @invariant()
    def the_leader_stays(self):
        assert LEADER in self.state.isr and LEADER in self.state.maximal_isr


Leadership.TestCase.settings = settings(
    max_examples=300, stateful_step_count=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_isr_model = Leadership.TestCase
