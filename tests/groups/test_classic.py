"""The classic group state machine, driven with explicit time (no sleeping)."""

from pybroker.protocol.error_codes import ErrorCode
from pybroker.groups.classic import COMPLETING, EMPTY, PREPARING, STABLE, ClassicGroup, GroupConfig

SESSION = 10_000
REBALANCE = 30_000
DELAY = 3_000


class Box:
    def __init__(self):
        self.results = []

    def __call__(self, result):
        self.results.append(result)

    @property
    def last(self):
        return self.results[-1] if self.results else None


def make_group(delay=DELAY, persist_error=0):
    writes = []

    def persist(group, assignment, stored):
        # What is written: the assignment being stored, else the members' own.
        written = dict(assignment) if assignment is not None else {m: g.assignment for m, g in group.members.items()}
        writes.append((group.state, group.generation, written))
        stored(ErrorCode(persist_error), group.state_timestamp)  # committed (or failed) at once

    group = ClassicGroup("g", 0, GroupConfig(initial_rebalance_delay_ms=delay), persist)
    return group, writes


def join(group, now, member_id="", protos=(("range", b"m"),), instance=None, version=5, session=SESSION):
    box = Box()
    result = group.join(
        now,
        member_id=member_id,
        instance_id=instance,
        client_id="client",
        client_host="/127.0.0.1",
        session_timeout=session,
        rebalance_timeout=REBALANCE,
        protocol_type="consumer",
        protocols=list(protos),
        require_known_member_id=version >= 4 and instance is None,
        supports_skip_assignment=version >= 9,
        callback=box,
    )
    if result is not None:
        box(result)
    return box


def sync(group, now, member_id, generation, assignments=None, instance=None):
    box = Box()
    result = group.sync(
        now, member_id=member_id, instance_id=instance, generation=generation, protocol_type="consumer",
        protocol_name="range", assignments=assignments or {}, callback=box,
    )
    if result is not None:
        box(result)
    return box


def new_member(group, now, **kw):
    first = join(group, now, **kw)
    assert first.last.error == ErrorCode.MEMBER_ID_REQUIRED
    return first.last.member_id, join(group, now, member_id=first.last.member_id, **kw)


def test_two_members_rebalance_to_stable():
    group, writes = make_group()
    a, ja = new_member(group, 0)
    assert group.state == PREPARING and ja.last is None
    b, jb = new_member(group, 100)
    assert ja.last is None  # the initial delay holds the join phase open
    group.tick(DELAY)
    # b joined during the delay, so it is extended by another step.
    assert group.state == PREPARING
    group.tick(2 * DELAY)
    assert group.state == COMPLETING and group.generation == 1
    assert ja.last.leader == a and len(ja.last.members) == 2 and jb.last.members == []
    sb = sync(group, 2 * DELAY + 1, b, 1)
    assert sb.last is None  # followers wait for the leader's assignment
    sa = sync(group, 2 * DELAY + 2, a, 1, {a: b"A", b: b"B"})
    assert group.state == STABLE
    assert (sa.last.assignment, sb.last.assignment) == (b"A", b"B")
    assert writes[-1][1:] == (1, {a: b"A", b: b"B"})  # written before it turns Stable


def stable_pair(delay=0):
    group, writes = make_group(delay=delay)
    a, ja = new_member(group, 0)
    group.tick(delay)
    b, jb = new_member(group, 1)
    # b's arrival rebalances the group (a must rejoin).
    assert group.state == PREPARING
    assert group.heartbeat(2, a, None, 1) == ErrorCode.REBALANCE_IN_PROGRESS
    ja = join(group, 3, member_id=a)
    assert group.state == COMPLETING and group.generation == 2
    sync(group, 4, a, 2, {a: b"A", b: b"B"})
    sync(group, 5, b, 2)
    assert group.state == STABLE
    return group, a, b


def test_heartbeat_errors_by_state():
    group, a, b = stable_pair()
    assert group.heartbeat(10, a, None, 2) == ErrorCode.NONE
    assert group.heartbeat(10, a, None, 1) == ErrorCode.ILLEGAL_GENERATION
    assert group.heartbeat(10, "nobody", None, 2) == ErrorCode.UNKNOWN_MEMBER_ID


def test_follower_rejoining_with_same_metadata_does_not_rebalance():
    group, a, b = stable_pair()
    again = join(group, 10, member_id=b)
    assert again.last.error == ErrorCode.NONE and group.state == STABLE and again.last.generation == 2


def test_leave_triggers_a_rebalance_and_the_rest_carry_on():
    group, a, b = stable_pair()
    assert group.leave(10, b, None) == ErrorCode.NONE
    assert group.state == PREPARING
    ja = join(group, 11, member_id=a)
    assert group.state == COMPLETING and ja.last.members == [(a, None, b"m")]


def test_session_expiry_removes_a_silent_member():
    group, a, b = stable_pair()
    assert group.heartbeat(SESSION, a, None, 2) == ErrorCode.NONE
    group.tick(SESSION + 10)  # b was last heard at 5
    assert b not in group.members and group.state == PREPARING


def test_rebalance_timeout_drops_members_that_do_not_rejoin():
    group, a, b = stable_pair()
    ja = join(group, 10, member_id=a, protos=(("range", b"changed"),))
    assert group.state == PREPARING and ja.last is None
    assert group.heartbeat(5000, b, None, 2) == ErrorCode.REBALANCE_IN_PROGRESS
    group.tick(10 + REBALANCE)
    assert group.state == COMPLETING and list(group.members) == [a]
    assert ja.last.generation == 3


def test_last_member_leaving_empties_the_group():
    group, a, b = stable_pair()
    group.leave(10, a, None)
    join(group, 11, member_id=b)
    group.leave(12, b, None)
    assert group.state == EMPTY and group.generation == 4
    assert group.validate_offset_commit(13, "", None, -1) == ErrorCode.NONE


def test_sync_checks():
    group, a, b = stable_pair()
    assert sync(group, 10, a, 1).last.error == ErrorCode.ILLEGAL_GENERATION
    assert sync(group, 10, "x", 2).last.error == ErrorCode.UNKNOWN_MEMBER_ID
    assert sync(group, 10, b, 2).last.assignment == b"B"


def test_inconsistent_protocols_are_refused():
    group, a, b = stable_pair()
    box = join(group, 10, protos=(("roundrobin", b""),), version=3)
    assert box.last.error == ErrorCode.INCONSISTENT_GROUP_PROTOCOL


def test_static_member_restart_keeps_its_assignment_without_rebalance():
    group, writes = make_group(delay=0)
    first = join(group, 0, instance="i-1")
    group.tick(0)
    old = first.last.member_id
    assert group.state == COMPLETING
    sync(group, 1, old, 1, {old: b"mine"}, instance="i-1")
    assert group.state == STABLE
    again = join(group, 2, instance="i-1", version=9)
    assert again.last.error == ErrorCode.NONE and again.last.member_id != old
    assert group.state == STABLE and group.generation == 1 and again.last.skip_assignment
    # The old incarnation is fenced.
    assert group.heartbeat(3, old, "i-1", 1) == ErrorCode.FENCED_INSTANCE_ID
    assert sync(group, 3, again.last.member_id, 1, instance="i-1").last.assignment == b"mine"


def test_offset_commit_rules():
    group, a, b = stable_pair()
    assert group.validate_offset_commit(10, a, None, 2) == ErrorCode.NONE
    assert group.validate_offset_commit(10, a, None, 1) == ErrorCode.ILLEGAL_GENERATION
    assert group.validate_offset_commit(10, "", None, -1) == ErrorCode.UNKNOWN_MEMBER_ID
    join(group, 11, member_id=a, protos=(("range", b"x"),))
    join(group, 12, member_id=b)
    assert group.state == COMPLETING
    assert group.validate_offset_commit(13, a, None, 3) == ErrorCode.REBALANCE_IN_PROGRESS


def test_pending_member_that_never_rejoins_expires():
    group, _ = make_group(delay=0)
    first = join(group, 0)
    assert first.last.error == ErrorCode.MEMBER_ID_REQUIRED
    assert group.pending
    group.tick(SESSION + 1)
    assert not group.pending
