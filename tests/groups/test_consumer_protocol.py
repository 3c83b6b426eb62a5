"""KIP-848 consumer groups: the pure state machine driven with explicit time,
the assignors, the coordinator's routing between classic and consumer
groups, and real librdkafka consumers (group.protocol=consumer) end to end."""

from __future__ import annotations

import random
import uuid

import pytest

from pybroker.protocol.error_codes import ErrorCode
from pybroker.groups.assignors import MemberSpec, range_assignor, uniform
from pybroker.groups.classic import EMPTY, STABLE
from pybroker.groups.consumer import (
    ASSIGNING,
    MEMBER_STABLE,
    RECONCILING,
    UNRELEASED_PARTITIONS,
    UNREVOKED_PARTITIONS,
    ConsumerGroup,
    ConsumerGroupConfig,
    validate_heartbeat,
)

T = uuid.UUID(int=0x1111)
U = uuid.UUID(int=0x2222)
SESSION = 45_000
REBALANCE = 30_000
INTERVAL = 5_000


def topics(**counts):
    ids = {"t": T, "u": U}
    return {name: (ids.get(name) or uuid.uuid5(uuid.NAMESPACE_DNS, name), n) for name, n in counts.items()}


SIX = topics(t=6)


def check_invariants(group: ConsumerGroup) -> None:
    """No partition has two holders, and ``owners`` says exactly who holds what."""
    seen = {}
    for m in group.members.values():
        for tid, parts in (*m.assigned.items(), *m.pending_revocation.items()):
            for p in parts:
                assert (tid, p) not in seen, f"{tid}-{p} held by {seen[(tid, p)]} and {m.member_id}"
                seen[(tid, p)] = m.member_id
    assert seen == group.owners


class Client:
    """A member as a client runs it: ``owned`` is what it consumes. It takes
    new partitions as soon as it is given them and gives up the others at
    once, or, when ``lazy``, only at a later heartbeat (while it keeps
    reporting them)."""

    def __init__(self, group: ConsumerGroup, member_id: str, names=("t",), instance_id=None, assignor=None, regex=None):
        self.group = group
        self.member_id = member_id
        self.names = list(names)
        self.instance_id = instance_id
        self.assignor = assignor
        self.regex = regex
        self.epoch = 0
        self.owned: dict[uuid.UUID, set[int]] = {}
        self.target: dict[uuid.UUID, set[int]] = {}
        self.last = None

    def join(self, now, cluster=SIX):
        r = self.group.consumer_group_heartbeat(
            now,
            member_id=self.member_id,
            member_epoch=0,
            topics=cluster,
            instance_id=self.instance_id,
            rebalance_timeout_ms=REBALANCE,
            subscribed_topic_names=self.names,
            subscribed_topic_regex=self.regex,
            server_assignor=self.assignor,
            owned_partitions={},
        )
        return self._take(r)

    def beat(self, now, cluster=SIX, owned=None, epoch=None, lazy=False):
        if owned is None and not lazy:
            self.owned = {tid: set(ps) for tid, ps in self.target.items()}
        r = self.group.consumer_group_heartbeat(
            now,
            member_id=self.member_id,
            member_epoch=self.epoch if epoch is None else epoch,
            topics=cluster,
            instance_id=self.instance_id,
            owned_partitions=self.owned if owned is None else owned,
        )
        return self._take(r, lazy)

    def _take(self, r, lazy=False):
        self.last = r
        check_invariants(self.group)
        if r.error == ErrorCode.NONE:
            self.epoch = r.member_epoch
            if r.assignment is not None:
                self.target = {tid: set(ps) for tid, ps in r.assignment.items()}
                if lazy:
                    for tid, ps in self.target.items():
                        self.owned.setdefault(tid, set()).update(ps)
                else:
                    self.owned = {tid: set(ps) for tid, ps in self.target.items()}
        return r

    def partitions(self) -> set[tuple[uuid.UUID, int]]:
        return {(tid, p) for tid, ps in self.owned.items() for p in ps}


def new_group(**config) -> ConsumerGroup:
    return ConsumerGroup("g", ConsumerGroupConfig(**config))


# -- joining, epochs, reconciliation ----------------------------------------------------


def test_first_member_gets_every_partition():
    g = new_group()
    a = Client(g, "A")
    r = a.join(0)
    assert r.error == ErrorCode.NONE
    assert (r.member_id, r.member_epoch, r.heartbeat_interval_ms) == ("A", 1, INTERVAL)
    assert r.assignment == {T: [0, 1, 2, 3, 4, 5]}
    assert (g.group_epoch, g.assignment_epoch, g.state) == (1, 1, STABLE)
    # Nothing changed: no assignment in the answer, the epoch stays.
    r = a.beat(1000)
    assert (r.member_epoch, r.assignment) == (1, None)


def test_partition_moves_only_after_the_previous_owner_revoked_it():
    g = new_group()
    a, b = Client(g, "A"), Client(g, "B")
    a.join(0)
    r = b.join(100)
    # B is at the new epoch but gets nothing yet: A still holds everything.
    assert (r.member_epoch, r.assignment) == (2, {})
    assert g.members["B"].state == UNRELEASED_PARTITIONS
    assert g.state == RECONCILING
    # A is asked to give up three partitions and stays at its epoch.
    r = a.beat(200, owned={T: set(range(6))})
    assert r.member_epoch == 1 and len(r.assignment[T]) == 3
    assert g.members["A"].state == UNREVOKED_PARTITIONS
    kept = set(r.assignment[T])
    given_up = set(range(6)) - kept
    # While A has not confirmed, B still waits.
    r = b.beat(300)
    assert r.assignment is None and b.owned == {}
    a.beat(400, owned={T: set(range(6))})  # still reports them: still waiting
    assert g.members["A"].state == UNREVOKED_PARTITIONS
    # A confirms the revocation: it moves to the group's epoch...
    r = a.beat(500, owned={T: kept})
    assert r.member_epoch == 2 and g.members["A"].state == MEMBER_STABLE
    # ...and only now B gets the released partitions.
    r = b.beat(600)
    assert r.member_epoch == 2 and set(r.assignment[T]) == given_up
    assert g.state == STABLE
    assert a.partitions().isdisjoint(b.partitions())
    assert len(a.partitions()) == len(b.partitions()) == 3


def test_revocation_timeout_fences_the_member():
    g = new_group()
    a, b = Client(g, "A"), Client(g, "B")
    a.join(0)
    b.join(100)
    a.beat(200, owned={T: set(range(6))})
    assert g.members["A"].state == UNREVOKED_PARTITIONS
    assert g.next_deadline() == 200 + REBALANCE
    g.tick(200 + REBALANCE - 1)
    assert "A" in g.members
    b.beat(10_000)  # keep B's session alive
    g.tick(200 + REBALANCE)
    assert "A" not in g.members and g.group_epoch == 3
    assert g.state == ASSIGNING
    r = b.beat(30_300)
    assert r.member_epoch == 3 and r.assignment == {T: [0, 1, 2, 3, 4, 5]}
    r = a.beat(30_400)
    assert r.error == ErrorCode.UNKNOWN_MEMBER_ID


def test_session_expiry_fences_and_the_survivor_takes_over():
    g = new_group()
    a, b = Client(g, "A"), Client(g, "B")
    settle(g, [a, b], 0)
    assert len(a.partitions()) == len(b.partitions()) == 3
    last = max(g.members["A"].session_deadline, g.members["B"].session_deadline) - SESSION
    a.beat(last + 20_000)
    g.tick(last + SESSION)  # B's session is over, A's is not
    assert set(g.members) == {"A"}
    r = a.beat(last + SESSION + 1)
    assert set(r.assignment[T]) == set(range(6)) and g.state == STABLE


def test_leave_bumps_the_epoch_and_frees_the_partitions():
    g = new_group()
    a, b = Client(g, "A"), Client(g, "B")
    settle(g, [a, b], 0)
    epoch = g.group_epoch
    r = g.consumer_group_heartbeat(50_000, member_id="B", member_epoch=-1, topics=SIX)
    assert (r.error, r.member_id, r.member_epoch, r.assignment) == (ErrorCode.NONE, "B", -1, None)
    assert g.group_epoch == epoch + 1 and set(g.members) == {"A"}
    r = a.beat(50_001)
    assert set(r.assignment[T]) == set(range(6))
    r = g.consumer_group_heartbeat(50_002, member_id="B", member_epoch=-1, topics=SIX)
    assert r.error == ErrorCode.UNKNOWN_MEMBER_ID
    g.consumer_group_heartbeat(50_003, member_id="A", member_epoch=-1, topics=SIX)
    assert g.state == EMPTY and g.is_empty()


def test_epoch_fencing_and_lost_responses():
    g = new_group()
    a, b = Client(g, "A"), Client(g, "B")
    settle(g, [a, b], 0)
    epoch = g.members["A"].epoch
    assert a.beat(1, epoch=epoch + 1).error == ErrorCode.FENCED_MEMBER_EPOCH
    assert a.beat(2, epoch=epoch - 2).error == ErrorCode.FENCED_MEMBER_EPOCH
    # The previous epoch is accepted when the owned partitions are a subset
    # of the current assignment (the response with the new epoch was lost)...
    prev = g.members["A"].previous_epoch
    r = a.beat(3, epoch=prev, owned={T: set(next(iter(a.partitions()))[1:2])})
    assert r.error == ErrorCode.NONE and r.member_epoch == epoch
    # ...but not without owned partitions, or with partitions it should not have.
    assert (
        g.consumer_group_heartbeat(4, member_id="A", member_epoch=prev, topics=SIX).error
        == ErrorCode.FENCED_MEMBER_EPOCH
    )
    other = next(iter(b.partitions()))[1]
    assert a.beat(5, epoch=prev, owned={T: {other}}).error == ErrorCode.FENCED_MEMBER_EPOCH
    # A stranger.
    r = g.consumer_group_heartbeat(6, member_id="Z", member_epoch=3, topics=SIX)
    assert r.error == ErrorCode.UNKNOWN_MEMBER_ID and r.member_id is None


def test_coordinator_made_member_id_for_v0_joins():
    g = new_group()
    r = g.consumer_group_heartbeat(
        0,
        member_id="",
        member_epoch=0,
        topics=SIX,
        rebalance_timeout_ms=REBALANCE,
        subscribed_topic_names=["t"],
        owned_partitions={},
    )
    assert r.error == ErrorCode.NONE and len(r.member_id) == 22 and r.member_id in g.members


def test_group_max_size():
    g = new_group(max_size=1)
    Client(g, "A").join(0)
    r = Client(g, "B").join(1)
    assert r.error == ErrorCode.GROUP_MAX_SIZE_REACHED and "B" not in g.members
    assert Client(g, "A").beat(2, epoch=1).error == ErrorCode.NONE


# -- subscriptions and topic metadata ------------------------------------------------------


def test_topic_created_later_and_partitions_added():
    g = new_group()
    a = Client(g, "A", names=["t", "u"])
    r = a.join(0, cluster={})
    assert r.assignment == {} and g.group_epoch == 1
    r = a.beat(1, cluster=SIX)  # "t" appeared
    assert g.group_epoch == 2 and r.assignment == {T: [0, 1, 2, 3, 4, 5]}
    bigger = topics(t=8, u=2)
    r = a.beat(2, cluster=bigger)
    assert g.group_epoch == 3 and r.assignment == {T: list(range(8)), U: [0, 1]}
    r = a.beat(3, cluster=bigger)
    assert g.group_epoch == 3 and r.assignment is None


def test_subscription_change_bumps_and_revokes():
    g = new_group()
    cluster = topics(t=2, u=2)
    a = Client(g, "A", names=["t"])
    a.join(0, cluster)
    r = g.consumer_group_heartbeat(
        1,
        member_id="A",
        member_epoch=a.epoch,
        topics=cluster,
        subscribed_topic_names=["u"],
        owned_partitions={T: {0, 1}},
    )
    assert g.group_epoch == 2 and r.assignment == {} and g.members["A"].state == UNREVOKED_PARTITIONS
    r = a.beat(2, cluster, owned={})
    assert r.assignment == {U: [0, 1]} and r.member_epoch == 2


def test_regex_subscription():
    g = new_group()
    cluster = topics(orders=2, **{"orders-v2": 1, "reorders": 1})
    a = Client(g, "A", names=[], regex="orders.*")
    r = a.join(0, cluster)
    got = {tid for tid in r.assignment}
    assert got == {cluster["orders"][0], cluster["orders-v2"][0]}  # whole names only
    assert g.subscribed_topic_names() == {"orders", "orders-v2"}
    b = Client(g, "B", names=[], regex="(")
    assert b.join(1, cluster).error == ErrorCode.INVALID_REGULAR_EXPRESSION and "B" not in g.members


def test_request_validation():
    def check(version=1, **overrides):
        fields = {
            "group_id": "g",
            "member_id": "m",
            "member_epoch": 0,
            "instance_id": None,
            "rack_id": None,
            "rebalance_timeout_ms": REBALANCE,
            "subscribed_topic_names": ["t"],
            "subscribed_topic_regex": None,
            "server_assignor": None,
            "owned_partitions": [],
            "assignors": ("uniform", "range"),
        }
        fields.update(overrides)
        return validate_heartbeat(version, **fields)

    bad = ErrorCode.INVALID_REQUEST
    assert check() is None
    assert check(member_id="")[0] == bad  # v1: the client chooses its id
    assert check(version=0, member_id="") is None
    assert check(version=0, member_id="", member_epoch=3)[0] == bad
    assert check(group_id=" ") == (bad, "GroupId can't be empty.")
    assert check(instance_id="")[0] == bad
    assert check(rack_id="")[0] == bad
    assert check(rebalance_timeout_ms=-1) == (bad, "RebalanceTimeoutMs must be provided in first request.")
    assert check(owned_partitions=None)[0] == bad
    assert check(owned_partitions=[object()])[0] == bad
    assert check(subscribed_topic_names=[])[0] == bad
    assert check(subscribed_topic_names=None, subscribed_topic_regex="t.*") is None
    assert check(member_epoch=-2) == (bad, "InstanceId can't be null.")
    assert check(member_epoch=-3) == (bad, "MemberEpoch is invalid.")
    assert check(member_epoch=5, rebalance_timeout_ms=-1, owned_partitions=None, subscribed_topic_names=None) is None
    code, message = check(server_assignor="sticky")
    assert code == ErrorCode.UNSUPPORTED_ASSIGNOR and "uniform, range" in message


# -- static membership --------------------------------------------------------------------


def test_static_member_leaves_for_a_while_and_gets_its_partitions_back():
    g = new_group()
    a = Client(g, "A1", instance_id="a")
    b = Client(g, "B", instance_id=None)
    settle(g, [a, b], 0)
    mine = a.partitions()
    epoch = g.group_epoch
    r = g.consumer_group_heartbeat(10, member_id="A1", member_epoch=-2, instance_id="a", topics=SIX)
    assert (r.member_id, r.member_epoch) == ("A1", -2)
    assert g.group_epoch == epoch  # no rebalance
    r = b.beat(20)
    assert b.partitions().isdisjoint(mine)  # nobody takes them meanwhile
    # A different process holding the same instance id comes back.
    a2 = Client(g, "A2", instance_id="a")
    r = a2.join(30)
    assert r.error == ErrorCode.NONE and a2.partitions() == mine
    assert g.group_epoch == epoch and set(g.members) == {"A2", "B"}
    assert g.statics == {"a": "A2"}


def test_static_member_errors():
    g = new_group()
    a = Client(g, "A1", instance_id="a")
    a.join(0)
    # The instance id is in use by a member that did not leave.
    r = Client(g, "A2", instance_id="a").join(1)
    assert r.error == ErrorCode.UNRELEASED_INSTANCE_ID
    r = g.consumer_group_heartbeat(2, member_id="A2", member_epoch=1, instance_id="a", topics=SIX)
    assert r.error == ErrorCode.FENCED_INSTANCE_ID
    r = g.consumer_group_heartbeat(3, member_id="A1", member_epoch=1, instance_id="zz", topics=SIX)
    assert r.error == ErrorCode.UNKNOWN_MEMBER_ID
    r = g.consumer_group_heartbeat(4, member_id="A2", member_epoch=-1, instance_id="a", topics=SIX)
    assert r.error == ErrorCode.FENCED_INSTANCE_ID
    r = g.consumer_group_heartbeat(5, member_id="A1", member_epoch=-1, instance_id="a", topics=SIX)
    assert (r.error, r.member_epoch) == (ErrorCode.NONE, -1) and g.is_empty() and not g.statics


def test_static_member_that_never_comes_back_times_out():
    g = new_group()
    a = Client(g, "A1", instance_id="a")
    b = Client(g, "B")
    settle(g, [a, b], 0)
    g.consumer_group_heartbeat(100, member_id="A1", member_epoch=-2, instance_id="a", topics=SIX)
    deadline = g.members["A1"].session_deadline
    b.beat(deadline - 1)
    g.tick(deadline)
    assert set(g.members) == {"B"}
    r = b.beat(deadline + 1)
    assert set(r.assignment[T]) == set(range(6))


# -- assignors ------------------------------------------------------------------------------


def test_group_uses_the_assignor_most_members_ask_for():
    g = new_group()
    a = Client(g, "A", assignor="range")
    b = Client(g, "B", assignor="range")
    c = Client(g, "C")
    settle(g, [a, b, c], 0)
    assert g.preferred_assignor() == "range"
    ranges = sorted(sorted(p for _, p in cl.partitions()) for cl in (a, b, c))
    assert ranges == [[0, 1], [2, 3], [4, 5]]
    assert new_group().preferred_assignor() == "uniform"


def spec(mid, topics_=(T,), previous=None, instance=None):
    return MemberSpec(mid, instance, frozenset(topics_), previous or {})


def sizes(result):
    return {m: sum(len(ps) for ps in a.values()) for m, a in result.items()}


def all_partitions(result):
    out = [(tid, p) for a in result.values() for tid, ps in a.items() for p in ps]
    assert len(out) == len(set(out)), "a partition assigned twice"
    return set(out)


@pytest.mark.parametrize("seed", range(40))
def test_uniform_homogeneous_is_balanced_and_sticky(seed):
    rng = random.Random(seed)
    counts = {uuid.UUID(int=i + 1): rng.randrange(1, 9) for i in range(rng.randrange(1, 4))}
    members = [spec(f"m{i}", counts) for i in range(rng.randrange(1, 7))]
    first = uniform(members, counts)
    assert all_partitions(first) == {(t, p) for t, n in counts.items() for p in range(n)}
    s = sizes(first)
    assert max(s.values()) - min(s.values()) <= 1
    # One more member: balance again, and only what it needs moves.
    members = [spec(m.member_id, counts, first[m.member_id]) for m in members] + [spec("new", counts)]
    second = uniform(members, counts)
    s2 = sizes(second)
    assert max(s2.values()) - min(s2.values()) <= 1
    moved = sum(len(ps - second[mid].get(tid, frozenset())) for mid, a in first.items() for tid, ps in a.items())
    assert moved == s2["new"]


@pytest.mark.parametrize("seed", range(40))
def test_uniform_heterogeneous_has_no_improving_move(seed):
    rng = random.Random(1000 + seed)
    ids = [uuid.UUID(int=i + 1) for i in range(4)]
    counts = {t: rng.randrange(1, 7) for t in ids}
    members = [spec(f"m{i}", rng.sample(ids, rng.randrange(1, 5))) for i in range(rng.randrange(2, 6))]
    result = uniform(members, counts)
    wanted = {(t, p) for t, n in counts.items() for p in range(n) if any(t in m.topics for m in members)}
    assert all_partitions(result) == wanted
    s = sizes(result)
    for m in members:
        for tid in result[m.member_id]:
            assert tid in m.topics
            for other in members:
                if tid in other.topics:
                    assert s[m.member_id] - s[other.member_id] <= 1


def test_range_assignor_ranges_and_copartitioning():
    counts = {T: 7, U: 7}
    members = [spec("b", (T, U)), spec("a", (T, U)), spec("z", (T, U), instance="i0")]
    result = range_assignor(members, counts)
    # Static members first, then by member id; the first get the extras.
    assert result["z"] == {T: frozenset({0, 1, 2}), U: frozenset({0, 1, 2})}
    assert result["a"] == {T: frozenset({3, 4}), U: frozenset({3, 4})}
    assert result["b"] == {T: frozenset({5, 6}), U: frozenset({5, 6})}
    hetero = range_assignor([spec("a", (T,)), spec("b", (T, U))], {T: 4, U: 3})
    assert hetero == {"a": {T: frozenset({0, 1})}, "b": {T: frozenset({2, 3}), U: frozenset({0, 1, 2})}}


# -- offsets -------------------------------------------------------------------------------


def test_offset_commit_and_fetch_rules():
    g = new_group()
    # An empty consumer group takes commits from outside the group.
    assert g.validate_offset_commit(0, "", None, -1, 9) == ErrorCode.NONE
    a = Client(g, "A")
    a.join(0)
    assert g.validate_offset_commit(1, "A", None, a.epoch, 9) == ErrorCode.NONE
    assert g.validate_offset_commit(1, "A", None, a.epoch - 1, 9) == ErrorCode.STALE_MEMBER_EPOCH
    assert g.validate_offset_commit(1, "A", None, a.epoch, 8) == ErrorCode.UNSUPPORTED_VERSION
    assert g.validate_offset_commit(1, "X", None, a.epoch, 9) == ErrorCode.UNKNOWN_MEMBER_ID
    assert g.validate_offset_commit(1, "", None, -1, 9) == ErrorCode.UNKNOWN_MEMBER_ID
    assert g.validate_offset_fetch(None, -1) == ErrorCode.NONE
    assert g.validate_offset_fetch("A", a.epoch) == ErrorCode.NONE
    assert g.validate_offset_fetch("A", a.epoch + 1) == ErrorCode.STALE_MEMBER_EPOCH
    assert g.validate_offset_fetch("X", 1) == ErrorCode.UNKNOWN_MEMBER_ID


def test_classic_requests_to_a_consumer_group():
    """Classic members may join a consumer group (test_migration.py has the
    rest); a classic request naming a consumer-protocol member, or a
    protocol type other than "consumer", is refused."""
    g = new_group()
    a = Client(g, "A")
    a.join(0)
    join = {
        "instance_id": None, "client_id": "c", "client_host": "/h", "session_timeout": 10_000,
        "rebalance_timeout": 30_000, "require_known_member_id": False, "topics": SIX,
    }
    subscription = b"\x00\x00" + b"\x00\x00\x00\x01\x00\x01t" + b"\x00\x00\x00\x00"
    r = g.join(1, member_id="", protocol_type="connect", protocols=[("range", subscription)], **join)
    assert r.error == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    r = g.join(1, member_id="", protocol_type="consumer", protocols=[("range", subscription)], **join)
    assert r.error == ErrorCode.NONE and g.members[r.member_id].classic is not None
    sync = {"instance_id": None, "protocol_type": "consumer", "protocol_name": "range"}
    assert g.sync(1, member_id="A", generation=a.epoch, **sync).error == ErrorCode.UNKNOWN_MEMBER_ID
    assert g.heartbeat(1, "A", None, a.epoch) == ErrorCode.UNKNOWN_MEMBER_ID
    assert g.leave(1, "A", None) == ErrorCode.UNKNOWN_MEMBER_ID


# -- a random walk of members -------------------------------------------------------------


def settle(group, clients, now, cluster=SIX, rounds=20):
    for c in clients:
        if c.member_id not in group.members:
            c.join(now)
    for _ in range(rounds):
        for c in clients:
            c.beat(now)
        if group.state == STABLE:
            return
    raise AssertionError(f"group did not settle: {group.state}")


def test_random_members_never_share_a_partition():
    """Members join, leave, crash and heartbeat in random order, some lazily
    (late to give partitions up). At every step the partitions the clients
    consume are disjoint; once everyone heartbeats, the group is Stable with
    every subscribed partition owned."""
    waits = sum(random_walk(seed) for seed in range(25))
    assert waits > 25  # the walks did make members wait for revocations


def random_walk(seed: int) -> int:
    rng = random.Random(seed)
    g = new_group()
    cluster = topics(t=rng.randrange(1, 10), u=rng.randrange(1, 5))
    clients: dict[str, Client] = {}
    now = 0
    serial = 0
    unrevoked = 0
    for _ in range(300):
        now += rng.randrange(1, 3000)
        roll = rng.random()
        if roll < 0.12 or not clients:
            serial += 1
            c = Client(g, f"m{serial}", names=rng.choice([["t"], ["u"], ["t", "u"]]))
            c.join(now, cluster)
            if c.last.error == ErrorCode.NONE:
                clients[c.member_id] = c
        elif roll < 0.17:
            c = clients.pop(rng.choice(sorted(clients)))
            g.consumer_group_heartbeat(now, member_id=c.member_id, member_epoch=-1, topics=cluster)
        else:
            c = clients[rng.choice(sorted(clients))]
            r = c.beat(now, cluster, lazy=rng.random() < 0.3)
            if r.error != ErrorCode.NONE:
                clients.pop(c.member_id)
        g.tick(now)
        unrevoked += sum(m.state == UNREVOKED_PARTITIONS for m in g.members.values())
        for mid in list(clients):
            if mid not in g.members:
                clients.pop(mid)  # fenced: a real client drops its partitions
        owned = [tp for c in clients.values() for tp in c.partitions()]
        assert len(owned) == len(set(owned)), f"seed {seed}: two clients own the same partition"
    for _ in range(10):
        for c in clients.values():
            c.beat(now, cluster)
    if clients:
        assert g.state == STABLE
        owned = [tp for c in clients.values() for tp in c.partitions()]
        subscribed = {tid for c in clients.values() for name in c.names for tid in [cluster[name][0]]}
        assert set(owned) == {(tid, p) for name, (tid, n) in cluster.items() if tid in subscribed for p in range(n)}
    return unrevoked


# -- the coordinator: one namespace for classic and consumer groups ---------------------------


@pytest.fixture
def coordinator(tmp_path):
    from pybroker.broker import Broker
    from pybroker.config import BrokerConfig
    from pybroker.groups.coordinator import GroupCoordinator

    broker = Broker(BrokerConfig({"log.dirs": str(tmp_path), "listeners": "PLAINTEXT://127.0.0.1:0"}))
    broker.topics.create_topic("t", 6)
    try:
        coordinator = GroupCoordinator(**broker.group_services())
        coordinator.broker = broker  # for the tests' own look-ups
        yield coordinator
    finally:
        broker.logs.close()


def cghb(coordinator, group_id, member_id, epoch, now=0, **extra):
    request = {"member_id": member_id, "member_epoch": epoch, "client_id": "c", "client_host": "/127.0.0.1"}
    if epoch == 0:
        request.update(rebalance_timeout_ms=REBALANCE, subscribed_topic_names=["t"], owned_partitions={})
    request.update(extra)
    return coordinator.consumer_group_heartbeat(now, group_id, **request)


def classic_join(group, member_id="", protocol_type="consumer"):
    results = []
    r = group.join(
        0,
        member_id=member_id,
        instance_id=None,
        client_id="c",
        client_host="/h",
        session_timeout=10_000,
        rebalance_timeout=30_000,
        protocol_type=protocol_type,
        protocols=[("range", b"")],
        require_known_member_id=False,
        supports_skip_assignment=False,
        callback=results.append,
    )
    return r if r is not None else (results[0] if results else None)


def test_coordinator_creates_consumer_groups_and_reads_topic_ids(coordinator):
    r = cghb(coordinator, "g", "A", 0)
    assert r.error == ErrorCode.NONE
    group = coordinator.get("g")
    assert isinstance(group, ConsumerGroup) and group.group_type == "consumer"
    topic_id = coordinator.broker.metadata.topic("t").topic_id
    assert r.assignment == {topic_id: [0, 1, 2, 3, 4, 5]}
    # A failed join does not leave a group behind.
    r = coordinator.consumer_group_heartbeat(
        0, "h", member_id="B", member_epoch=0, subscribed_topic_regex="(", rebalance_timeout_ms=1, owned_partitions={}
    )
    assert r.error == ErrorCode.INVALID_REGULAR_EXPRESSION and coordinator.get("h") is None


def test_coordinator_group_type_conflicts(coordinator):
    """Empty groups of either kind give way to the other kind; groups with
    members are converted (test_migration.py), or refused as Kafka does."""
    cghb(coordinator, "g", "A", 0)
    assert isinstance(coordinator.get_or_create("g"), ConsumerGroup)
    # Once it is empty, a classic join takes the id over.
    assert cghb(coordinator, "g", "A", -1).error == ErrorCode.NONE
    classic = coordinator.get_or_create("g")
    assert not isinstance(classic, ConsumerGroup) and classic.state == EMPTY
    classic_join(classic)
    assert classic.state != EMPTY
    # A classic group of another protocol type cannot become a consumer group.
    other = coordinator.get_or_create("connect")
    classic_join(other, protocol_type="connect")
    r = cghb(coordinator, "connect", "B", 0)
    assert (r.error, r.message) == (
        ErrorCode.GROUP_ID_NOT_FOUND,
        (
            "Cannot upgrade classic group connect to consumer group because the group does not use the consumer "
            "embedded protocol."
        ),
    )
    assert cghb(coordinator, "connect", "B", -1).error == ErrorCode.GROUP_ID_NOT_FOUND
    # A member that thinks it belongs (epoch > 0) is sent to join again.
    assert cghb(coordinator, "connect", "B", 3).error == ErrorCode.UNKNOWN_MEMBER_ID
    # An empty classic group (e.g. only committed offsets) gives way to a consumer join.
    coordinator.get_or_create("simple")
    assert cghb(coordinator, "simple", "X", 3).error == ErrorCode.UNKNOWN_MEMBER_ID
    assert cghb(coordinator, "simple", "X", 0).error == ErrorCode.NONE
    assert isinstance(coordinator.get("simple"), ConsumerGroup)


def test_coordinator_missing_groups(coordinator):
    # A member of a group we do not have (e.g. lost in a restart) must rejoin.
    assert cghb(coordinator, "gone", "A", 4).error == ErrorCode.UNKNOWN_MEMBER_ID
    assert cghb(coordinator, "gone", "A", -1).error == ErrorCode.GROUP_ID_NOT_FOUND
    assert coordinator.get("gone") is None


def test_coordinator_offset_commit_dispatch(coordinator):
    r = cghb(coordinator, "g", "A", 0)
    epoch = r.member_epoch
    assert coordinator.validate_offset_commit("g", epoch, "A", None, api_version=9) == ErrorCode.NONE
    assert coordinator.validate_offset_commit("g", epoch + 1, "A", None, api_version=9) == ErrorCode.STALE_MEMBER_EPOCH
    assert coordinator.validate_offset_commit("g", -1, "", None, api_version=9) == ErrorCode.UNKNOWN_MEMBER_ID
    assert coordinator.validate_offset_fetch("g", "A", epoch + 1) == ErrorCode.STALE_MEMBER_EPOCH
    assert coordinator.validate_offset_fetch("g", None, -1) == ErrorCode.NONE
    # Missing groups: generation >= 0 is ILLEGAL_GENERATION before v9, GROUP_ID_NOT_FOUND from v9.
    assert coordinator.validate_offset_commit("x", 1, "m", None) == ErrorCode.ILLEGAL_GENERATION
    assert coordinator.validate_offset_commit("x", 1, "m", None, api_version=9) == ErrorCode.GROUP_ID_NOT_FOUND
    assert coordinator.validate_offset_commit("x", -1, "", None, api_version=9) == ErrorCode.NONE
    assert coordinator.validate_offset_fetch("x", "m", 3) == ErrorCode.NONE


def test_coordinator_timer_fences_consumer_members(coordinator):
    cghb(coordinator, "g", "A", 0, now=1000)
    group = coordinator.get("g")
    assert group.next_deadline() == 1000 + SESSION
    coordinator.tick(1000 + SESSION - 1)
    assert "A" in group.members
    coordinator.tick(1000 + SESSION)
    assert group.is_empty() and group.state == EMPTY and coordinator.is_empty("g")
    coordinator.remove("g")
    assert group.state == "Dead" and coordinator.get("g") is None


# -- the handlers, through the real codec ------------------------------------------------


def call(coordinator, api, version, request, peer="127.0.0.1:5555"):
    """Encode the request, decode it as the server would, run the handler
    and round-trip its response through the codec."""
    from types import SimpleNamespace

    from pybroker.handlers import HANDLERS, load_all

    from .committing import answer

    load_all()
    body = type(request).decode(request.encode(version), version)
    ctx = SimpleNamespace(api_version=version, client_id="rdkafka", peer=peer)
    handled = HANDLERS[api].fn(ctx, body, groups=coordinator, authorizer=None)
    response = answer(coordinator.broker, coordinator, handled)
    return type(response).decode(response.encode(version), version)


def test_heartbeat_handler_v0_and_v1(coordinator):
    from pybroker.protocol.messages.consumer_group_heartbeat_request import ConsumerGroupHeartbeatRequest
    from pybroker.protocol.registry import ApiKey

    join = {
        "group_id": "g",
        "member_epoch": 0,
        "rebalance_timeout_ms": REBALANCE,
        "subscribed_topic_names": ["t"],
        "topic_partitions": [],
    }
    # v1: the client names itself.
    r = call(coordinator, ApiKey.CONSUMER_GROUP_HEARTBEAT, 1, ConsumerGroupHeartbeatRequest(member_id="", **join))
    assert (r.error_code, r.error_message) == (ErrorCode.INVALID_REQUEST, "MemberId can't be empty.")
    r = call(coordinator, ApiKey.CONSUMER_GROUP_HEARTBEAT, 1, ConsumerGroupHeartbeatRequest(member_id="A", **join))
    topic_id = coordinator.broker.metadata.topic("t").topic_id
    assert (r.error_code, r.member_id, r.member_epoch, r.heartbeat_interval_ms) == (0, "A", 1, INTERVAL)
    assert [(tp.topic_id, tp.partitions) for tp in r.assignment.topic_partitions] == [(topic_id, [0, 1, 2, 3, 4, 5])]
    member = coordinator.get("g").members["A"]
    assert (member.client_id, member.client_host) == ("rdkafka", "/127.0.0.1")
    # v0: the coordinator names it.
    r = call(coordinator, ApiKey.CONSUMER_GROUP_HEARTBEAT, 0, ConsumerGroupHeartbeatRequest(member_id="", **join))
    assert r.error_code == 0 and r.member_id and r.member_id != "A" and r.assignment.topic_partitions == []
    # A must now give half up: it stays at epoch 1 with a smaller assignment.
    r = call(
        coordinator,
        ApiKey.CONSUMER_GROUP_HEARTBEAT,
        1,
        ConsumerGroupHeartbeatRequest(
            group_id="g", member_id="A", member_epoch=1, topic_partitions=[_tp(topic_id, [0, 1, 2, 3, 4, 5])]
        ),
    )
    assert r.error_code == 0 and r.member_epoch == 1
    assert [len(tp.partitions) for tp in r.assignment.topic_partitions] == [3]
    # Nothing new: no assignment in the answer.
    r = call(
        coordinator,
        ApiKey.CONSUMER_GROUP_HEARTBEAT,
        1,
        ConsumerGroupHeartbeatRequest(group_id="g", member_id="A", member_epoch=1),
    )
    assert r.error_code == 0 and r.assignment is None
    r = call(
        coordinator,
        ApiKey.CONSUMER_GROUP_HEARTBEAT,
        1,
        ConsumerGroupHeartbeatRequest(group_id="g", member_id="A", member_epoch=1, server_assignor="sticky"),
    )
    assert r.error_code == ErrorCode.UNSUPPORTED_ASSIGNOR and r.member_id is None
    r = call(
        coordinator,
        ApiKey.CONSUMER_GROUP_HEARTBEAT,
        1,
        ConsumerGroupHeartbeatRequest(group_id="g", member_id="A", member_epoch=-1),
    )
    assert (r.error_code, r.member_id, r.member_epoch, r.assignment) == (0, "A", -1, None)


def _tp(topic_id, partitions):
    from pybroker.protocol.messages.consumer_group_heartbeat_request import TopicPartitions

    return TopicPartitions(topic_id=topic_id, partitions=partitions)


def test_describe_handler(coordinator):
    from pybroker.protocol.messages.consumer_group_describe_request import ConsumerGroupDescribeRequest
    from pybroker.protocol.registry import ApiKey

    cghb(coordinator, "g", "A", 0, instance_id="i", rack_id="r1", server_assignor="range")
    coordinator.get_or_create("classic")
    request = ConsumerGroupDescribeRequest(group_ids=["g", "nope", "classic", ""], include_authorized_operations=True)
    r = call(coordinator, ApiKey.CONSUMER_GROUP_DESCRIBE, 0, request)
    g, nope, classic, blank = r.groups
    topic_id = coordinator.broker.metadata.topic("t").topic_id
    assert (g.error_code, g.group_id, g.group_state, g.group_epoch, g.assignment_epoch, g.assignor_name) == (
        0,
        "g",
        "Stable",
        1,
        1,
        "range",
    )
    assert g.authorized_operations == sum(1 << op for op in (3, 6, 8, 10, 11))
    (m,) = g.members
    assert (m.member_id, m.instance_id, m.rack_id, m.member_epoch, m.client_id, m.subscribed_topic_names) == (
        "A",
        "i",
        "r1",
        1,
        "c",
        ["t"],
    )
    assert [(tp.topic_id, tp.topic_name, tp.partitions) for tp in m.assignment.topic_partitions] == [
        (topic_id, "t", [0, 1, 2, 3, 4, 5])
    ]
    assert m.target_assignment == m.assignment
    assert (nope.error_code, nope.error_message) == (ErrorCode.GROUP_ID_NOT_FOUND, "Group nope not found.")
    assert (classic.error_code, classic.error_message) == (
        ErrorCode.GROUP_ID_NOT_FOUND,
        "Group classic is not a consumer group.",
    )
    assert blank.error_code == ErrorCode.INVALID_GROUP_ID


# -- librdkafka with group.protocol=consumer, end to end --------------------------------------

E2E_TIMEOUT = 60.0


def _poll_until(consumers, done, received, deadline):
    import time

    while not done():
        assert time.monotonic() < deadline, "timed out"
        for name, c in consumers.items():
            msg = c.poll(0.2)
            if msg is not None and msg.error() is None:
                received.append((name, msg.topic(), msg.partition(), msg.offset(), msg.value()))


def test_librdkafka_consumer_protocol_end_to_end():
    """Two confluent-kafka consumers with group.protocol=consumer in one group
    on a 6-partition topic get 3 partitions each and, committing as they go,
    read every message exactly once between them; when one closes, the other
    gets all 6 and carries on from the committed offsets."""
    import time

    ck = pytest.importorskip("confluent_kafka")
    from pybroker.testing import running_broker

    # A 1 s heartbeat interval instead of 5 s keeps this test short.
    with running_broker({"num.partitions": "6", "group.consumer.heartbeat.interval.ms": "1000"}) as rb:
        topic, group = "kip848", "g848"
        producer = ck.Producer({"bootstrap.servers": rb.bootstrap_servers})

        def produce(start, count):
            for i in range(start, start + count):
                producer.produce(topic, key=str(i).encode(), value=str(i).encode())
            assert producer.flush(30) == 0

        produce(0, 1)  # auto-creates the topic with 6 partitions
        conf = {
            "bootstrap.servers": rb.bootstrap_servers,
            "group.id": group,
            "group.protocol": "consumer",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
        consumers = {"c1": ck.Consumer(conf), "c2": ck.Consumer(conf)}
        received = []
        try:
            for c in consumers.values():
                c.subscribe([topic])
            deadline = time.monotonic() + E2E_TIMEOUT

            def split_evenly():
                parts = {name: {tp.partition for tp in c.assignment()} for name, c in consumers.items()}
                return all(len(p) == 3 for p in parts.values()) and parts["c1"].isdisjoint(parts["c2"])

            _poll_until(consumers, split_evenly, received, deadline)
            produce(1, 299)
            _poll_until(consumers, lambda: len(received) >= 300, received, deadline)
            values = sorted(int(v) for *_, v in received)
            assert values == list(range(300)), "every message exactly once"
            by_partition = {}
            for name, _, partition, *_ in received:
                by_partition.setdefault(partition, set()).add(name)
            assert all(len(names) == 1 for names in by_partition.values())
            for c in consumers.values():
                c.commit(asynchronous=False)

            consumers.pop("c1").close()  # leaves the group (epoch -1)
            c2 = consumers["c2"]
            _poll_until(consumers, lambda: len(c2.assignment()) == 6, received, deadline)
            assert {tp.partition for tp in c2.assignment()} == set(range(6))
            received.clear()
            produce(300, 60)
            _poll_until(consumers, lambda: len(received) >= 60, received, deadline)
            # c2 took c1's partitions over from their committed offsets: nothing old again.
            assert sorted(int(v) for *_, v in received) == list(range(300, 360))
            import trio

            described = trio.from_thread.run_sync(lambda: rb.broker.groups.get(group).state, trio_token=rb.token)
            assert described == "Stable"
        finally:
            for c in consumers.values():
                c.close()


def test_librdkafka_regex_static_members_and_admin():
    """A regex subscription, a static member that closes (epoch -2) and comes
    back as a new process with its partitions, and the admin client's view
    (ConsumerGroupDescribe, ListGroups with the group type)."""
    import time

    ck = pytest.importorskip("confluent_kafka")
    from confluent_kafka.admin import AdminClient

    from pybroker.testing import running_broker

    with running_broker({"num.partitions": "2", "group.consumer.heartbeat.interval.ms": "1000"}) as rb:
        producer = ck.Producer({"bootstrap.servers": rb.bootstrap_servers})
        for topic in ("rx-a", "rx-b", "other"):
            producer.produce(topic, b"x")
        assert producer.flush(30) == 0
        deadline = time.monotonic() + E2E_TIMEOUT

        def member(instance):
            c = ck.Consumer(
                {
                    "bootstrap.servers": rb.bootstrap_servers,
                    "group.id": "rx",
                    "group.protocol": "consumer",
                    "group.instance.id": instance,
                    "auto.offset.reset": "earliest",
                }
            )
            c.subscribe(["^rx-.*"])
            return c

        def wait(consumers, done):
            while not done():
                assert time.monotonic() < deadline, "timed out"
                for c in consumers:
                    c.poll(0.1)

        def parts(c):
            return {(tp.topic, tp.partition) for tp in c.assignment()}

        a, b = member("a"), member("b")
        try:
            wait([a, b], lambda: len(parts(a)) == len(parts(b)) == 2)
            assert parts(a) | parts(b) == {(t, p) for t in ("rx-a", "rx-b") for p in (0, 1)}
            admin = AdminClient({"bootstrap.servers": rb.bootstrap_servers})
            described = admin.describe_consumer_groups(["rx"])["rx"].result(30)
            assert described.state == ck.ConsumerGroupState.STABLE
            assert described.type == ck.ConsumerGroupType.CONSUMER
            assert described.partition_assignor == "uniform"
            assert sorted(m.group_instance_id for m in described.members) == ["a", "b"]
            listed = admin.list_consumer_groups().result(30).valid
            assert [(g.group_id, g.type) for g in listed] == [("rx", ck.ConsumerGroupType.CONSUMER)]

            had = parts(a)
            a.close()  # a static member leaves for a while: its partitions wait for it
            a = member("a")
            wait([a, b], lambda: parts(a) == had)
            assert parts(b).isdisjoint(had)
        finally:
            a.close()
            b.close()


def test_librdkafka_member_survives_a_broker_restart(tmp_path):
    """A member whose broker stops and starts again (in-process, on the same
    data directory) goes on reading where it was: its group is read back
    from __consumer_offsets (test_group_migration.py checks ids, epochs and
    the absence of rebalances through a kill -9)."""
    import socket
    import time

    ck = pytest.importorskip("confluent_kafka")
    from pybroker.testing import running_broker

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    props = {
        "listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "num.partitions": "3",
        "group.consumer.heartbeat.interval.ms": "1000",
    }
    bootstrap = f"127.0.0.1:{port}"
    deadline = time.monotonic() + E2E_TIMEOUT

    def produce(start, stop):
        producer = ck.Producer({"bootstrap.servers": bootstrap})
        for i in range(start, stop):
            producer.produce("r", str(i).encode())
        assert producer.flush(30) == 0

    def read(consumer, count):
        got = []
        while len(got) < count:
            assert time.monotonic() < deadline, "timed out"
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                got.append(int(msg.value()))
        return sorted(got)

    consumer = ck.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "rg",
            "group.protocol": "consumer",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    closed = False
    try:
        with running_broker(props, data_dir=tmp_path):
            produce(0, 30)
            consumer.subscribe(["r"])
            assert read(consumer, 30) == list(range(30))
            consumer.commit(asynchronous=False)
        with running_broker(props, data_dir=tmp_path) as rb:
            produce(30, 40)
            assert read(consumer, 10) == list(range(30, 40))
            assert isinstance(rb.broker.groups.groups.get("rg"), ConsumerGroup)
            consumer.close()
            closed = True
    finally:
        if not closed:
            consumer.close()
