"""Committed offsets and group administration.

Two layers. The store (pybroker/groups/offsets.py) runs on a real broker's
storage with explicit time: what lands in __consumer_offsets, what a
reopened broker loads back, retention. Everything a client can observe is
then checked through real clients over TCP — kafka-python, confluent-kafka
(librdkafka) and, for version details no client lets us choose, the raw
wire: standalone commits read back by a new consumer, across restarts
(graceful and kill -9), metadata limits, list/describe/delete of simple and
live consumer groups, OffsetDelete.
"""

from __future__ import annotations

import struct
import time
from contextlib import closing
from pathlib import Path

import pytest
import trio
from confluent_kafka import Consumer, KafkaError, KafkaException
from confluent_kafka import TopicPartition as CTP
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaAdminClient, KafkaConsumer
from kafka import TopicPartition as KTP
from kafka.errors import GroupIdNotFoundError, OffsetMetadataTooLargeError
from kafka.structs import OffsetAndMetadata as KOffset

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.delete_groups_request import DeleteGroupsRequest
from pybroker.protocol.messages.describe_groups_request import DescribeGroupsRequest
from pybroker.protocol.messages.list_groups_request import ListGroupsRequest
from pybroker.protocol.messages.offset_commit_request import (
    OffsetCommitRequest,
    OffsetCommitRequestPartition,
    OffsetCommitRequestTopic,
)
from pybroker.protocol.messages.offset_delete_request import (
    OffsetDeleteRequest,
    OffsetDeleteRequestPartition,
    OffsetDeleteRequestTopic,
)
from pybroker.protocol.messages.offset_fetch_request import (
    OffsetFetchRequest,
    OffsetFetchRequestGroup,
    OffsetFetchRequestTopic,
    OffsetFetchRequestTopics,
)
from pybroker.protocol.records import NewRecord, build_batch, build_control_batch, split_batches
from pybroker.protocol.registry import ApiKey
from pybroker.broker import Broker
from pybroker.config import BrokerConfig
from pybroker.groups import OFFSETS_TOPIC
from pybroker.groups.classic import COMPLETING, EMPTY, STABLE
from pybroker.groups.coordinator import GroupCoordinator
from pybroker.groups.offsets import OffsetAndMetadata
from pybroker.groups.records import (
    GroupMetadataKey,
    OffsetCommitKey,
    decode_group_value,
    decode_key,
    decode_offset_value,
    encode_group_key,
    encode_offset_key,
    encode_offset_value,
)
from pybroker.groups.records import OffsetCommitValue as Value
from pybroker.testing import running_broker
from tests.broker.wire import Wire

from .committing import commit_writes

E = ErrorCode
DEADLINE = 60.0
MINUTE = 60_000
DAY = 24 * 60 * MINUTE


def subscription(*topics: str) -> bytes:
    """A ConsumerProtocolSubscription v0: the topics, null user data."""
    out = struct.pack(">hi", 0, len(topics))
    for t in topics:
        out += struct.pack(">h", len(t)) + t.encode()
    return out + b"\xff\xff\xff\xff"


# == the store, on a broker's real storage =============================================


class Store:
    """A broker's storage and a coordinator, not serving: time is ours."""

    def __init__(self, data: Path, props: dict | None = None):
        settings = {
            "log.dirs": str(data),
            "listeners": "PLAINTEXT://127.0.0.1:0",
            "offsets.topic.num.partitions": "3",
            "group.initial.rebalance.delay.ms": "0",
            "offsets.retention.minutes": "60",
        }
        settings.update(props or {})
        self.config = BrokerConfig(settings)
        self.data = data
        self.broker = Broker(self.config)
        self.coord = GroupCoordinator(**self.broker.group_services())
        self.offsets = self.coord.offsets

    def settle(self) -> None:
        """Let every write made so far be committed (and take effect)."""
        commit_writes(self.broker, self.coord)

    def commit_offsets(self, group_id, entries, now) -> dict:
        done = self.offsets.commit(group_id, entries, now)
        self.settle()
        return done.result

    def delete_offsets(self, group_id, partitions, now=None) -> list:
        removed, _ = self.offsets.delete_offsets(group_id, partitions, now)
        self.settle()
        return removed

    def delete_group(self, group_id, generation, now=None):
        done = self.offsets.delete_group(group_id, generation, now)
        self.settle()
        return done.result

    def write_group(self, group):
        errors = []
        self.offsets.write_group(group, None, None, lambda error, now: errors.append(error))
        self.settle()
        (error,) = errors
        return error

    def topic(self, name: str, partitions: int = 2) -> None:
        self.broker.topics.create_topic(name, partitions)

    def reopen(self) -> dict:
        """Close, open again, load; rebuild the groups as the broker does."""
        self.broker.logs.close()
        self.broker = Broker(self.config)
        self.coord = GroupCoordinator(**self.broker.group_services())
        self.offsets = self.coord.offsets
        return self.coord.load(5_000).classic

    def batches(self, group_id: str):
        part = self.coord.partition_of(group_id)
        data = part.log.read(part.log.log_start_offset, 1 << 20).data if part.log.log_end_offset else b""
        return split_batches(data)[0]

    def close(self) -> None:
        self.broker.logs.close()


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "data")
    s.topic("t")
    s.topic("u")
    yield s
    s.close()


def commit(store, group_id, now, **offsets):
    """commit(store, "g", now, t0=5, u1=7): offsets of t-0 and u-1."""
    store.coord.get_or_create(group_id, now)
    entries = {(k[0], int(k[1:])): OffsetAndMetadata(v, commit_timestamp=now) for k, v in offsets.items()}
    return store.commit_offsets(group_id, entries, now)


def stable_group(store, group_id, now, topics=("t",), protocol_type="consumer", instance="inst-1"):
    """A one-member group driven to Stable through the real state machine
    (its SyncGroup writes the group metadata through the store)."""
    group = store.coord.get_or_create(group_id, now)
    seen = []
    group.join(
        now,
        member_id="",
        instance_id=instance,
        client_id="cid",
        client_host="/10.0.0.1",
        session_timeout=10_000,
        rebalance_timeout=20_000,
        protocol_type=protocol_type,
        protocols=[("range", subscription(*topics))],
        require_known_member_id=False,
        supports_skip_assignment=False,
        callback=seen.append,
    )
    group.tick(now)  # the (zero) initial rebalance delay ends
    assert group.state == COMPLETING, group.state
    (joined,) = seen
    group.sync(
        now,
        member_id=joined.member_id,
        instance_id=instance,
        generation=joined.generation,
        protocol_type=None,
        protocol_name=None,
        assignments={joined.member_id: b"ASSIGNMENT"},
        callback=seen.append,
    )
    store.settle()  # the assignment takes effect once written
    assert group.state == STABLE
    return group, joined.member_id


def test_commit_writes_one_batch_and_updates_the_cache(store):
    results = commit(store, "g", 1_000, t0=5, t1=6, u0=7)
    assert results == {("t", 0): E.NONE, ("t", 1): E.NONE, ("u", 0): E.NONE}
    (batch,) = store.batches("g")
    assert batch.magic == 2 and batch.record_count == 3 and batch.compression == 0 and batch.timestamp_type == 0
    records = list(batch.records())
    assert [r.timestamp for r in records] == [1_000] * 3
    assert [decode_key(r.key) for r in records] == [
        OffsetCommitKey("g", "t", 0), OffsetCommitKey("g", "t", 1), OffsetCommitKey("g", "u", 0)
    ]
    assert decode_offset_value(records[2].value) == Value(7, -1, "", 1_000)
    assert records[0].key[:2] == b"\x00\x01" and records[0].value[:2] == b"\x00\x03"
    assert [(t, p, o.offset) for t, p, o in store.offsets.fetch("g")] == [("t", 0, 5), ("t", 1, 6), ("u", 0, 7)]
    assert [(t, p, o and o.offset) for t, p, o in store.offsets.fetch("g", [("u", 0), ("u", 1)])] == [
        ("u", 0, 7), ("u", 1, None)
    ]


def test_metadata_limit_counts_utf16_units_and_fails_only_its_partition(store):
    store.coord.get_or_create("g", 0)
    entries = {
        ("t", 0): OffsetAndMetadata(1, metadata="\U0001f600" * 2048),  # 4096 UTF-16 units: fits
        ("t", 1): OffsetAndMetadata(2, metadata="\U0001f600" * 2049),
        ("u", 0): OffsetAndMetadata(3, metadata="x" * 4097),
        ("u", 1): OffsetAndMetadata(4, metadata="\u00e9" * 4096),  # 8192 UTF-8 bytes, 4096 units
    }
    assert store.commit_offsets("g", entries, 0) == {
        ("t", 0): E.NONE,
        ("t", 1): E.OFFSET_METADATA_TOO_LARGE,
        ("u", 0): E.OFFSET_METADATA_TOO_LARGE,
        ("u", 1): E.NONE,
    }
    assert {(t, p) for t, p, _ in store.offsets.fetch("g")} == {("t", 0), ("u", 1)}
    (batch,) = store.batches("g")
    assert batch.record_count == 2


def test_everything_too_large_writes_nothing(store):
    store.coord.get_or_create("g", 0)
    results = store.commit_offsets("g", {("t", 0): OffsetAndMetadata(1, metadata="x" * 5000)}, 0)
    assert results == {("t", 0): E.OFFSET_METADATA_TOO_LARGE}
    assert store.batches("g") == [] and store.offsets.fetch("g") == []


def test_offsets_and_groups_survive_reopening(store):
    commit(store, "simple", 100, t0=1, t1=2)
    commit(store, "simple", 200, t0=10)  # later wins
    store.delete_offsets("simple", [("t", 1)], 300)
    _, member_id = stable_group(store, "live", 400)
    store.commit_offsets("live", {("t", 0): OffsetAndMetadata(42, 3, "meta", 400)}, 400)
    values = store.reopen()

    assert [(t, p, o.offset) for t, p, o in store.offsets.fetch("simple")] == [("t", 0, 10)]
    assert store.offsets.fetch("live") == [("t", 0, OffsetAndMetadata(42, 3, "meta", 400))]
    assert values["simple"].generation == 0 and values["simple"].members == []
    simple = store.coord.get("simple")
    assert simple.state == EMPTY and simple.protocol_type is None
    live = store.coord.get("live")
    assert (live.state, live.generation, live.protocol_type, live.protocol_name) == (STABLE, 1, "consumer", "range")
    assert live.leader_id == member_id and live.statics == {"inst-1": member_id}
    member = live.members[member_id]
    assert (member.client_id, member.client_host, member.session_timeout, member.rebalance_timeout) == (
        "cid", "/10.0.0.1", 10_000, 20_000
    )
    assert member.assignment == b"ASSIGNMENT" and member.metadata("range") == subscription("t")
    assert member.deadline == 5_000 + 10_000
    assert live.state_timestamp == 400


def test_group_metadata_record_is_value_v3(store):
    stable_group(store, "g", 7)
    batches = store.batches("g")
    (record,) = list(batches[-1].records())
    assert decode_key(record.key) == GroupMetadataKey("g")
    assert record.value[:2] == b"\x00\x03"
    value = decode_group_value(record.value)
    assert (value.protocol_type, value.generation, value.protocol, value.current_state_timestamp) == ("consumer", 1, "range", 7)
    assert [(m.group_instance_id, m.subscription, m.assignment) for m in value.members] == [
        ("inst-1", subscription("t"), b"ASSIGNMENT")
    ]


def lay_down(part, records, now: int) -> None:
    """Write batches to the offsets topic's log as they are, as the
    coordinator or (later) transaction markers would have left them."""
    part.log.append(records, leader_epoch=part.leader_epoch, now=now, validate=False)
    part.log.set_high_watermark(part.log.log_end_offset)


def test_load_skips_foreign_records_and_honours_transactions(store):
    part = store.coord.partition_of("g")
    pid = 77
    good = NewRecord(encode_offset_key("g", "t", 0), encode_offset_value(Value(5, -1, "", 1)))
    foreign = NewRecord(b"\x00\x05" + b"\x00\x01g", b"\x00\x00whatever")  # KIP-848 record type
    garbage = NewRecord(encode_offset_key("g", "t", 1), b"\x00\x03\x00")
    keyless = NewRecord(None, b"x")
    lay_down(part, build_batch([good, foreign, garbage, keyless], base_timestamp=1), 1)
    txn = NewRecord(encode_offset_key("g", "u", 0), encode_offset_value(Value(9, -1, "", 1)))
    lay_down(part, build_batch([txn], producer_id=pid, producer_epoch=0, base_sequence=0, is_transactional=True), 1)
    aborted = NewRecord(encode_offset_key("g", "u", 1), encode_offset_value(Value(9, -1, "", 1)))
    lay_down(part, build_batch([aborted], producer_id=pid + 1, producer_epoch=0, base_sequence=0, is_transactional=True), 1)
    lay_down(part, build_control_batch(pid, 0, True, 0, 1), 1)
    lay_down(part, build_control_batch(pid + 1, 0, False, 0, 1), 1)
    pending = NewRecord(encode_offset_key("g", "u", 2), encode_offset_value(Value(9, -1, "", 1)))
    lay_down(part, build_batch([pending], producer_id=pid + 2, producer_epoch=0, base_sequence=0, is_transactional=True), 1)
    store.reopen()
    assert [(t, p, o.offset) for t, p, o in store.offsets.fetch("g")] == [("t", 0, 5), ("u", 0, 9)]


def test_group_tombstone_removes_the_group_but_not_its_offsets_on_load(store):
    commit(store, "g", 1, t0=3)
    part = store.coord.partition_of("g")
    lay_down(part, build_batch([NewRecord(encode_group_key("g"), None)], base_timestamp=2), 2)
    values = store.reopen()
    assert values["g"].generation == 0  # rebuilt from its offsets, as Kafka does
    assert store.offsets.fetch("g")[0][2].offset == 3


@pytest.mark.parametrize("generation", [0, 1])
def test_delete_group_writes_offset_and_group_tombstones_in_one_batch(store, generation):
    commit(store, "g", 1, t0=3, u1=4)
    before = len(store.batches("g"))
    assert store.delete_group("g", generation, 2) == E.NONE
    batches = store.batches("g")
    assert len(batches) == before + 1
    records = list(batches[-1].records())
    expected = [OffsetCommitKey("g", "t", 0), OffsetCommitKey("g", "u", 1)] + ([GroupMetadataKey("g")] if generation else [])
    assert [decode_key(r.key) for r in records] == expected
    assert all(r.value is None for r in records)
    assert store.offsets.fetch("g") == []
    store.coord.remove("g")
    assert "g" not in store.reopen()


def test_delete_offsets_of_an_empty_group_kills_it_when_none_are_left(store):
    commit(store, "g", 1, t0=3, t1=4)
    assert store.delete_offsets("g", [("t", 0), ("u", 0)], 2) == [("t", 0)]
    assert store.coord.get("g") is not None
    assert store.delete_offsets("g", [("t", 1)], 3) == [("t", 1)]
    assert store.coord.get("g") is None


# -- retention ---------------------------------------------------------------------------


def test_simple_group_offsets_expire_by_commit_time(store):
    commit(store, "g", 0, t0=1)
    commit(store, "g", 30 * MINUTE, t1=2)
    assert store.offsets.expire(60 * MINUTE - 1) == 0
    assert store.offsets.expire(60 * MINUTE) == 1
    assert [(t, p) for t, p, _ in store.offsets.fetch("g")] == [("t", 1)]
    assert store.coord.get("g") is not None
    assert store.offsets.expire(90 * MINUTE) == 1
    assert store.coord.get("g") is None  # empty and nothing left: removed
    store.reopen()
    assert store.offsets.fetch("g") == [] and store.coord.get("g") is None


def test_empty_consumer_group_expires_from_when_it_became_empty(store):
    group, member_id = stable_group(store, "g", 0)
    store.commit_offsets("g", {("t", 0): OffsetAndMetadata(1, commit_timestamp=0)}, 0)
    assert group.leave(100 * MINUTE, member_id, "inst-1") == E.NONE
    assert group.state == EMPTY and group.state_timestamp == 100 * MINUTE
    assert store.offsets.expire(159 * MINUTE) == 0  # old commit, but empty for only 59 minutes
    assert store.offsets.expire(160 * MINUTE) == 1
    assert store.coord.get("g") is None
    batches = store.batches("g")
    assert [decode_key(r.key) for r in batches[-1].records()] == [OffsetCommitKey("g", "t", 0), GroupMetadataKey("g")]


def test_stable_consumer_group_expires_only_unsubscribed_topics(store):
    stable_group(store, "g", 0, topics=("t",))
    store.commit_offsets("g", {tp: OffsetAndMetadata(1, commit_timestamp=0) for tp in [("t", 0), ("u", 0)]}, 0)
    assert store.offsets.expire(10 * DAY) == 1
    assert [(t, p) for t, p, _ in store.offsets.fetch("g")] == [("t", 0)]
    assert store.coord.get("g").state == STABLE


def test_stable_group_of_another_protocol_type_keeps_everything(store):
    stable_group(store, "g", 0, protocol_type="connect")
    store.commit_offsets("g", {("u", 0): OffsetAndMetadata(1, commit_timestamp=0, expire_timestamp=5)}, 0)
    assert store.offsets.expire(10 * DAY) == 0


def test_explicit_expire_timestamp_wins(store):
    store.coord.get_or_create("g", 0)
    store.commit_offsets(
        "g",
        {
            ("t", 0): OffsetAndMetadata(1, commit_timestamp=0, expire_timestamp=5 * MINUTE),
            ("t", 1): OffsetAndMetadata(2, commit_timestamp=0, expire_timestamp=500 * MINUTE),
        },
        0,
    )
    store.reopen()  # the expire timestamp is stored (value v1) and read back
    assert store.offsets.expire(5 * MINUTE) == 1
    assert store.offsets.expire(499 * MINUTE) == 0
    assert store.offsets.expire(500 * MINUTE) == 1


def test_empty_groups_without_offsets_are_removed_with_a_tombstone_only_if_they_had_a_generation(store):
    store.coord.get_or_create("never", 0)
    group, member_id = stable_group(store, "was", 0)
    group.leave(1, member_id, "inst-1")
    store.offsets.expire(2)
    assert store.coord.get("never") is None and store.coord.get("was") is None
    keys = [decode_key(r.key) for b in store.batches("never") + store.batches("was") for r in b.records()]
    assert GroupMetadataKey("never") not in keys
    assert decode_key(list(store.batches("was")[-1].records())[-1].key) == GroupMetadataKey("was")


def test_an_empty_group_with_a_member_about_to_join_is_kept(store):
    group = store.coord.get_or_create("g", 0)
    result = group.join(
        0, member_id="", instance_id=None, client_id="c", client_host="/h", session_timeout=10_000,
        rebalance_timeout=10_000, protocol_type="consumer", protocols=[("range", subscription("t"))],
        require_known_member_id=True, supports_skip_assignment=False, callback=lambda r: None,
    )
    assert result.error == E.MEMBER_ID_REQUIRED and group.state == EMPTY
    store.offsets.expire(1)
    assert store.coord.get("g") is group


# -- failures -----------------------------------------------------------------------------


def test_oversized_batches_map_to_coordinator_errors(store):
    store.coord.ensure_offsets_topic()
    store.broker.topics.set_topic_configs(OFFSETS_TOPIC, {"cleanup.policy": "compact", "max.message.bytes": "50"})
    store.coord.get_or_create("g", 0)
    many = {("t", 0): OffsetAndMetadata(1, metadata="m" * 200)}
    assert store.commit_offsets("g", many, 0) == {("t", 0): E.INVALID_COMMIT_OFFSET_SIZE}
    assert store.offsets.fetch("g") == []
    group = store.coord.get("g")
    assert store.write_group(group) == E.UNKNOWN_SERVER_ERROR


def test_storage_errors_map_to_not_coordinator(store, monkeypatch):
    from pybroker.storage.log import KafkaStorageError, PartitionLog

    def broken(self, *args, **kwargs):
        # What storage raises when a write fails (its directory goes offline).
        raise KafkaStorageError(5, "Input/output error")

    monkeypatch.setattr(PartitionLog, "append", broken)
    monkeypatch.setattr(PartitionLog, "append_batches", broken)
    monkeypatch.setattr(PartitionLog, "append_as_leader", broken)
    store.coord.get_or_create("g", 0)
    assert store.commit_offsets("g", {("t", 0): OffsetAndMetadata(1)}, 0) == {("t", 0): E.NOT_COORDINATOR}
    assert store.offsets.fetch("g") == []
    assert store.write_group(store.coord.get("g")) == E.NOT_COORDINATOR
    assert store.delete_group("g", 1) == E.KAFKA_STORAGE_ERROR  # logged, never raised


# == real clients ===========================================================================

BROKER_PROPS = {"offsets.topic.num.partitions": "4", "group.initial.rebalance.delay.ms": "0"}


@pytest.fixture(scope="module")
def kafka():
    with running_broker(BROKER_PROPS) as rb:
        yield rb


_names = iter(range(10**6))


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_names)}-{time.monotonic_ns() % 10**9}"


def create_topic(bootstrap: str, name: str, partitions: int = 2) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(DEADLINE)


def kp_commit(bootstrap, group_id, offsets: dict[KTP, KOffset]) -> None:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False)
    try:
        consumer.assign(list(offsets))
        consumer.commit(offsets)
    finally:
        consumer.close()


def kp_committed(bootstrap, group_id, tps) -> dict:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False)
    try:
        return {tp: consumer.committed(tp, metadata=True) for tp in tps}
    finally:
        consumer.close()


def ck_commit(bootstrap, group_id, offsets: list[CTP]) -> list[CTP]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group_id, "enable.auto.commit": False})
    try:
        consumer.assign(offsets)
        return consumer.commit(offsets=offsets, asynchronous=False)
    finally:
        consumer.close()


def ck_committed(bootstrap, group_id, tps: list[CTP]) -> list[CTP]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group_id})
    try:
        return consumer.committed(tps, timeout=DEADLINE)
    finally:
        consumer.close()


def test_kafka_python_standalone_commit_is_read_by_a_new_consumer(kafka):
    bs = kafka.bootstrap_servers
    topic, group = unique("t"), unique("g")
    create_topic(bs, topic)
    kp_commit(bs, group, {KTP(topic, 0): KOffset(17, "hello", -1), KTP(topic, 1): KOffset(3, "", -1)})
    got = kp_committed(bs, group, [KTP(topic, 0), KTP(topic, 1)])
    assert (got[KTP(topic, 0)].offset, got[KTP(topic, 0)].metadata) == (17, "hello")
    assert got[KTP(topic, 1)].offset == 3
    kp_commit(bs, group, {KTP(topic, 0): KOffset(18, "again", -1)})
    assert kp_committed(bs, group, [KTP(topic, 0)])[KTP(topic, 0)].offset == 18
    # Read back by the other client too (offset only: confluent-kafka's
    # binding reads the metadata as a NUL-terminated C string, which the
    # protocol's length-prefixed string is not, and so runs past its end).
    (tp0,) = ck_committed(bs, group, [CTP(topic, 0)])
    assert tp0.offset == 18


def test_confluent_standalone_commit_keeps_leader_epoch_and_metadata(kafka):
    bs = kafka.bootstrap_servers
    topic, group = unique("t"), unique("g")
    create_topic(bs, topic)
    done = ck_commit(bs, group, [CTP(topic, 0, 5, metadata="m0", leader_epoch=0), CTP(topic, 1, 9)])
    assert all(tp.error is None for tp in done)
    got = {tp.partition: tp for tp in ck_committed(bs, group, [CTP(topic, 0), CTP(topic, 1)])}
    assert (got[0].offset, got[0].metadata, got[0].leader_epoch) == (5, "m0", 0)
    assert got[1].offset == 9
    # confluent-kafka commits the metadata with its C string's NUL byte; it
    # is kept as sent, as Kafka keeps it.
    other = kp_committed(bs, group, [KTP(topic, 0), KTP(topic, 1)])
    assert (other[KTP(topic, 0)].offset, other[KTP(topic, 0)].metadata) == (5, "m0\x00")
    assert other[KTP(topic, 1)].offset == 9


def test_commit_to_unknown_partition_fails_only_that_partition(kafka):
    bs = kafka.bootstrap_servers
    topic, group = unique("t"), unique("g")
    create_topic(bs, topic, 1)
    with closing(Wire(bs)) as wire:
        resp = call(
            wire,
            ApiKey.OFFSET_COMMIT,
            8,
            OffsetCommitRequest(
                group_id=group,
                topics=[
                    OffsetCommitRequestTopic(name=topic, partitions=[part(0, 4), part(1, 4)]),
                    OffsetCommitRequestTopic(name="no-such-topic-" + group, partitions=[part(0, 1)]),
                ],
            ),
        )
    assert errors_of(resp) == {(topic, 0): 0, (topic, 1): E.UNKNOWN_TOPIC_OR_PARTITION, ("no-such-topic-" + group, 0): 3}
    assert kp_committed(bs, group, [KTP(topic, 0)])[KTP(topic, 0)].offset == 4


def test_offset_metadata_too_large_through_kafka_python(kafka):
    bs = kafka.bootstrap_servers
    topic, group = unique("t"), unique("g")
    create_topic(bs, topic)
    consumer = KafkaConsumer(bootstrap_servers=bs, group_id=group, enable_auto_commit=False)
    try:
        consumer.assign([KTP(topic, 0), KTP(topic, 1)])
        consumer.commit({KTP(topic, 0): KOffset(1, "x" * 4096, -1)})  # exactly the limit
        with pytest.raises(OffsetMetadataTooLargeError):
            consumer.commit({KTP(topic, 1): KOffset(2, "x" * 4097, -1)})
    finally:
        consumer.close()
    got = kp_committed(bs, group, [KTP(topic, 0), KTP(topic, 1)])
    assert got[KTP(topic, 0)].offset == 1 and got[KTP(topic, 1)] is None


@pytest.mark.parametrize("kill", [False, True], ids=["graceful", "kill-9"])
def test_offsets_survive_a_broker_restart(broker_process, kill):
    proc = broker_process(BROKER_PROPS)
    topic = "restart-topic"
    create_topic(proc.bootstrap, topic)
    kp_commit(proc.bootstrap, "kp-group", {KTP(topic, 0): KOffset(11, "kp", -1)})
    ck_commit(proc.bootstrap, "ck-group", [CTP(topic, 1, 22, metadata="ck")])
    kp_commit(proc.bootstrap, "kp-group", {KTP(topic, 0): KOffset(12, "kp2", -1)})
    proc.restart(kill=kill)
    got = kp_committed(proc.bootstrap, "kp-group", [KTP(topic, 0)])[KTP(topic, 0)]
    assert (got.offset, got.metadata) == (12, "kp2")
    (tp,) = ck_committed(proc.bootstrap, "ck-group", [CTP(topic, 1)])
    assert (tp.offset, tp.metadata) == (22, "ck")
    groups = {g["group_id"]: g for g in kp_admin(proc.bootstrap, lambda a: a.list_groups())}
    assert {"kp-group", "ck-group"} <= set(groups) and groups["kp-group"]["group_state"] == "Empty"


# -- group administration --------------------------------------------------------------------


def kp_admin(bootstrap, fn):
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return fn(admin)
    finally:
        admin.close()


def test_simple_group_list_describe_delete_with_kafka_python(kafka):
    bs = kafka.bootstrap_servers
    topic, group = unique("t"), unique("g")
    create_topic(bs, topic)
    kp_commit(bs, group, {KTP(topic, 0): KOffset(5, "", -1)})
    listed = {g["group_id"]: g for g in kp_admin(bs, lambda a: a.list_groups())}
    assert listed[group] == {"group_id": group, "protocol_type": "", "group_state": "Empty", "group_type": "classic"}
    assert group in {g["group_id"] for g in kp_admin(bs, lambda a: a.list_groups(states_filter=["empty"]))}
    assert group not in {g["group_id"] for g in kp_admin(bs, lambda a: a.list_groups(states_filter=["Stable"]))}
    desc = kp_admin(bs, lambda a: a.describe_groups([group]))[group]
    assert (desc["group_state"], desc["protocol_type"], desc["protocol_data"], desc["members"], desc["error"]) == (
        "Empty", "", "", [], None
    )
    assert kp_admin(bs, lambda a: a.delete_groups([group, group])) == {group: "OK"}
    assert group not in {g["group_id"] for g in kp_admin(bs, lambda a: a.list_groups())}
    assert kp_admin(bs, lambda a: a.describe_groups([group]))[group]["group_state"] == "Dead"
    assert kp_admin(bs, lambda a: a.delete_groups([group])) == {group: "GroupIdNotFoundError"}
    assert kp_committed(bs, group, [KTP(topic, 0)])[KTP(topic, 0)] is None


def test_simple_group_list_describe_delete_with_confluent(kafka):
    bs = kafka.bootstrap_servers
    topic, group = unique("t"), unique("g")
    create_topic(bs, topic)
    ck_commit(bs, group, [CTP(topic, 0, 5)])
    admin = AdminClient({"bootstrap.servers": bs})
    listed = {g.group_id: g for g in admin.list_consumer_groups().result(DEADLINE).valid}
    assert listed[group].is_simple_consumer_group and listed[group].state.name == "EMPTY"
    desc = admin.describe_consumer_groups([group])[group].result(DEADLINE)
    assert desc.state.name == "EMPTY" and desc.members == [] and desc.is_simple_consumer_group
    (offsets,) = admin.list_consumer_group_offsets([_group_request(group)]).values()
    assert [(tp.topic, tp.partition, tp.offset) for tp in offsets.result(DEADLINE).topic_partitions] == [(topic, 0, 5)]
    admin.delete_consumer_groups([group])[group].result(DEADLINE)
    assert group not in {g.group_id for g in admin.list_consumer_groups().result(DEADLINE).valid}
    with pytest.raises(KafkaException) as info:
        admin.delete_consumer_groups([group])[group].result(DEADLINE)
    assert info.value.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND
    (tp,) = ck_committed(bs, group, [CTP(topic, 0)])
    assert tp.offset < 0  # OFFSET_INVALID: nothing committed any more


def _group_request(group):
    from confluent_kafka import ConsumerGroupTopicPartitions

    return ConsumerGroupTopicPartitions(group)


def wait_for(predicate, what: str, timeout: float = DEADLINE, step=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if step is not None:
            step()
    raise AssertionError(f"timed out waiting for {what}")


def test_live_consumer_group_describe_delete_and_offset_delete(kafka):
    bs = kafka.bootstrap_servers
    topic, other, group = unique("t"), unique("o"), unique("g")
    create_topic(bs, topic)
    create_topic(bs, other, 1)
    consumer = KafkaConsumer(topic, bootstrap_servers=bs, group_id=group, enable_auto_commit=False, client_id="kp-live")
    try:
        # kafka-python joins on its first poll; a leader that has not read
        # the topic's metadata by then assigns nothing, and in about one run
        # of a hundred it did not rejoin within the deadline.
        wait_for(lambda: consumer.partitions_for_topic(topic), "the topic's metadata")
        wait_for(lambda: consumer.assignment(), "an assignment", step=lambda: consumer.poll(timeout_ms=100))
        consumer.commit({KTP(topic, 0): KOffset(3, "", -1), KTP(other, 0): KOffset(4, "", -1)})

        desc = kp_admin(bs, lambda a: a.describe_groups([group]))[group]
        assert (desc["group_state"], desc["protocol_type"], desc["protocol_data"]) == ("Stable", "consumer", "range")
        (member,) = desc["members"]
        assert (member["client_id"], member["client_host"]) == ("kp-live", "/127.0.0.1")
        assert member["member_metadata"]["topics"] == [topic]
        assert member["member_assignment"]["assigned_partitions"] == [{"topic": topic, "partitions": [0, 1]}]

        admin = AdminClient({"bootstrap.servers": bs})
        cdesc = admin.describe_consumer_groups([group])[group].result(DEADLINE)
        assert cdesc.state.name == "STABLE" and cdesc.partition_assignor == "range"
        (cmember,) = cdesc.members
        assert cmember.host == "/127.0.0.1" and {tp.partition for tp in cmember.assignment.topic_partitions} == {0, 1}
        listed = {g.group_id: g for g in admin.list_consumer_groups().result(DEADLINE).valid}
        assert listed[group].state.name == "STABLE" and not listed[group].is_simple_consumer_group

        assert kp_admin(bs, lambda a: a.delete_groups([group])) == {group: "NonEmptyGroupError"}
        with pytest.raises(KafkaException) as info:
            admin.delete_consumer_groups([group])[group].result(DEADLINE)
        assert info.value.args[0].code() == KafkaError.NON_EMPTY_GROUP

        # OffsetDelete: the subscribed topic is protected, the other is not.
        result = kp_admin(bs, lambda a: a.delete_group_offsets(group, [KTP(topic, 0), KTP(other, 0)]))
        assert {tp: err.__name__ for tp, err in result.items()} == {
            KTP(topic, 0): "GroupSubscribedToTopicError",
            KTP(other, 0): "NoError",
        }
        left = kp_admin(bs, lambda a: a.list_group_offsets(group))[group]
        assert {tp: o.offset for tp, o in left.items()} == {KTP(topic, 0): 3}
    finally:
        consumer.close()

    desc = wait_for(
        lambda: (d := kp_admin(bs, lambda a: a.describe_groups([group]))[group])["group_state"] == "Empty" and d,
        "the group to empty",
    )
    assert desc["protocol_type"] == "consumer" and desc["members"] == []
    assert kp_admin(bs, lambda a: a.delete_groups([group])) == {group: "OK"}
    assert kp_committed(bs, group, [KTP(topic, 0)])[KTP(topic, 0)] is None


def test_confluent_group_consumer_shows_up_stable(kafka):
    bs = kafka.bootstrap_servers
    topic, group = unique("t"), unique("g")
    create_topic(bs, topic)
    consumer = Consumer({"bootstrap.servers": bs, "group.id": group, "client.id": "ck-live"})
    try:
        consumer.subscribe([topic])
        wait_for(lambda: consumer.assignment(), "an assignment", step=lambda: consumer.poll(0.1))
        desc = kp_admin(bs, lambda a: a.describe_groups([group]))[group]
        assert (desc["group_state"], desc["protocol_type"]) == ("Stable", "consumer")
        (member,) = desc["members"]
        assert member["client_id"] == "ck-live" and member["member_metadata"]["topics"] == [topic]
        admin = AdminClient({"bootstrap.servers": bs})
        cdesc = admin.describe_consumer_groups([group])[group].result(DEADLINE)
        assert cdesc.state.name == "STABLE" and [m.client_id for m in cdesc.members] == ["ck-live"]
        assert kp_admin(bs, lambda a: a.delete_groups([group])) == {group: "NonEmptyGroupError"}
    finally:
        consumer.close()
    wait_for(lambda: kp_admin(bs, lambda a: a.delete_groups([group])) == {group: "OK"}, "the group to be deletable")


def test_offset_delete_of_unknown_group_raises_group_id_not_found(kafka):
    bs = kafka.bootstrap_servers
    topic = unique("t")
    create_topic(bs, topic)
    with pytest.raises(GroupIdNotFoundError):
        kp_admin(bs, lambda a: a.delete_group_offsets(unique("nobody"), [KTP(topic, 0)]))


# -- version details over the raw wire ------------------------------------------------------------


_correlation = iter(range(1, 10**9))


def call(wire, api_key, version, request):
    wire.send(request, version, next(_correlation))
    return wire.receive(api_key, version)[1]


def part(index, offset, metadata="", epoch=-1):
    return OffsetCommitRequestPartition(
        partition_index=index, committed_offset=offset, committed_metadata=metadata, committed_leader_epoch=epoch
    )


def errors_of(resp):
    return {(t.name, p.partition_index): p.error_code for t in resp.topics for p in t.partitions}


def on_broker(rb, fn):
    return trio.from_thread.run_sync(fn, trio_token=rb.token)


def test_offset_commit_versions_retention_and_group_rules(kafka):
    topic, group = unique("t"), unique("g")
    create_topic(kafka.bootstrap_servers, topic)
    with closing(Wire(kafka.bootstrap_servers)) as wire:
        # v2 with a retention time: an explicit expire timestamp (value v1).
        before = int(time.time() * 1000)
        resp = call(wire, ApiKey.OFFSET_COMMIT, 2, OffsetCommitRequest(
            group_id=group, retention_time_ms=3_600_000, topics=[OffsetCommitRequestTopic(name=topic, partitions=[part(0, 1)])]
        ))
        assert errors_of(resp) == {(topic, 0): 0}
        # v6: the leader epoch is kept; v9 is flexible and still "generation -1".
        resp = call(wire, ApiKey.OFFSET_COMMIT, 9, OffsetCommitRequest(
            group_id=group, topics=[OffsetCommitRequestTopic(name=topic, partitions=[part(1, 8, "nine", 4)])]
        ))
        assert errors_of(resp) == {(topic, 1): 0}
        # A missing group takes no commit with a generation.
        resp = call(wire, ApiKey.OFFSET_COMMIT, 5, OffsetCommitRequest(
            group_id=unique("g"), generation_id_or_member_epoch=3, member_id="m",
            topics=[OffsetCommitRequestTopic(name=topic, partitions=[part(0, 1)])],
        ))
        assert errors_of(resp) == {(topic, 0): E.ILLEGAL_GENERATION}
        # A simple group has no members: commits with a member id are refused.
        resp = call(wire, ApiKey.OFFSET_COMMIT, 7, OffsetCommitRequest(
            group_id=group, generation_id_or_member_epoch=1, member_id="someone",
            topics=[OffsetCommitRequestTopic(name=topic, partitions=[part(0, 1)])],
        ))
        assert errors_of(resp) == {(topic, 0): E.UNKNOWN_MEMBER_ID}
        # The empty group id is a group like any other for commits.
        resp = call(wire, ApiKey.OFFSET_COMMIT, 3, OffsetCommitRequest(
            group_id="", topics=[OffsetCommitRequestTopic(name=topic, partitions=[part(0, 2)])]
        ))
        assert errors_of(resp) == {(topic, 0): 0}

    stored = on_broker(kafka, lambda: dict(kafka.broker.groups.offsets.offsets[group]))
    assert stored[(topic, 0)].expire_timestamp - stored[(topic, 0)].commit_timestamp == 3_600_000
    assert stored[(topic, 0)].commit_timestamp >= before
    assert (stored[(topic, 1)].offset, stored[(topic, 1)].leader_epoch, stored[(topic, 1)].expire_timestamp) == (8, 4, -1)


def test_offset_fetch_versions(kafka):
    topic, group = unique("t"), unique("g")
    create_topic(kafka.bootstrap_servers, topic)
    kp_commit(kafka.bootstrap_servers, group, {KTP(topic, 1): KOffset(6, "six", -1)})
    ck_commit(kafka.bootstrap_servers, group, [CTP(topic, 0, 5, leader_epoch=0)])
    asked = [OffsetFetchRequestTopic(name=topic, partition_indexes=[0, 1])]
    with closing(Wire(kafka.bootstrap_servers)) as wire:
        v1 = call(wire, ApiKey.OFFSET_FETCH, 1, OffsetFetchRequest(group_id=group, topics=asked))
        assert [(p.partition_index, p.committed_offset, p.metadata, p.error_code) for p in v1.topics[0].partitions] == [
            (0, 5, "", 0), (1, 6, "six", 0)
        ]
        v2_all = call(wire, ApiKey.OFFSET_FETCH, 2, OffsetFetchRequest(group_id=group, topics=None))
        assert v2_all.error_code == 0 and [(t.name, [p.partition_index for p in t.partitions]) for t in v2_all.topics] == [
            (topic, [0, 1])
        ]
        v4 = call(wire, ApiKey.OFFSET_FETCH, 4, OffsetFetchRequest(group_id=group, topics=asked))
        assert [p.committed_leader_epoch for p in v4.topics[0].partitions] == [-1, -1]  # not in v4
        v7 = call(wire, ApiKey.OFFSET_FETCH, 7, OffsetFetchRequest(group_id=group, topics=asked, require_stable=True))
        assert [(p.committed_leader_epoch, p.error_code) for p in v7.topics[0].partitions] == [(0, 0), (-1, 0)]
        missing = call(wire, ApiKey.OFFSET_FETCH, 6, OffsetFetchRequest(group_id=unique("none"), topics=asked))
        assert [(p.committed_offset, p.metadata, p.error_code) for p in missing.topics[0].partitions] == [(-1, "", 0)] * 2
        nothing = call(wire, ApiKey.OFFSET_FETCH, 6, OffsetFetchRequest(group_id=unique("none"), topics=None))
        assert nothing.topics == []
        v9 = call(wire, ApiKey.OFFSET_FETCH, 9, OffsetFetchRequest(groups=[
            OffsetFetchRequestGroup(group_id=group, member_id="ignored", member_epoch=12, topics=None),
            OffsetFetchRequestGroup(group_id="nobody", topics=[OffsetFetchRequestTopics(name=topic, partition_indexes=[1])]),
        ]))
        assert [(g.group_id, g.error_code) for g in v9.groups] == [(group, 0), ("nobody", 0)]
        assert [(p.partition_index, p.committed_offset, p.committed_leader_epoch) for p in v9.groups[0].topics[0].partitions] == [
            (0, 5, 0), (1, 6, -1)
        ]
        assert [p.committed_offset for p in v9.groups[1].topics[0].partitions] == [-1]


def test_list_and_describe_groups_versions(kafka):
    topic, group = unique("t"), unique("g")
    create_topic(kafka.bootstrap_servers, topic)
    kp_commit(kafka.bootstrap_servers, group, {KTP(topic, 0): KOffset(1, "", -1)})
    with closing(Wire(kafka.bootstrap_servers)) as wire:
        v0 = call(wire, ApiKey.LIST_GROUPS, 0, ListGroupsRequest())
        assert (group, "") in {(g.group_id, g.protocol_type) for g in v0.groups}
        v4 = call(wire, ApiKey.LIST_GROUPS, 4, ListGroupsRequest(states_filter=["EMPTY", "dead"]))
        assert {g.group_id: g.group_state for g in v4.groups}[group] == "Empty"
        stable_only = call(wire, ApiKey.LIST_GROUPS, 4, ListGroupsRequest(states_filter=["stable"]))
        assert group not in {g.group_id for g in stable_only.groups}
        for types, listed in (([], True), (["Classic"], True), (["consumer", "share"], False)):
            v5 = call(wire, ApiKey.LIST_GROUPS, 5, ListGroupsRequest(types_filter=types))
            assert (group in {g.group_id for g in v5.groups}) is listed
            assert all(g.group_type == "classic" for g in v5.groups)

        d0 = call(wire, ApiKey.DESCRIBE_GROUPS, 0, DescribeGroupsRequest(groups=[group, "no-" + group]))
        assert [(g.group_id, g.error_code, g.group_state, g.protocol_type, g.members) for g in d0.groups] == [
            (group, 0, "Empty", "", []), ("no-" + group, 0, "Dead", "", [])
        ]
        d3 = call(wire, ApiKey.DESCRIBE_GROUPS, 3, DescribeGroupsRequest(groups=[group], include_authorized_operations=True))
        assert d3.groups[0].authorized_operations == 3400
        d5 = call(wire, ApiKey.DESCRIBE_GROUPS, 5, DescribeGroupsRequest(groups=[group]))
        assert d5.groups[0].authorized_operations == -(2**31)

        dg = call(wire, ApiKey.DELETE_GROUPS, 2, DeleteGroupsRequest(groups_names=[group, "no-" + group, group]))
        assert [(r.group_id, r.error_code) for r in dg.results] == [(group, 0), ("no-" + group, E.GROUP_ID_NOT_FOUND)]


def test_offset_delete_wire_errors(kafka):
    topic, group = unique("t"), unique("g")
    create_topic(kafka.bootstrap_servers, topic, 1)
    kp_commit(kafka.bootstrap_servers, group, {KTP(topic, 0): KOffset(1, "", -1)})

    def delete(group_id, *tps):
        return OffsetDeleteRequest(
            group_id=group_id,
            topics=[OffsetDeleteRequestTopic(name=t, partitions=[OffsetDeleteRequestPartition(partition_index=p)]) for t, p in tps],
        )

    with closing(Wire(kafka.bootstrap_servers)) as wire:
        assert call(wire, ApiKey.OFFSET_DELETE, 0, delete("", (topic, 0))).error_code == E.INVALID_GROUP_ID
        assert call(wire, ApiKey.OFFSET_DELETE, 0, delete(unique("none"), (topic, 0))).error_code == E.GROUP_ID_NOT_FOUND
        resp = call(wire, ApiKey.OFFSET_DELETE, 0, delete(group, (topic, 0), (topic, 5), ("nope-" + group, 0)))
        assert resp.error_code == 0
        assert errors_of(resp) == {(topic, 0): 0, (topic, 5): 3, ("nope-" + group, 0): 3}
        # Its last offset gone, the simple group itself is gone.
        assert call(wire, ApiKey.OFFSET_DELETE, 0, delete(group, (topic, 0))).error_code == E.GROUP_ID_NOT_FOUND


def test_group_mid_rebalance_over_the_wire(kafka):
    """A member that joined but never synced keeps its group in
    CompletingRebalance: described without protocol, metadata or
    assignment, closed to commits and to deletion."""
    from pybroker.protocol.messages.join_group_request import JoinGroupRequest, JoinGroupRequestProtocol

    topic, group = unique("t"), unique("g")
    create_topic(kafka.bootstrap_servers, topic, 1)
    with closing(Wire(kafka.bootstrap_servers)) as wire:
        joined = call(wire, ApiKey.JOIN_GROUP, 3, JoinGroupRequest(
            group_id=group, session_timeout_ms=30_000, rebalance_timeout_ms=60_000, protocol_type="consumer",
            protocols=[JoinGroupRequestProtocol(name="range", metadata=subscription(topic))],
        ))
        assert joined.error_code == 0 and joined.generation_id == 1
        states = call(wire, ApiKey.LIST_GROUPS, 4, ListGroupsRequest(states_filter=["completingrebalance"]))
        assert group in {g.group_id for g in states.groups}
        (desc,) = call(wire, ApiKey.DESCRIBE_GROUPS, 4, DescribeGroupsRequest(groups=[group])).groups
        assert (desc.group_state, desc.protocol_type, desc.protocol_data) == ("CompletingRebalance", "consumer", "")
        (member,) = desc.members
        assert member.member_id == joined.member_id and member.client_host == "/127.0.0.1"
        assert (member.member_metadata, member.member_assignment) == (b"", b"")
        resp = call(wire, ApiKey.OFFSET_COMMIT, 7, OffsetCommitRequest(
            group_id=group, generation_id_or_member_epoch=1, member_id=joined.member_id,
            topics=[OffsetCommitRequestTopic(name=topic, partitions=[part(0, 1)])],
        ))
        assert errors_of(resp) == {(topic, 0): E.REBALANCE_IN_PROGRESS}
        dg = call(wire, ApiKey.DELETE_GROUPS, 1, DeleteGroupsRequest(groups_names=[group]))
        assert [(r.group_id, r.error_code) for r in dg.results] == [(group, E.NON_EMPTY_GROUP)]
        od = call(wire, ApiKey.OFFSET_DELETE, 0, OffsetDeleteRequest(
            group_id=group,
            topics=[OffsetDeleteRequestTopic(name=topic, partitions=[OffsetDeleteRequestPartition(partition_index=0)])],
        ))
        # A "consumer" group: only the subscribed topic is refused.
        assert od.error_code == 0 and errors_of(od) == {(topic, 0): E.GROUP_SUBSCRIBED_TO_TOPIC}


def test_kip848_consumer_group_under_the_classic_admin_apis(kafka):
    from pybroker.handlers import MODULES

    if "consumer_group_heartbeat" not in MODULES:
        pytest.skip("ConsumerGroupHeartbeat (KIP-848) is not served")
    bs = kafka.bootstrap_servers
    topic, other, group = unique("t"), unique("o"), unique("g")
    create_topic(bs, topic)
    create_topic(bs, other, 1)
    consumer = Consumer({"bootstrap.servers": bs, "group.id": group, "group.protocol": "consumer"})
    try:
        consumer.subscribe([topic])
        wait_for(lambda: consumer.assignment(), "an assignment", step=lambda: consumer.poll(0.1))
        consumer.commit(offsets=[CTP(topic, 0, 4)], asynchronous=False)
        with closing(Wire(bs)) as wire:
            # An outsider (generation -1) may not commit to a group with members.
            resp = call(wire, ApiKey.OFFSET_COMMIT, 9, OffsetCommitRequest(
                group_id=group, topics=[OffsetCommitRequestTopic(name=other, partitions=[part(0, 2)])]
            ))
            assert errors_of(resp) == {(other, 0): E.UNKNOWN_MEMBER_ID}
            listed = call(wire, ApiKey.LIST_GROUPS, 5, ListGroupsRequest(types_filter=["CONSUMER"]))
            assert {g.group_id: (g.group_type, g.protocol_type) for g in listed.groups}[group] == ("consumer", "consumer")
            classic_only = call(wire, ApiKey.LIST_GROUPS, 5, ListGroupsRequest(types_filter=["classic"]))
            assert group not in {g.group_id for g in classic_only.groups}
            (desc,) = call(wire, ApiKey.DESCRIBE_GROUPS, 5, DescribeGroupsRequest(groups=[group])).groups
            assert (desc.error_code, desc.group_state, desc.members) == (0, "Dead", [])
            dg = call(wire, ApiKey.DELETE_GROUPS, 2, DeleteGroupsRequest(groups_names=[group]))
            assert [(r.group_id, r.error_code) for r in dg.results] == [(group, E.NON_EMPTY_GROUP)]
            od = call(wire, ApiKey.OFFSET_DELETE, 0, OffsetDeleteRequest(
                group_id=group,
                topics=[OffsetDeleteRequestTopic(name=topic, partitions=[OffsetDeleteRequestPartition(partition_index=0)])],
            ))
            assert od.error_code == 0 and errors_of(od) == {(topic, 0): E.GROUP_SUBSCRIBED_TO_TOPIC}
            fetch = call(wire, ApiKey.OFFSET_FETCH, 9, OffsetFetchRequest(groups=[
                OffsetFetchRequestGroup(group_id=group, member_id="not-a-member", member_epoch=1, topics=None),
                OffsetFetchRequestGroup(group_id=group, topics=None),
            ]))
            assert [g.error_code for g in fetch.groups] == [E.UNKNOWN_MEMBER_ID, 0]
            assert [(t.name, p.committed_offset) for t in fetch.groups[1].topics for p in t.partitions] == [(topic, 4)]
    finally:
        consumer.close()
