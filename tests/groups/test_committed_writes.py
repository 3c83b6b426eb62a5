"""Group operations complete when their records are committed.

A running broker whose coordinator's "until committed" is held by a gate
(the test decides when — and whether — the write to __consumer_offsets
completes): an OffsetCommit is answered, and its offsets shown to
OffsetFetch, only once the commit completes; a failed write answers Kafka's
mapped error and applies nothing; a leader's SyncGroup makes the group
Stable, and its members get their assignments, only once the group's
metadata is committed, and a failed write sends the group back to
rebalancing. Then the same rules on a coordinator driven alone, for what
may happen while a write is in flight (a member leaves, offsets are
deleted, two commits of one partition).
"""

from __future__ import annotations

import itertools
import struct
import threading
import time
from contextlib import closing

import pytest
import trio
from confluent_kafka import Consumer
from confluent_kafka import TopicPartition as CTP
from confluent_kafka.admin import AdminClient, NewTopic

from pybroker.broker import Broker
from pybroker.config import BrokerConfig
from pybroker.groups.classic import COMPLETING, PREPARING, STABLE
from pybroker.groups.coordinator import GroupCoordinator
from pybroker.groups.offsets import OffsetAndMetadata
from pybroker.protocol.error_codes import ErrorCode as E
from pybroker.protocol.errors import KafkaError
from pybroker.protocol.messages.consumer_group_heartbeat_request import ConsumerGroupHeartbeatRequest
from pybroker.protocol.messages.describe_groups_request import DescribeGroupsRequest
from pybroker.protocol.messages.join_group_request import JoinGroupRequest, JoinGroupRequestProtocol
from pybroker.protocol.messages.offset_commit_request import (
    OffsetCommitRequest,
    OffsetCommitRequestPartition,
    OffsetCommitRequestTopic,
)
from pybroker.protocol.messages.offset_fetch_request import OffsetFetchRequest, OffsetFetchRequestTopic
from pybroker.protocol.messages.sync_group_request import SyncGroupRequest, SyncGroupRequestAssignment
from pybroker.protocol.registry import ApiKey
from pybroker.testing import running_broker
from tests.broker.wire import Wire

from .committing import commit_writes

DEADLINE = 20
_ids = itertools.count()
_correlation = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_ids)}-{time.monotonic_ns() % 10**9}"


def subscription(*topics: str) -> bytes:
    out = struct.pack(">hi", 0, len(topics))
    for t in topics:
        out += struct.pack(">h", len(t)) + t.encode()
    return out + b"\xff\xff\xff\xff"


def wait_for(predicate, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


# == on a running broker ===================================================================


class Gate:
    """Holds the coordinator's "until committed" until opened; the writes
    then complete as the replica layer says, or fail with ``failure``."""

    def __init__(self, rb):
        self.rb = rb
        self.replicas = rb.broker.groups.writer.replicas
        self.real = self.replicas.until_committed
        self.held = 0  # writes waiting at the gate
        self.failure: E | None = None
        self.event = None

    def _call(self, fn):
        return trio.from_thread.run_sync(fn, trio_token=self.rb.token)

    def close(self, failure: E | None = None) -> None:
        def install():
            self.event = trio.Event()
            self.failure = failure
            self.replicas.until_committed = self.until_committed

        self._call(install)

    def open(self) -> None:
        self._call(lambda: self.event.set())

    def restore(self) -> None:
        def uninstall():
            self.replicas.__dict__.pop("until_committed", None)
            if self.event is not None:
                self.event.set()

        self._call(uninstall)

    async def until_committed(self, appended, timeout_ms=None):
        self.held += len(appended)
        await self.event.wait()
        failed = await self.real(appended, timeout_ms)
        if self.failure is not None:
            failed = {a: KafkaError(self.failure) for a in appended}
        self.held -= len(appended)
        return failed


@pytest.fixture(scope="module")
def kafka():
    with running_broker({"offsets.topic.num.partitions": "2", "group.initial.rebalance.delay.ms": "0"}) as rb:
        yield rb


@pytest.fixture
def gate(kafka):
    g = Gate(kafka)
    yield g
    g.restore()


def create_topic(bootstrap: str, name: str, partitions: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(DEADLINE)


def call(wire, api_key, version, request):
    wire.send(request, version, next(_correlation))
    return wire.receive(api_key, version)[1]


def commit_request(group, topic, offset, generation=-1, member_id=""):
    return OffsetCommitRequest(
        group_id=group, generation_id_or_member_epoch=generation, member_id=member_id,
        topics=[OffsetCommitRequestTopic(name=topic, partitions=[
            OffsetCommitRequestPartition(partition_index=0, committed_offset=offset, committed_metadata="")
        ])],
    )


def fetched(wire, group, topic, require_stable: bool = False) -> int:
    """The committed offset of partition 0, or with ``require_stable`` the
    partition's error code when it has one."""
    resp = call(wire, ApiKey.OFFSET_FETCH, 7, OffsetFetchRequest(
        group_id=group, require_stable=require_stable,
        topics=[OffsetFetchRequestTopic(name=topic, partition_indexes=[0])],
    ))
    assert resp.error_code == 0
    part = resp.topics[0].partitions[0]
    return part.error_code if require_stable and part.error_code else part.committed_offset


def described(wire, group) -> str:
    (desc,) = call(wire, ApiKey.DESCRIBE_GROUPS, 4, DescribeGroupsRequest(groups=[group])).groups
    return desc.group_state


def nothing_received(wire) -> bool:
    wire.sock.setblocking(False)
    try:
        return not wire.sock.recv(1, __import__("socket").MSG_PEEK)
    except BlockingIOError:
        return True
    finally:
        wire.sock.setblocking(True)
        wire.sock.settimeout(wire.timeout)


def test_a_commit_is_answered_and_visible_only_once_committed(kafka, gate):
    """confluent-kafka: the committer's commit() returns, and another
    consumer of the group reads the offset, only after the write completes.
    Meanwhile an OffsetFetch reads the old offset, or with require_stable
    (which librdkafka's committed() sets, and retries on) gets
    UNSTABLE_OFFSET_COMMIT, as Kafka answers for a commit still pending."""
    topic, group = unique("t"), unique("g")
    create_topic(kafka.bootstrap_servers, topic)
    config = {"bootstrap.servers": kafka.bootstrap_servers, "group.id": group, "enable.auto.commit": False}
    committer, reader = Consumer(config), Consumer(config)
    try:
        assert reader.committed([CTP(topic, 0)], timeout=DEADLINE)[0].offset < 0
        gate.close()
        outcome = {}

        def commit():
            try:
                outcome["result"] = committer.commit(offsets=[CTP(topic, 0, 42)], asynchronous=False)
            except Exception as exc:  # noqa: BLE001 - reported below
                outcome["error"] = exc

        thread = threading.Thread(target=commit)
        thread.start()
        wait_for(lambda: gate.held >= 1, "the commit to be written")
        # Written, not committed: nobody reads it and the committer waits.
        with closing(Wire(kafka.bootstrap_servers)) as wire:
            assert fetched(wire, group, topic) < 0
            assert fetched(wire, group, topic, require_stable=True) == E.UNSTABLE_OFFSET_COMMIT
        assert thread.is_alive() and not outcome
        gate.open()
        thread.join(DEADLINE)
        assert "error" not in outcome and outcome["result"][0].error is None
        assert reader.committed([CTP(topic, 0)], timeout=DEADLINE)[0].offset == 42
    finally:
        committer.close()
        reader.close()


@pytest.mark.parametrize("failure, answered", [
    (E.NOT_ENOUGH_REPLICAS, E.COORDINATOR_NOT_AVAILABLE),
    (E.KAFKA_STORAGE_ERROR, E.NOT_COORDINATOR),
    (E.NOT_LEADER_OR_FOLLOWER, E.NOT_COORDINATOR),
])
def test_a_failed_commit_answers_the_mapped_error_and_applies_nothing(kafka, gate, failure, answered):
    topic, group = unique("t"), unique("g")
    create_topic(kafka.bootstrap_servers, topic)
    with closing(Wire(kafka.bootstrap_servers)) as wire, closing(Wire(kafka.bootstrap_servers)) as other:
        call(wire, ApiKey.OFFSET_COMMIT, 8, commit_request(group, topic, 5))
        gate.close(failure)
        wire.send(commit_request(group, topic, 9), 8, next(_correlation))
        wait_for(lambda: gate.held >= 1, "the commit to be written")
        assert fetched(other, group, topic) == 5 and nothing_received(wire)
        gate.open()
        resp = wire.receive(ApiKey.OFFSET_COMMIT, 8)[1]
        assert resp.topics[0].partitions[0].error_code == answered
        assert fetched(other, group, topic) == 5


def test_a_consumer_gets_its_assignment_once_the_group_is_committed(kafka, gate):
    """confluent-kafka: a subscribing consumer is assigned its partitions
    only after the group's metadata (with the assignment) is committed."""
    topic, group = unique("t"), unique("g")
    create_topic(kafka.bootstrap_servers, topic, 2)
    consumer = Consumer({"bootstrap.servers": kafka.bootstrap_servers, "group.id": group,
                         "session.timeout.ms": 30_000, "enable.auto.commit": False})
    try:
        gate.close()
        consumer.subscribe([topic])
        deadline = time.monotonic() + DEADLINE
        while gate.held < 1:
            assert time.monotonic() < deadline, "the leader's SyncGroup never reached the coordinator"
            consumer.poll(0.05)
        consumer.poll(0.2)
        assert consumer.assignment() == []  # the SyncGroup is waiting for the write
        gate.open()
        while not consumer.assignment():
            assert time.monotonic() < deadline, "no assignment after the write completed"
            consumer.poll(0.05)
        assert sorted(tp.partition for tp in consumer.assignment()) == [0, 1]
    finally:
        consumer.close()


def join_and_sync(kafka, gate, failure=None):
    """One member through JoinGroup, then its SyncGroup held at the gate:
    (wire, other wire, group, the held SyncGroup's correlation id)."""
    topic, group = unique("t"), unique("g")
    create_topic(kafka.bootstrap_servers, topic)
    wire, other = Wire(kafka.bootstrap_servers), Wire(kafka.bootstrap_servers)
    joined = call(wire, ApiKey.JOIN_GROUP, 3, JoinGroupRequest(
        group_id=group, session_timeout_ms=30_000, rebalance_timeout_ms=60_000, protocol_type="consumer",
        protocols=[JoinGroupRequestProtocol(name="range", metadata=subscription(topic))],
    ))
    assert joined.error_code == 0 and joined.leader == joined.member_id
    gate.close(failure)
    wire.send(SyncGroupRequest(
        group_id=group, generation_id=joined.generation_id, member_id=joined.member_id,
        assignments=[SyncGroupRequestAssignment(member_id=joined.member_id, assignment=b"ASSIGNED")],
    ), 3, next(_correlation))
    wait_for(lambda: gate.held >= 1, "the group's metadata to be written")
    return wire, other, group


def test_sync_group_completes_when_the_assignment_is_committed(kafka, gate):
    wire, other, group = join_and_sync(kafka, gate)
    with closing(wire), closing(other):
        assert described(other, group) == COMPLETING and nothing_received(wire)
        gate.open()
        resp = wire.receive(ApiKey.SYNC_GROUP, 3)[1]
        assert (resp.error_code, resp.assignment) == (0, b"ASSIGNED")
        assert described(other, group) == STABLE


def test_a_failed_sync_answers_the_mapped_error_and_rebalances(kafka, gate):
    wire, other, group = join_and_sync(kafka, gate, E.NOT_LEADER_OR_FOLLOWER)
    with closing(wire), closing(other):
        gate.open()
        resp = wire.receive(ApiKey.SYNC_GROUP, 3)[1]
        assert (resp.error_code, resp.assignment) == (E.NOT_COORDINATOR, b"")
        assert described(other, group) == PREPARING


def test_a_consumer_group_heartbeat_is_answered_once_committed(kafka, gate):
    topic, group = unique("t"), unique("g")
    create_topic(kafka.bootstrap_servers, topic)
    with closing(Wire(kafka.bootstrap_servers)) as wire:
        gate.close()
        wire.send(ConsumerGroupHeartbeatRequest(
            group_id=group, member_id="m-1", member_epoch=0, rebalance_timeout_ms=30_000,
            subscribed_topic_names=[topic], topic_partitions=[],
        ), 0, next(_correlation))
        wait_for(lambda: gate.held >= 1, "the group's records to be written")
        assert nothing_received(wire)
        gate.open()
        resp = wire.receive(ApiKey.CONSUMER_GROUP_HEARTBEAT, 0)[1]
        assert resp.error_code == 0 and resp.member_epoch == 1


# == a coordinator alone: what may happen while a write is in flight ======================


class Held:
    """Replicas whose writes complete only when the test commits them
    (``commit_writes``), failing with ``failure`` if set."""

    def __init__(self, real):
        self.real = real
        self.failure: E | None = None

    def partition(self, topic, index):
        return self.real.partition(topic, index)

    def append(self, *args, **kwargs):
        return self.real.append(*args, **kwargs)

    async def until_committed(self, appended, timeout_ms=None):
        failed = await self.real.until_committed(appended, timeout_ms)
        if self.failure is not None:
            failed = {a: KafkaError(self.failure) for a in appended}
        return failed


@pytest.fixture
def node(tmp_path):
    config = BrokerConfig({
        "log.dirs": str(tmp_path), "listeners": "PLAINTEXT://127.0.0.1:0",
        "offsets.topic.num.partitions": "1", "group.initial.rebalance.delay.ms": "0",
    })
    broker = Broker(config)
    broker.topics.create_topic("t", 2)
    services = broker.group_services()
    services["replicas"] = Held(services["replicas"])
    coord = GroupCoordinator(**services)
    coord.broker = broker
    try:
        yield coord
    finally:
        broker.logs.close()


def settle(coord):
    commit_writes(coord.broker, coord)


def leader_synced(coord, now=0):
    """A two-member group whose leader has sent its SyncGroup (in flight)."""
    group = coord.get_or_create("g", now)
    joins, syncs = {}, {}
    for name in ("a", "b"):
        coord.join(
            group, now, member_id="", instance_id=None, client_id=name, client_host="/h", session_timeout=10_000,
            rebalance_timeout=10_000, protocol_type="consumer", protocols=[("range", subscription("t"))],
            require_known_member_id=False, supports_skip_assignment=False,
            callback=lambda r, name=name: joins.__setitem__(name, r),
        )
    group.tick(now)
    group.tick(now)  # the (zero) initial delay, then the join phase, end
    assert group.state == COMPLETING
    ids = {name: r.member_id for name, r in joins.items()}
    leader = next(n for n, m in ids.items() if m == group.leader_id)
    follower = next(n for n in ids if n != leader)
    for name in (follower, leader):
        result = coord.sync(
            group, now, member_id=ids[name], instance_id=None, generation=1, protocol_type=None, protocol_name=None,
            assignments={ids[leader]: b"L", ids[follower]: b"F"} if name == leader else {},
            callback=lambda r, name=name: syncs.__setitem__(name, r),
        )
        assert result is None
    return group, ids, syncs, leader, follower


def test_sync_waits_and_a_member_leaving_meanwhile_wins(node):
    group, ids, syncs, leader, follower = leader_synced(node)
    assert group.state == COMPLETING and not syncs
    assert all(m.assignment == b"" for m in group.members.values())
    # The follower leaves while the assignment is being written: the group
    # rebalances, the leader's SyncGroup is answered so, and the write,
    # when it completes, changes nothing.
    group.leave(1, ids[follower], None)
    assert group.state == PREPARING and syncs[leader].error == E.REBALANCE_IN_PROGRESS
    assert syncs[follower].error == E.UNKNOWN_MEMBER_ID
    answered = dict(syncs)
    settle(node)
    assert group.state == PREPARING and group.members[ids[leader]].assignment == b""
    assert syncs == answered  # nobody answered twice


def test_sync_completes_every_member_once_committed(node):
    group, _ids, syncs, leader, follower = leader_synced(node)
    settle(node)
    assert group.state == STABLE
    assert {n: (r.error, r.assignment) for n, r in syncs.items()} == {leader: (E.NONE, b"L"), follower: (E.NONE, b"F")}


def test_a_failed_sync_write_rebalances(node):
    group, ids, syncs, _leader, _follower = leader_synced(node)
    node.replicas.failure = E.NOT_ENOUGH_REPLICAS_AFTER_APPEND
    settle(node)
    assert group.state == PREPARING
    assert {n: r.error for n, r in syncs.items()} == dict.fromkeys(ids, E.COORDINATOR_NOT_AVAILABLE)


def test_pending_commits_deleted_meanwhile_are_not_applied(node):
    node.get_or_create("g", 0)
    done = node.offsets.commit("g", {("t", 0): OffsetAndMetadata(5), ("t", 1): OffsetAndMetadata(6)}, 0)
    assert not done.done and node.offsets.fetch("g") == [] and node.offsets.has_offsets("g")
    removed, _ = node.offsets.delete_offsets("g", [("t", 0)], 1)
    assert removed == []  # nothing committed yet; the pending commit is dropped
    settle(node)
    assert done.result == {("t", 0): E.NONE, ("t", 1): E.NONE}
    assert [(t, p, o.offset) for t, p, o in node.offsets.fetch("g")] == [("t", 1, 6)]
    assert not node.offsets.pending


def test_the_later_of_two_commits_of_a_partition_wins(node):
    node.get_or_create("g", 0)
    first = node.offsets.commit("g", {("t", 0): OffsetAndMetadata(5)}, 0)
    second = node.offsets.commit("g", {("t", 0): OffsetAndMetadata(7)}, 0)
    settle(node)
    assert first.result == second.result == {("t", 0): E.NONE}
    assert node.offsets.fetch("g", [("t", 0)])[0][2].offset == 7 and not node.offsets.pending


def test_a_failed_commit_applies_nothing(node):
    node.get_or_create("g", 0)
    node.replicas.failure = E.REQUEST_TIMED_OUT
    done = node.offsets.commit("g", {("t", 0): OffsetAndMetadata(5)}, 0)
    settle(node)
    assert done.result == {("t", 0): E.REQUEST_TIMED_OUT} and node.offsets.fetch("g") == []
    assert not node.offsets.pending


def test_requests_for_a_partition_being_loaded_or_not_ours(node):
    node.ensure_offsets_topic()
    assert node.status("g") == E.NONE
    node.partitions[0] = "loading"
    assert node.status("g") == E.COORDINATOR_LOAD_IN_PROGRESS and node.loading
    node.unload_partition(0)
    assert node.status("g") == E.NOT_COORDINATOR
    node.load_partition(0, 0)
    assert node.status("g") == E.NONE and not node.loading
