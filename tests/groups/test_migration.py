"""Classic members inside a KIP-848 consumer group and the online
conversions between classic and consumer groups, driven as pure state
machines with explicit time (no broker, no sleeping)."""

from __future__ import annotations

import random
import struct
import uuid

import pytest

from pybroker.protocol.error_codes import ErrorCode
from pybroker.groups.classic import COMPLETING, PREPARING, STABLE, ClassicGroup, GroupConfig
from pybroker.groups.consumer import (
    MEMBER_STABLE,
    UNRELEASED_PARTITIONS,
    ConsumerGroup,
    ConsumerGroupConfig,
)
from pybroker.groups.embedded import decode_assignment, decode_subscription, encode_assignment
from pybroker.groups.migration import to_classic_group, to_consumer_group, upgrade_refusal

from .test_consumer_protocol import REBALANCE, SIX, Client, T, check_invariants, topics

SESSION = 10_000


def subscription(names, owned=None, version=3, user_data=b"", rack=None) -> bytes:
    """A ConsumerProtocolSubscription written by hand from Kafka's schema."""
    out = struct.pack(">hi", version, len(names))
    for n in names:
        out += struct.pack(">h", len(n)) + n.encode()
    out += struct.pack(">i", len(user_data)) + user_data
    if version >= 1:
        owned = owned or {}
        out += struct.pack(">i", len(owned))
        for topic, parts in owned.items():
            out += struct.pack(">h", len(topic)) + topic.encode() + struct.pack(f">i{len(parts)}i", len(parts), *parts)
    if version >= 2:
        out += struct.pack(">i", -1)
    if version >= 3:
        out += struct.pack(">h", -1) if rack is None else struct.pack(">h", len(rack)) + rack.encode()
    return out


def by_name(assignment: bytes) -> dict[str, set[int]]:
    return {t: set(ps) for t, ps in decode_assignment(assignment)[0].items()}


# -- the consumer embedded protocol ------------------------------------------------------


def test_embedded_protocol_bytes():
    s = decode_subscription(subscription(["t", "u"], {"t": [1, 2]}, rack="r1"))
    assert (s.version, s.topics, s.owned, s.generation, s.rack_id) == (3, ("t", "u"), {"t": (1, 2)}, -1, "r1")
    s0 = decode_subscription(subscription(["t"], version=0))
    assert (s0.version, s0.topics, s0.owned) == (0, ("t",), {})
    # A version from the future is read as the newest we know.
    assert decode_subscription(subscription(["t"], version=3)[:0] + struct.pack(">h", 9) + subscription(["t"])[2:]).topics == ("t",)
    data = encode_assignment({"t": [2, 0]}, version=1)
    assert data == b"\x00\x01" + b"\x00\x00\x00\x01" + b"\x00\x01t" + b"\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x02" + b"\xff\xff\xff\xff"
    assert decode_assignment(data) == ({"t": (0, 2)}, None)
    assert encode_assignment({}, version=7)[:2] == b"\x00\x03"
    from pybroker.protocol.errors import DecodeError

    for bad in (b"", b"\x00\x03\x00\x00\x00\x05", b"\xff\xff\x00\x00\x00\x00"):
        with pytest.raises(DecodeError):
            decode_subscription(bad)


# -- classic members in a consumer group -------------------------------------------------


class ClassicClient:
    """A classic consumer as librdkafka runs one: eager (gives every
    partition up before it joins again) or cooperative (reports what it owns,
    gives up only what the new assignment lacks, and joins again if it gave
    anything up: at once, or when ``lazy`` only when a heartbeat tells it
    to). ``owned`` is what it consumes."""

    def __init__(self, group, member_id="", eager=True, protocol="range", instance_id=None, names=("t",), lazy=False):
        self.group, self.member_id, self.eager, self.lazy = group, member_id, eager, lazy
        self.protocol, self.instance_id, self.names = protocol, instance_id, list(names)
        self.generation = -1
        self.owned: set[int] = set()  # partitions of topic t
        self.last = None

    def join(self, now, cluster=SIX):
        if self.eager:
            self.owned = set()
        owned = {"t": sorted(self.owned)} if self.owned else {}
        r = self.group.join(
            now,
            member_id=self.member_id,
            instance_id=self.instance_id,
            client_id="cl",
            client_host="/h",
            session_timeout=SESSION,
            rebalance_timeout=REBALANCE,
            protocol_type="consumer",
            protocols=[(self.protocol, subscription(self.names, owned))],
            require_known_member_id=False,
            topics=cluster,
        )
        self.last = r
        if r.error == ErrorCode.NONE:
            self.member_id, self.generation = r.member_id, r.generation
            assert (r.protocol_type, r.protocol_name, r.leader, r.members) == ("consumer", self.protocol, "", [])
        return r

    def sync(self, now):
        r = self.group.sync(
            now, member_id=self.member_id, instance_id=self.instance_id, generation=self.generation,
            protocol_type="consumer", protocol_name=self.protocol,
        )
        self.last = r
        if r.error == ErrorCode.NONE:
            new = by_name(r.assignment).get("t", set())
            revoked = self.owned - new
            self.owned = new
            if revoked and not self.eager and not self.lazy:
                return self.rejoin(now)
        return r

    def rejoin(self, now, cluster=SIX):
        r = self.join(now, cluster)
        return self.sync(now) if r.error == ErrorCode.NONE else r

    def beat(self, now, cluster=SIX):
        error = self.group.heartbeat(now, self.member_id, self.instance_id, self.generation)
        if error == ErrorCode.REBALANCE_IN_PROGRESS:
            return self.rejoin(now, cluster)
        if error in (ErrorCode.UNKNOWN_MEMBER_ID, ErrorCode.ILLEGAL_GENERATION, ErrorCode.FENCED_INSTANCE_ID):
            self.owned = set()
        return error

    def partitions(self) -> set:
        return {(T, p) for p in self.owned}


def consumer_group(**config) -> ConsumerGroup:
    return ConsumerGroup("g", ConsumerGroupConfig(**config))


def test_classic_members_join_a_consumer_group_and_reconcile():
    """A consumer-protocol member and two classic members share six
    partitions; a partition only moves once its owner gave it up."""
    g = consumer_group()
    c = Client(g, "C")
    c.join(0)
    assert c.partitions() == {(T, p) for p in range(6)}
    a = ClassicClient(g)
    r = a.join(1)
    # Joined at once, at the new epoch, but every partition is still C's.
    assert r.error == ErrorCode.NONE and r.generation == g.group_epoch
    assert g.members[a.member_id].state == UNRELEASED_PARTITIONS and g.members[a.member_id].classic is not None
    a.sync(1)
    assert a.owned == set()
    c.beat(2)  # C is told to give three partitions up, and does
    assert len(c.owned[T]) == 3
    assert a.group.heartbeat(2, a.member_id, None, a.generation) == ErrorCode.NONE  # still C's
    c.beat(2)  # C reports it has
    # a's partitions are free now: its heartbeat sends it to join again.
    assert a.beat(3) is not None and len(a.owned) == 3
    assert a.group.heartbeat(4, a.member_id, None, a.generation) == ErrorCode.NONE
    b = ClassicClient(g, eager=False, protocol="range")
    b.join(5)
    b.sync(5)
    for now in range(6, 12):
        for client in (a, b, c):
            client.beat(now)
        check_invariants(g)
        owned = [tp for x in (a, b, c) for tp in x.partitions()]
        assert len(owned) == len(set(owned))
    assert g.state == STABLE
    assert sorted(len(x.partitions()) for x in (a, b, c)) == [2, 2, 2]


def test_classic_member_errors():
    g = consumer_group()
    Client(g, "C").join(0)
    a = ClassicClient(g)
    a.join(0)
    a.sync(0)
    # A consumer-protocol member is unknown to the classic requests.
    assert g.heartbeat(1, "C", None, g.members["C"].epoch) == ErrorCode.UNKNOWN_MEMBER_ID
    assert g.leave(1, "C", None) == ErrorCode.UNKNOWN_MEMBER_ID
    assert g.heartbeat(1, "nobody", None, 1) == ErrorCode.UNKNOWN_MEMBER_ID
    assert g.heartbeat(1, a.member_id, None, a.generation + 1) == ErrorCode.ILLEGAL_GENERATION
    sync = {"member_id": a.member_id, "instance_id": None, "generation": a.generation, "protocol_type": "consumer"}
    assert g.sync(1, protocol_name="roundrobin", **sync).error == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    assert g.sync(1, **{**sync, "protocol_type": "other"}, protocol_name=None).error == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    # A protocol none of the classic members offers, or another protocol type.
    other = ClassicClient(g, protocol="roundrobin")
    assert other.join(1).error == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    join = {
        "instance_id": None, "client_id": "x", "client_host": "/h", "session_timeout": SESSION,
        "rebalance_timeout": REBALANCE, "protocols": [("range", subscription(["t"]))], "topics": SIX,
    }
    assert g.join(1, member_id="", protocol_type="connect", require_known_member_id=False, **join).error == (
        ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    )
    # JoinGroup v4+: a new dynamic member gets its id first.
    r = g.join(1, member_id="", protocol_type="consumer", require_known_member_id=True, **join)
    assert r.error == ErrorCode.MEMBER_ID_REQUIRED and r.member_id and r.member_id not in g.members
    assert g.join(1, member_id=r.member_id, protocol_type="consumer", require_known_member_id=True, **join).error == ErrorCode.NONE
    # Commits: a classic member commits with its generation (no v9 needed).
    member = g.members[a.member_id]
    assert g.validate_offset_commit(2, a.member_id, None, member.epoch, 7) == ErrorCode.NONE
    assert g.validate_offset_commit(2, a.member_id, None, member.epoch - 1, 7) == ErrorCode.ILLEGAL_GENERATION
    assert g.validate_offset_commit(2, "C", None, g.members["C"].epoch, 7) == ErrorCode.UNSUPPORTED_VERSION
    assert g.validate_offset_fetch(a.member_id, member.epoch + 1) == ErrorCode.ILLEGAL_GENERATION
    # A full group.
    full = consumer_group(max_size=1)
    Client(full, "C").join(0)
    assert ClassicClient(full).join(3).error == ErrorCode.GROUP_MAX_SIZE_REACHED


def test_static_classic_members_and_leave_by_instance_id():
    g = consumer_group()
    Client(g, "C").join(0)
    s = ClassicClient(g, instance_id="i1")
    s.join(0)
    s.sync(0)
    old = s.member_id
    # A restarted instance takes its predecessor's place (and target).
    s2 = ClassicClient(g, instance_id="i1")
    assert s2.join(1).error == ErrorCode.NONE and old not in g.members and g.statics["i1"] == s2.member_id
    # The old process is fenced.
    assert g.heartbeat(2, old, "i1", s.generation) == ErrorCode.FENCED_INSTANCE_ID
    assert g.join(2, member_id=old, instance_id="i1", client_id="x", client_host="/h", session_timeout=SESSION,
                  rebalance_timeout=REBALANCE, protocol_type="consumer", protocols=[("range", subscription(["t"]))],
                  require_known_member_id=False, topics=SIX).error == ErrorCode.FENCED_INSTANCE_ID
    epoch = g.group_epoch
    # An admin removes it by instance id alone; the answer names the member.
    assert g.leave_members(3, [("", "i1"), ("", "nope")]) == [
        (s2.member_id, "i1", ErrorCode.NONE),
        ("", "nope", ErrorCode.UNKNOWN_MEMBER_ID),
    ]
    assert s2.member_id not in g.members and "i1" not in g.statics and g.group_epoch == epoch + 1


def test_classic_member_join_and_sync_timeouts():
    g = consumer_group()
    c = Client(g, "C")
    c.join(0)
    a = ClassicClient(g)
    a.join(10)
    member = g.members[a.member_id]
    # Joined but never synced: fenced once its rebalance timeout is over,
    # though it keeps heartbeating.
    assert member.sync_deadline == 10 + REBALANCE
    for now in range(10, 10 + REBALANCE, 3000):
        assert g.heartbeat(now, a.member_id, None, a.generation) == ErrorCode.NONE
        g.tick(now)
    g.tick(10 + REBALANCE - 1)
    assert a.member_id in g.members
    g.tick(10 + REBALANCE)
    assert a.member_id not in g.members
    b = ClassicClient(g)
    b.join(100_000)
    b.sync(100_000)
    c.beat(100_001)
    Client(g, "D").join(100_002)  # the group epoch moves past b's
    assert g.heartbeat(100_003, b.member_id, None, b.generation) == ErrorCode.REBALANCE_IN_PROGRESS
    # Told to join again, it does not: fenced after its rebalance timeout,
    # though it keeps heartbeating (a heartbeat does not rejoin).
    for now in range(100_004, 100_003 + REBALANCE, 3000):
        g.heartbeat(now, b.member_id, None, b.generation)
        g.tick(now)
    assert b.member_id in g.members
    g.tick(100_003 + REBALANCE)
    assert b.member_id not in g.members
    # A session that runs out: the classic member's own session timeout.
    e = ClassicClient(g)
    e.join(200_000)
    e.sync(200_000)
    g.tick(200_000 + SESSION - 1)
    assert e.member_id in g.members
    g.tick(200_000 + SESSION)
    assert e.member_id not in g.members


@pytest.mark.parametrize("seed", range(20))
def test_mixed_members_never_share_a_partition(seed):
    """Consumer-protocol members and classic members (eager and
    cooperative) join, leave, crash and heartbeat in random order: the
    partitions the clients consume are disjoint at every step, and once
    everyone heartbeats the group is Stable with every partition owned."""
    rng = random.Random(seed)
    g = consumer_group()
    clients = {}
    now = 0
    for step in range(250):
        now += rng.randrange(1, 2000)
        roll = rng.random()
        if roll < 0.1 or not clients:
            if rng.random() < 0.5:
                c = Client(g, f"c{step}")
                c.join(now)
                if c.last.error == ErrorCode.NONE:
                    clients[c.member_id] = c
            else:
                c = ClassicClient(g, eager=rng.random() < 0.5, lazy=rng.random() < 0.5)
                if c.rejoin(now).error == ErrorCode.NONE:
                    clients[c.member_id] = c
        elif roll < 0.15:
            c = clients.pop(rng.choice(sorted(clients)))
            if isinstance(c, Client):
                g.consumer_group_heartbeat(now, member_id=c.member_id, member_epoch=-1, topics=SIX)
            else:
                g.leave(now, c.member_id, None)
        else:
            c = clients[rng.choice(sorted(clients))]
            c.beat(now) if isinstance(c, ClassicClient) else c.beat(now, lazy=rng.random() < 0.3)
        g.tick(now)
        for mid in list(clients):
            if mid not in g.members:
                clients.pop(mid)  # fenced: a real client drops its partitions
        check_invariants(g)
        owned = [tp for c in clients.values() for tp in c.partitions()]
        assert len(owned) == len(set(owned)), f"seed {seed} step {step}: two clients own the same partition"
    for _ in range(12):
        for c in clients.values():
            c.beat(now)
    if clients:
        assert g.state == STABLE
        assert {tp for c in clients.values() for tp in c.partitions()} == {(T, p) for p in range(6)}


# -- upgrade: a classic group becomes a consumer group ----------------------------------------


def stable_classic_group(members=("a", "b"), protocol="range", generation_assignments=None, now=0):
    """A Stable classic group: members a and b of topic t (6 partitions),
    a owning 0-2 and b 3-5."""
    group = ClassicGroup("g", now, GroupConfig(initial_rebalance_delay_ms=0), lambda g, a, stored: stored(ErrorCode.NONE, 0))
    results = {}
    for m in members:
        group.join(
            now, member_id="", instance_id=None, client_id=m, client_host="/h", session_timeout=SESSION,
            rebalance_timeout=REBALANCE, protocol_type="consumer",
            protocols=[(protocol, subscription(["t"])), ("roundrobin", subscription(["t"]))],
            require_known_member_id=False, supports_skip_assignment=False,
            callback=lambda r, m=m: results.__setitem__(m, r),
        )
    group.tick(now)
    group.tick(now)  # the initial delay (0) and the delay after it
    assert group.state == COMPLETING
    ids = {m: results[m].member_id for m in members}
    split = generation_assignments or {m: encode_assignment({"t": list(range(3 * i, 3 * i + 3))}) for i, m in enumerate(members)}
    leader = next(m for m in members if ids[m] == group.leader_id)
    for m in members:
        group.sync(
            now, member_id=ids[m], instance_id=None, generation=group.generation, protocol_type="consumer",
            protocol_name=protocol, assignments={ids[x]: split[x] for x in members} if m == leader else {},
            callback=lambda r: None,
        )
    assert group.state == STABLE
    return group, ids


def test_upgrade_keeps_classic_members_then_the_assignor_takes_over():
    classic, ids = stable_classic_group()
    assert upgrade_refusal(classic, ConsumerGroupConfig()) is None
    g = to_consumer_group(classic, 100, SIX, ConsumerGroupConfig())
    assert isinstance(g, ConsumerGroup)
    assert g.group_epoch == g.assignment_epoch == classic.generation
    for m, first in (("a", 0), ("b", 3)):
        member = g.members[ids[m]]
        assert (member.epoch, member.state, member.client_id) == (classic.generation, MEMBER_STABLE, m)
        assert member.assigned == {T: frozenset(range(first, first + 3))} == g.target[ids[m]]
        assert member.classic.session_timeout_ms == SESSION and member.classic.protocol_name == "range"
        assert member.session_deadline == 100 + SESSION
    assert g.state == STABLE
    check_invariants(g)
    # The classic group is not touched.
    assert classic.state == STABLE and len(classic.members) == 2
    # A consumer-protocol member joins: new epoch, the classic members hear
    # of it at their next heartbeat and reconcile; everyone ends with 2.
    a = ClassicClient(g, ids["a"])
    b = ClassicClient(g, ids["b"], eager=False)
    for client in (a, b):
        client.generation = classic.generation
    a.owned, b.owned = {0, 1, 2}, {3, 4, 5}
    c = Client(g, "C")
    c.join(101)
    assert g.group_epoch == classic.generation + 1
    for now in range(102, 110):
        for client in (a, b, c):
            client.beat(now)
        owned = [tp for x in (a, b, c) for tp in x.partitions()]
        assert len(owned) == len(set(owned))
    assert g.state == STABLE and sorted(len(x.partitions()) for x in (a, b, c)) == [2, 2, 2]


def test_upgrade_refusals():
    classic, _ = stable_classic_group()
    assert upgrade_refusal(classic, ConsumerGroupConfig(migration_policy="downgrade")) == (
        "Cannot upgrade classic group g to consumer group because online upgrade is disabled."
    )
    assert "online upgrade is disabled" in upgrade_refusal(classic, ConsumerGroupConfig(migration_policy="disabled"))
    assert upgrade_refusal(classic, ConsumerGroupConfig(migration_policy="upgrade")) is None
    assert upgrade_refusal(classic, ConsumerGroupConfig(max_size=1)) == (
        "Cannot upgrade classic group g to consumer group because the group size exceeds the consumer group maximum size."
    )
    classic.protocol_type = "connect"
    assert "does not use the consumer embedded protocol" in upgrade_refusal(classic, ConsumerGroupConfig())
    # A custom assignor's user data would be lost.
    with_data = stable_classic_group(generation_assignments={
        "a": encode_assignment({"t": [0, 1, 2]})[:-4] + b"\x00\x00\x00\x02hi",
        "b": encode_assignment({"t": [3, 4, 5]}),
    })[0]
    assert "unsupported custom assignor" in to_consumer_group(with_data, 0, SIX, ConsumerGroupConfig())
    garbage = stable_classic_group(generation_assignments={"a": b"\x00\x03\x00", "b": encode_assignment({})})[0]
    assert "embedded consumer protocol is malformed" in to_consumer_group(garbage, 0, SIX, ConsumerGroupConfig())
    twice = stable_classic_group(generation_assignments={"a": encode_assignment({"t": [0, 1]}), "b": encode_assignment({"t": [1]})})[0]
    assert "malformed" in to_consumer_group(twice, 0, SIX, ConsumerGroupConfig())


def test_upgrade_of_a_member_that_never_synced():
    """A member that joined but has no assignment yet (empty bytes) comes
    over with no partitions."""
    classic, ids = stable_classic_group(generation_assignments={"a": encode_assignment({"t": [0, 1, 2, 3, 4, 5]}), "b": b""})
    g = to_consumer_group(classic, 0, SIX, ConsumerGroupConfig())
    assert g.members[ids["b"]].assigned == {} and g.members[ids["a"]].assigned == {T: frozenset(range(6))}


# -- downgrade: a consumer group becomes a classic group ---------------------------------------


class Owner:
    """What the coordinator does with a consumer group that may downgrade."""

    def __init__(self, group: ConsumerGroup):
        self.group = group
        self.classic = None
        group.downgrade = self

    def __call__(self, group, now, leaving, rebalance):
        self.classic = to_classic_group(group, leaving, now, GroupConfig(), lambda g, a, stored: stored(ErrorCode.NONE, 0))
        if self.classic is None:
            return False
        if rebalance:
            self.classic.rebalance(now)
        return True


def mixed_group(**config):
    """A consumer group with two classic members (a, b) and one
    consumer-protocol member (C), reconciled."""
    g = consumer_group(**config)
    owner = Owner(g)
    c = Client(g, "C")
    c.join(0)
    a, b = ClassicClient(g), ClassicClient(g, eager=False)
    for now in range(1, 10):
        for client in (a, b, c):
            client.beat(now) if isinstance(client, Client) or client.generation != -1 else client.rejoin(now)
    assert g.state == STABLE and sorted(len(x.partitions()) for x in (a, b, c)) == [2, 2, 2]
    return g, owner, a, b, c


def test_downgrade_when_the_last_consumer_member_leaves():
    g, owner, a, b, _ = mixed_group()
    epoch = g.group_epoch
    r = g.consumer_group_heartbeat(20, member_id="C", member_epoch=-1, topics=SIX)
    assert (r.error, r.member_epoch) == (ErrorCode.NONE, -1)
    assert g.replaced and owner.classic is not None
    classic = owner.classic
    assert set(classic.members) == {a.member_id, b.member_id}
    assert (classic.generation, classic.protocol_type, classic.protocol_name) == (epoch, "consumer", "range")
    # Each member's classic assignment is its target; the group rebalances.
    for x in (a, b):
        assert by_name(classic.members[x.member_id].assignment)["t"] == set(g.target[x.member_id][T])
        assert classic.members[x.member_id].session_timeout == SESSION
    assert classic.state == PREPARING
    assert classic.heartbeat(21, a.member_id, None, a.generation) == ErrorCode.REBALANCE_IN_PROGRESS
    # Both join again the classic way and the group settles.
    answers = {}
    for x in (a, b):
        classic.join(
            22, member_id=x.member_id, instance_id=None, client_id="cl", client_host="/h", session_timeout=SESSION,
            rebalance_timeout=REBALANCE, protocol_type="consumer", protocols=[("range", subscription(["t"]))],
            require_known_member_id=False, supports_skip_assignment=False,
            callback=lambda res, x=x: answers.__setitem__(x.member_id, res),
        )
    assert classic.state == COMPLETING and {res.error for res in answers.values()} == {ErrorCode.NONE}
    assert classic.generation == epoch + 1


def test_downgrade_when_the_consumer_member_is_fenced():
    g, owner, a, b, _ = mixed_group()
    deadline = g.members["C"].session_deadline
    for now in range(20, deadline, 3000):
        a.beat(now)
        b.beat(now)
        g.tick(now)
    assert not g.replaced
    a.beat(deadline)
    b.beat(deadline)
    g.tick(deadline)
    assert g.replaced and set(owner.classic.members) == {a.member_id, b.member_id}


@pytest.mark.parametrize(
    "config, downgrades",
    [
        ({"migration_policy": "bidirectional"}, True),
        ({"migration_policy": "downgrade"}, True),
        ({"migration_policy": "upgrade"}, False),
        ({"migration_policy": "disabled"}, False),
        ({"classic_max_size": 1}, False),
        ({"classic_max_size": 2}, True),
    ],
)
def test_downgrade_policy(config, downgrades):
    g, owner, a, b, _ = mixed_group(**config)
    epoch = g.group_epoch
    g.consumer_group_heartbeat(20, member_id="C", member_epoch=-1, topics=SIX)
    assert g.replaced is downgrades and (owner.classic is not None) is downgrades
    if not downgrades:
        # An ordinary leave: C is gone and the classic members reconcile.
        assert "C" not in g.members and g.group_epoch == epoch + 1
        for now in range(21, 26):
            a.beat(now)
            b.beat(now)
        assert g.state == STABLE and sorted(len(x.partitions()) for x in (a, b)) == [3, 3]


def test_no_downgrade_while_a_consumer_member_stays_or_a_classic_member_leaves():
    g, owner, a, b, _ = mixed_group()
    Client(g, "D").join(20)
    g.consumer_group_heartbeat(21, member_id="C", member_epoch=-1, topics=SIX)
    assert not g.replaced and "C" not in g.members
    # A classic member's LeaveGroup never downgrades (Kafka's rule).
    g.leave(22, a.member_id, None)
    assert not g.replaced and a.member_id not in g.members
    g.consumer_group_heartbeat(23, member_id="D", member_epoch=-1, topics=SIX)
    assert g.replaced and set(owner.classic.members) == {b.member_id}


def test_a_group_that_cannot_become_classic_stays_a_consumer_group():
    """Classic members without a protocol in common (possible after an
    upgrade) cannot form a classic group: the member just leaves."""
    g, owner, a, _, _ = mixed_group()
    member = g.members[a.member_id]
    member.classic = type(member.classic)(SESSION, (("sticky", subscription(["t"])),))
    g.consumer_group_heartbeat(20, member_id="C", member_epoch=-1, topics=SIX)
    assert not g.replaced and owner.classic is None and "C" not in g.members


def test_consumer_member_replaces_a_static_classic_member():
    """A consumer-protocol member with the instance id of a classic static
    member takes its place at once (no need for the classic one to leave)."""
    g = consumer_group()
    Client(g, "C").join(0)
    s = ClassicClient(g, instance_id="i1")
    s.rejoin(0)
    d = Client(g, "D", instance_id="i1")
    assert d.join(1).error == ErrorCode.NONE
    assert s.member_id not in g.members and g.statics["i1"] == "D" and g.members["D"].classic is None


@pytest.mark.parametrize("names", [("t",), ("t", "u")])
def test_downgrade_when_the_last_consumer_member_comes_back_classic(names):
    """The only consumer-protocol member is static; its instance restarts as
    a classic consumer: the group becomes classic at once, the new member in
    its predecessor's place with its partitions, and rebalances only if the
    subscription changed."""
    cluster = topics(t=6, u=2)
    g = consumer_group()
    owner = Owner(g)
    s = Client(g, "S", instance_id="i1")
    s.join(0, cluster)
    a = ClassicClient(g)
    for now in range(1, 6):
        s.beat(now, cluster)
        a.beat(now, cluster) if a.generation != -1 else a.rejoin(now, cluster)
    assert g.state == STABLE
    had = set(g.members["S"].assigned[T])
    s2 = ClassicClient(g, instance_id="i1", names=names)
    r = s2.join(10, cluster)
    assert r.error == ErrorCode.NONE and g.replaced
    classic = owner.classic
    assert set(classic.members) == {a.member_id, s2.member_id} and "S" not in classic.members
    assert classic.state == (STABLE if names == ("t",) else PREPARING)
    if names == ("t",):
        assert by_name(classic.members[s2.member_id].assignment)["t"] == had
        # It syncs with the generation it was given, and gets its partitions.
        synced = classic.sync(11, member_id=s2.member_id, instance_id="i1", generation=r.generation,
                              protocol_type="consumer", protocol_name="range", assignments={}, callback=None)
        assert synced.error == ErrorCode.NONE and by_name(synced.assignment)["t"] == had


def test_topics_for_other_clusters():
    """Owned partitions of topics the cluster does not know are ignored."""
    g = consumer_group()
    a = ClassicClient(g, names=("t", "gone"))
    a.owned = {9}
    a.eager = False
    assert a.join(0, topics(t=6)).error == ErrorCode.NONE
    assert g.members[a.member_id].topic_names == frozenset({"t", "gone"})
    assert uuid.UUID(int=0x1111) in g.subscription["t"]
