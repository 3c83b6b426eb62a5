"""KIP-848 consumer groups written to __consumer_offsets and read back, and
the coordinator's conversions between classic and consumer groups, on a
broker's real storage (not serving: the tests call the coordinator and
choose the time)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.records import split_batches
from pybroker.broker import Broker
from pybroker.config import BrokerConfig
from pybroker.groups import parse_migration_policy
from pybroker.groups.classic import COMPLETING, PREPARING, STABLE, ClassicGroup
from pybroker.groups.consumer import UNREVOKED_PARTITIONS, ConsumerGroup
from pybroker.groups.coordinator import now_ms
from pybroker.groups.embedded import encode_assignment
from pybroker.groups.records import ConsumerGroupKey, GroupMetadataKey, decode_key

from .committing import commit_writes
from .test_migration import SESSION, by_name, subscription

REBALANCE = 30_000


class Node:
    """A broker's storage and coordinator; ``reopen`` stops and starts it."""

    def __init__(self, data: Path, **props):
        settings = {
            "log.dirs": str(data),
            "listeners": "PLAINTEXT://127.0.0.1:0",
            "offsets.topic.num.partitions": "2",
            "group.initial.rebalance.delay.ms": "0",
        }
        settings.update(props)
        self.config = BrokerConfig(settings)
        self.broker = Broker(self.config)
        self.broker.topics.create_topic("t", 6)
        self.topic_id = self.broker.metadata.topic("t").topic_id

    @property
    def coordinator(self):
        return self.broker.groups

    def reopen(self) -> None:
        self.broker.logs.close()
        self.broker = Broker(self.config)

    def close(self) -> None:
        self.broker.logs.close()

    def beat(self, group_id, member_id, epoch, now, **extra):
        request = {"member_id": member_id, "member_epoch": epoch, "client_id": "c", "client_host": "/h"}
        if epoch == 0:
            request.update(rebalance_timeout_ms=REBALANCE, subscribed_topic_names=["t"], owned_partitions={})
        request.update(extra)
        return self.coordinator.consumer_group_heartbeat(now, group_id, **request)

    def records(self, group_id):
        """(decoded key, value is None) of every record of the group's partition."""
        part = self.coordinator.partition_of(group_id)
        data = part.log.read(part.log.log_start_offset, 1 << 22).data
        out = []
        for batch in split_batches(data)[0]:
            out.append([(decode_key(r.key), r.value is None) for r in batch.records()])
        return out

    def log_end(self, group_id) -> int:
        return self.coordinator.partition_of(group_id).log.log_end_offset


@pytest.fixture
def node(tmp_path):
    made = []

    def make(**props):
        n = Node(tmp_path / f"data{len(made)}", **props)
        made.append(n)
        return n

    yield make
    for n in made:
        n.close()


def settle(n: Node, group_id: str, members: dict[str, int], now: int) -> dict[str, int]:
    """Heartbeat every member (reporting what it was given) until the group
    is Stable; returns member id -> epoch."""
    owned: dict[str, dict] = {m: {} for m in members}
    for _ in range(10):
        for m, epoch in members.items():
            r = n.beat(group_id, m, epoch, now, owned_partitions=owned[m])
            assert r.error == ErrorCode.NONE, r
            members[m] = r.member_epoch
            if r.assignment is not None:
                owned[m] = {tid: set(ps) for tid, ps in r.assignment.items()}
        if n.coordinator.get(group_id).state == STABLE:
            return members
    raise AssertionError("the group did not settle")


def picture(group: ConsumerGroup) -> dict:
    """Everything about a consumer group that must survive a restart."""
    return {
        "epochs": (group.group_epoch, group.assignment_epoch),
        "subscription": group.subscription,
        "target": group.target,
        "members": {
            mid: (m.epoch, m.previous_epoch, m.state, m.assigned, m.pending_revocation, m.instance_id,
                  m.topic_names, m.rebalance_timeout_ms, m.client_id, m.classic)
            for mid, m in group.members.items()
        },
        "statics": group.statics,
    }


def test_consumer_group_survives_a_restart(node):
    n = node()
    now = now_ms()
    assert n.beat("g", "A", 0, now).error == ErrorCode.NONE
    assert n.beat("g", "S", 0, now, instance_id="static-1").error == ErrorCode.NONE
    epochs = settle(n, "g", {"A": 1, "S": 2}, now)
    # C joins: A and S must each give partitions up; A reports it has
    # not yet, so it stays at its epoch with partitions pending revocation.
    group = n.coordinator.get("g")
    had = {tid: set(ps) for tid, ps in group.members["A"].assigned.items()}
    n.beat("g", "C", 0, now)
    r = n.beat("g", "A", epochs["A"], now, owned_partitions=had)
    assert group.members["A"].state == UNREVOKED_PARTITIONS and group.members["A"].pending_revocation
    before = picture(group)

    n.reopen()
    group = n.coordinator.get("g")
    assert isinstance(group, ConsumerGroup) and picture(group) == before
    # A member still revoking has its rebalance timeout again, from the start.
    assert group.members["A"].rebalance_deadline != float("inf")
    # A goes on where it was: same epoch, and nothing bumped.
    end = n.log_end("g")
    r = n.beat("g", "A", r.member_epoch, now_ms(), owned_partitions={n.topic_id: group.members["A"].assigned[n.topic_id]})
    assert r.error == ErrorCode.NONE and group.group_epoch == before["epochs"][0]
    assert r.member_epoch == before["epochs"][1]  # it caught up with the target, as it would have
    # A member that left for a while (static, epoch -2) is kept as such.
    assert n.beat("g", "S", -2, now_ms(), instance_id="static-1").member_epoch == -2
    assert n.log_end("g") > end
    before = picture(n.coordinator.get("g"))
    n.reopen()
    assert picture(n.coordinator.get("g")) == before
    assert n.coordinator.get("g").members["S"].epoch == -2


def test_only_what_changed_is_written(node):
    n = node()
    now = now_ms()
    n.beat("g", "A", 0, now)
    settle(n, "g", {"A": 1}, now)
    end = n.log_end("g")
    epoch = n.coordinator.get("g").members["A"].epoch
    for i in range(5):
        assert n.beat("g", "A", epoch, now + i).error == ErrorCode.NONE
    assert n.log_end("g") == end, "heartbeats that change nothing wrote records"
    # After a restart nothing is rewritten either.
    n.reopen()
    n.beat("g", "A", epoch, now_ms())
    assert n.log_end("g") == end
    n.beat("g", "B", 0, now)
    batch = n.records("g")[-1]
    kinds = [(k.kind, k.member_id) for k, _ in batch]
    # One batch: B's metadata, the new topics' metadata and epochs, targets, B's assignment.
    assert (5, "B") in kinds and (3, None) in kinds and (8, "B") in kinds and (8, "A") not in kinds


def test_leave_and_delete_write_tombstones(node):
    n = node()
    now = now_ms()
    n.beat("g", "A", 0, now)
    n.beat("g", "B", 0, now)
    assert n.beat("g", "B", -1, now).error == ErrorCode.NONE
    batch = n.records("g")[-1]
    gone = [(k.kind, k.member_id) for k, tomb in batch if tomb]
    assert gone == [(8, "B"), (7, "B"), (5, "B")]
    n.reopen()
    assert set(n.coordinator.get("g").members) == {"A"}
    n.beat("g", "A", -1, now_ms())
    assert n.coordinator.get("g").state == "Empty"
    n.coordinator.remove("g")  # DeleteGroups, or retention
    tombstones = [k for k, tomb in n.records("g")[-1] if tomb]
    assert [k.kind for k in tombstones] == [6, 4, 3]
    n.reopen()
    assert n.coordinator.get("g") is None


def classic_group(n: Node, group_id: str, now: int, members=("a", "b")) -> tuple[ClassicGroup, dict]:
    """A Stable classic group through the coordinator: a owns 0-2, b 3-5."""
    c = n.coordinator
    group = c.get_or_create(group_id)
    answers = {}
    for m in members:
        c.join(
            group, now, member_id="", instance_id=None, client_id=m, client_host="/h", session_timeout=SESSION,
            rebalance_timeout=REBALANCE, protocol_type="consumer", protocols=[("range", subscription(["t"]))],
            require_known_member_id=False, supports_skip_assignment=False,
            callback=lambda r, m=m: answers.__setitem__(m, r),
        )
    group.tick(now)
    group.tick(now)
    assert group.state == COMPLETING
    ids = {m: answers[m].member_id for m in members}
    split = {ids[m]: encode_assignment({"t": list(range(3 * i, 3 * i + 3))}) for i, m in enumerate(members)}
    for m in members:
        c.sync(group, now, member_id=ids[m], instance_id=None, generation=group.generation, protocol_type="consumer",
               protocol_name="range", assignments=split if ids[m] == group.leader_id else {}, callback=lambda r: None)
    commit_writes(n.broker)  # the leader's assignment takes effect once committed
    assert group.state == STABLE
    return group, ids


def test_upgrade_through_the_coordinator_survives_a_restart(node):
    n = node()
    now = now_ms()
    classic, ids = classic_group(n, "g", now)
    generation = classic.generation
    r = n.beat("g", "C", 0, now)
    assert r.error == ErrorCode.NONE and r.member_epoch == generation + 1
    group = n.coordinator.get("g")
    assert isinstance(group, ConsumerGroup) and classic.state == "Dead"
    assert set(group.members) == {"C", *ids.values()}
    assert group.members[ids["a"]].assigned == {n.topic_id: frozenset({0, 1, 2})}
    # One batch: the classic group's tombstone first, then the consumer group.
    batch = n.records("g")[-1]
    assert batch[0] == (GroupMetadataKey("g"), True)
    assert all(isinstance(k, ConsumerGroupKey) and not tomb for k, tomb in batch[1:])
    # The classic members are told to join again, and do.
    c = n.coordinator
    assert c.heartbeat(group, now, ids["a"], None, generation) == ErrorCode.REBALANCE_IN_PROGRESS
    join = {
        "instance_id": None, "client_host": "/h", "session_timeout": SESSION, "rebalance_timeout": REBALANCE,
        "protocol_type": "consumer", "protocols": [("range", subscription(["t"]))], "require_known_member_id": False,
        "supports_skip_assignment": False,
    }
    answers = []
    answer = c.join(group, now, member_id=ids["a"], client_id="a", callback=answers.append, **join)
    if answer is None:  # answered once what the join changed is committed
        commit_writes(n.broker)
        (answer,) = answers
    assert answer.error == ErrorCode.NONE and answer.generation == generation + 1
    synced = c.sync(group, now, member_id=ids["a"], instance_id=None, generation=answer.generation,
                    protocol_type="consumer", protocol_name="range", assignments={}, callback=None)
    assert synced.error == ErrorCode.NONE and by_name(synced.assignment)["t"] <= {0, 1, 2}
    before = picture(group)
    n.reopen()
    group = n.coordinator.get("g")
    assert isinstance(group, ConsumerGroup) and picture(group) == before
    assert group.members[ids["b"]].classic.session_timeout_ms == SESSION


def test_downgrade_through_the_coordinator_survives_a_restart(node):
    n = node()
    now = now_ms()
    _, ids = classic_group(n, "g", now)
    n.beat("g", "C", 0, now)
    group = n.coordinator.get("g")
    epoch = group.group_epoch
    assert n.beat("g", "C", -1, now).error == ErrorCode.NONE
    classic = n.coordinator.get("g")
    assert isinstance(classic, ClassicGroup) and classic.state == PREPARING and group.replaced
    assert classic.generation == epoch and set(classic.members) == set(ids.values())
    # One batch: every consumer group record's tombstone, then the classic group.
    batch = n.records("g")[-1]
    assert batch[-1] == (GroupMetadataKey("g"), False)
    assert all(isinstance(k, ConsumerGroupKey) and tomb for k, tomb in batch[:-1])
    n.reopen()
    restored = n.coordinator.get("g")
    assert isinstance(restored, ClassicGroup) and restored.generation == epoch
    assert set(restored.members) == set(ids.values())


def test_disabled_policy_refuses_the_upgrade(node):
    n = node(**{"group.consumer.migration.policy": "DISABLED"})
    now = now_ms()
    classic, _ = classic_group(n, "g", now)
    r = n.beat("g", "C", 0, now)
    assert (r.error, r.message) == (
        ErrorCode.GROUP_ID_NOT_FOUND,
        "Cannot upgrade classic group g to consumer group because online upgrade is disabled.",
    )
    assert n.coordinator.get("g") is classic and classic.state == STABLE


def test_migration_policy_config():
    assert BrokerConfig({})["group.consumer.migration.policy"] == "bidirectional"
    upgrade = BrokerConfig({"group.consumer.migration.policy": "Upgrade"})["group.consumer.migration.policy"]
    assert parse_migration_policy(upgrade) == "upgrade"  # Kafka's values are case insensitive
    from pybroker.config import ConfigError

    with pytest.raises(ConfigError, match="group.consumer.migration.policy"):
        BrokerConfig({"group.consumer.migration.policy": "sideways"})


def test_a_failed_write_leaves_the_group_as_it_was(node, monkeypatch):
    """A conversion or a new group takes effect only once it is written."""
    n = node()
    now = now_ms()
    classic, _ = classic_group(n, "g", now)
    from pybroker.protocol.errors import KafkaError

    def refused(*args, **kwargs):
        raise KafkaError(ErrorCode.KAFKA_STORAGE_ERROR)

    monkeypatch.setattr(n.coordinator.writer.replicas, "append", refused)
    assert n.beat("g", "C", 0, now).error == ErrorCode.NOT_COORDINATOR
    assert n.coordinator.get("g") is classic and classic.state == STABLE
    assert n.beat("new", "C", 0, now).error == ErrorCode.NOT_COORDINATOR
    assert n.coordinator.get("new") is None
    monkeypatch.undo()
    assert isinstance(n.coordinator.get("g"), ClassicGroup)
    assert n.beat("g", "C", 0, now).error == ErrorCode.NONE and isinstance(n.coordinator.get("g"), ConsumerGroup)


def test_unreadable_or_stray_records_do_not_stop_the_load(node):
    """A record that cannot be read is skipped (the member it describes is
    left out), and member records of a group without a group epoch make no
    group."""
    from pybroker.protocol.records import NewRecord
    from pybroker.groups.consumer_records import CurrentAssignmentValue, encode_value
    from pybroker.groups.records import encode_consumer_key

    n = node()
    now = now_ms()
    n.beat("g", "A", 0, now)
    garbage = NewRecord(encode_consumer_key(ConsumerGroupKey(5, "g", "B")), b"\x00\x00\x05garbage")
    assignment = encode_value(CurrentAssignmentValue(1, 0, 0, (), ()))
    leftover = NewRecord(encode_consumer_key(ConsumerGroupKey(8, "g", "B")), assignment)
    stray = NewRecord(encode_consumer_key(ConsumerGroupKey(8, "orphan", "M")), assignment)
    assert n.coordinator.offsets.append("g", [garbage, leftover], now) == ErrorCode.NONE
    assert n.coordinator.offsets.append("orphan", [stray], now) == ErrorCode.NONE
    n.reopen()
    group = n.coordinator.get("g")
    assert set(group.members) == {"A"} and n.coordinator.get("orphan") is None
    # The first write after the load mends the records: B's leftovers go.
    epoch = group.members["A"].epoch
    assert n.beat("g", "A", epoch, now_ms()).error == ErrorCode.NONE
    assert [(k.kind, k.member_id) for k, tomb in n.records("g")[-1] if tomb] == [(8, "B")]
