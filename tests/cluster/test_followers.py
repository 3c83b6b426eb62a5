"""Followers on three brokers and a real ZooKeeper: what a producer writes
to a leader reaches every replica byte for byte (the segment files'
batches compared), a follower stopped and started again catches up, and
a leader moved — by rewriting the partition's state znode as a
controller's unclean election would, and back by ElectLeaders — makes
the old leader a follower that truncates what only it had."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer

from pybroker.cluster import znodes
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.create_topics_request import (
    CreatableReplicaAssignment,
    CreatableTopic,
    CreatableTopicConfig,
    CreateTopicsRequest,
)
from pybroker.protocol.messages.delete_records_request import (
    DeleteRecordsPartition,
    DeleteRecordsRequest,
    DeleteRecordsTopic,
)
from pybroker.protocol.messages.elect_leaders_request import ElectLeadersRequest, TopicPartitions
from pybroker.protocol.messages.fetch_request import FetchPartition, FetchRequest, FetchTopic
from pybroker.protocol.record_batch import split_batches

from ..broker.raw_requests import produce_request
from ..broker.wire import Wire
from . import replica_files
from .broker_support import cluster_broker, metadata, partitions_view, request, wait_for

PROPS = {"replica.fetch.backoff.ms": "100", "default.replication.factor": "3"}


class Brokers:
    """Brokers 1-3 of one cluster, each stopped and started at will with
    its data kept."""

    def __init__(self, zk_connect: str, root: Path, props: dict):
        self.zk_connect, self.root, self.props = zk_connect, root, props
        self.stacks: dict[int, contextlib.ExitStack] = {}
        self.running: dict = {}

    def start(self, n: int) -> None:
        stack = contextlib.ExitStack()
        self.running[n] = stack.enter_context(cluster_broker(self.zk_connect, n, self.root, self.props))
        self.stacks[n] = stack

    def stop(self, n: int) -> None:
        self.running.pop(n)
        self.stacks.pop(n).close()

    def close(self) -> None:
        for n in list(self.stacks):
            self.stop(n)

    def bootstrap(self, n: int) -> str:
        return self.running[n].bootstrap_servers

    def any(self) -> str:
        return next(iter(self.running.values())).bootstrap_servers

    def partition(self, n: int, topic: str, index: int):
        return self.running[n].broker.replicas.partition(topic, index)


@contextlib.contextmanager
def three_brokers(zk_connect: str, tmp_path: Path, props: dict):
    b = Brokers(zk_connect, tmp_path, props)
    try:
        for n in (1, 2, 3):
            b.start(n)
        wait_for(lambda: len(metadata(b.any(), []).brokers) == 3, what="three brokers registered")
        yield b
    finally:
        b.close()


@pytest.fixture
def brokers(zk_connect, tmp_path):
    with three_brokers(zk_connect, tmp_path, PROPS) as b:
        yield b


def create(bootstrap: str, name: str, assignments: list[list[int]], configs: dict | None = None) -> None:
    topic = CreatableTopic(
        name=name,
        num_partitions=-1,
        replication_factor=-1,
        assignments=[CreatableReplicaAssignment(partition_index=i, broker_ids=r) for i, r in enumerate(assignments)],
        configs=[CreatableTopicConfig(name=k, value=v) for k, v in (configs or {}).items()],
    )
    result = request(bootstrap, CreateTopicsRequest(topics=[topic], timeout_ms=15000), 7).topics[0]
    assert result.error_code == 0, result


def led_everywhere(brokers: Brokers, topic: str, count: int):
    """The topic's view once every running broker reports all its partitions led."""

    def check():
        views = [partitions_view(metadata(brokers.bootstrap(n), [topic]), topic) for n in brokers.running]
        if len(views[0]) == count and all(v == views[0] for v in views) and all(p[1] >= 0 for p in views[0]):
            return views[0]
        return None

    return wait_for(check, what=f"{topic} led on every broker")


def replica_batches(root: Path, n: int, topic: str, index: int) -> list[bytes]:
    """Broker ``n``'s replica as its segment files hold it: each batch's bytes."""
    out = []
    for path in sorted((root / f"broker{n}" / f"{topic}-{index}").glob("*.log")):
        batches, rest = split_batches(path.read_bytes())
        assert rest == 0, f"{path} ends inside a batch"
        out += [bytes(b.view) for b in batches]
    return out


def identical(root: Path, topic: str, index: int, replicas=(1, 2, 3), at_least: int = 1):
    copies = [replica_batches(root, n, topic, index) for n in replicas]
    if len(copies[0]) >= at_least and all(c == copies[0] for c in copies):
        return copies[0]
    return None


def kafka_format_and_identical(brokers: Brokers, root: Path, topic: str, index: int, leader: int, replicas=(1, 2, 3)):
    """H4's check of the files: Kafka's format on every replica (indexes,
    epoch checkpoint), byte-identical below the leader's high watermark,
    once it has reached the log end (the followers' next fetches report
    what they hold; the leader counts what it has fsynced)."""
    part = brokers.partition(leader, topic, index)
    wait_for(lambda: part.high_watermark == part.log_end_offset, what="the high watermark at the log end")
    hw = part.high_watermark
    return replica_files.compare({n: root / f"broker{n}" for n in replicas}, topic, index, hw)


def produce(bootstrap: str, topic: str, index: int, values: list[bytes]) -> None:
    response = request(bootstrap, produce_request(topic, index, values), 9)
    assert response.responses[0].partition_responses[0].error_code == 0


def rewrite_state(zk_admin, topic: str, index: int, leader: int, isr: list[int]) -> int:
    """Write a new leader at the next epoch into the state znode, as the
    controller's (unclean) election would; the new epoch."""
    path = znodes.partition_state_path(topic, index)
    data, stat = zk_admin.get(path)
    state = znodes.decode_partition_state(data, stat.version)
    state.leader, state.leader_epoch, state.isr = leader, state.leader_epoch + 1, isr
    zk_admin.set(path, znodes.encode_partition_state(state), version=stat.version)
    return state.leader_epoch


def test_a_topic_of_three_replicas_is_copied_byte_for_byte(brokers, tmp_path):
    create(brokers.any(), "copied", [[1, 2, 3], [2, 3, 1], [3, 1, 2]])
    led_everywhere(brokers, "copied", 3)
    producer = KafkaProducer(bootstrap_servers=brokers.any(), acks=1, linger_ms=5, batch_size=4096)
    try:
        for i in range(3000):
            producer.send("copied", key=b"%d" % (i % 7), value=b"value-%05d" % i, partition=i % 3)
        producer.flush(30)
    finally:
        producer.close()
    for index in range(3):
        batches = wait_for(lambda index=index: identical(tmp_path, "copied", index), what=f"copied-{index} everywhere")
        assert sum(count_records(b) for b in batches) == 1000
        on_disk = kafka_format_and_identical(brokers, tmp_path, "copied", index, leader=index + 1)
        assert [b.data for b in on_disk] == batches
    # The epoch caches and the offsets match too, and each follower has
    # fsynced what it holds (what its next Fetch reports to the leader).
    for index in range(3):
        parts = [brokers.partition(n, "copied", index) for n in (1, 2, 3)]
        assert len({p.log_end_offset for p in parts}) == 1
        assert len({tuple(p.log.epochs.entries) for p in parts}) == 1
        for p in parts:
            if p.role.value == "follower":
                wait_for(lambda p=p: p.log.recovery_point == p.log_end_offset, what="the follower fsynced")
    # Followers never answer consumers; the leader does, with everything.
    consumer = KafkaConsumer(
        bootstrap_servers=brokers.any(), auto_offset_reset="earliest", consumer_timeout_ms=5000, group_id=None
    )
    try:
        from kafka import TopicPartition

        consumer.assign([TopicPartition("copied", i) for i in range(3)])
        got = [m for m in consumer]
    finally:
        consumer.close()
    assert len(got) == 3000


def count_records(batch: bytes) -> int:
    return int.from_bytes(batch[57:61], "big")


def test_a_stopped_follower_catches_up_when_started_again(brokers, tmp_path):
    create(brokers.any(), "caught", [[1, 2, 3], [1, 3, 2]])
    led_everywhere(brokers, "caught", 2)
    leader = brokers.bootstrap(1)
    for i in range(20):
        produce(leader, "caught", i % 2, [b"before-%d" % i])
    for index in range(2):
        wait_for(lambda index=index: identical(tmp_path, "caught", index, at_least=10), what="copied before the stop")
    brokers.stop(3)
    for i in range(200):
        produce(leader, "caught", i % 2, [b"while-stopped-%d" % i] * 3)
    for index in range(2):
        wait_for(lambda index=index: identical(tmp_path, "caught", index, (1, 2), at_least=110), what="copied to 2")
    assert len(replica_batches(tmp_path, 3, "caught", 0)) == 10
    brokers.start(3)
    for index in range(2):
        batches = wait_for(lambda index=index: identical(tmp_path, "caught", index, at_least=110), what="3 caught up")
        assert len(batches) == 110
        assert len(kafka_format_and_identical(brokers, tmp_path, "caught", index, leader=1)) == 110


def test_an_old_leader_truncates_what_only_it_had(brokers, tmp_path, zk_admin):
    create(brokers.any(), "moved", [[1, 2, 3]], {"min.insync.replicas": "1"})
    led_everywhere(brokers, "moved", 1)
    for i in range(5):
        produce(brokers.bootstrap(1), "moved", 0, [b"common-%d" % i])
    wait_for(lambda: identical(tmp_path, "moved", 0, at_least=5), what="the common part copied")
    # Only broker 1 gets the next three: its followers are down.
    brokers.stop(2)
    brokers.stop(3)
    for i in range(3):
        produce(brokers.bootstrap(1), "moved", 0, [b"lost-%d" % i])
    brokers.stop(1)
    assert len(replica_batches(tmp_path, 1, "moved", 0)) == 8
    # 2 and 3 come back and 2 is made leader, uncleanly, at epoch 1.
    brokers.start(2)
    brokers.start(3)
    epoch = rewrite_state(zk_admin, "moved", 0, leader=2, isr=[2, 3])
    wait_for(
        lambda: partitions_view(metadata(brokers.bootstrap(2), ["moved"]), "moved")[0][1:3] == (2, epoch),
        what="broker 2 leading",
    )
    wait_for(lambda: brokers.partition(2, "moved", 0).role.value == "leader", what="broker 2 leading its replica")
    for i in range(4):
        produce(brokers.bootstrap(2), "moved", 0, [b"new-%d" % i])
    wait_for(lambda: identical(tmp_path, "moved", 0, (2, 3), at_least=9), what="copied to 3")
    # Broker 1 returns as a follower: its last three go, 2's four come.
    brokers.start(1)
    batches = wait_for(lambda: identical(tmp_path, "moved", 0, at_least=9), what="broker 1 truncated and caught up")
    values = [b for b in batches]
    assert len(values) == 9
    assert not any(b"lost-" in b for b in values)
    assert sum(b"new-" in b for b in values) == 4
    # The preferred replica (1) leads again; 2 follows it from now on.
    rewrite_isr(zk_admin, "moved", 0, [2, 3, 1])
    wait_for(lambda: 1 in brokers.partition(1, "moved", 0).info.isr, what="broker 1 back in the ISR")
    preferred_election(brokers, "moved", 0)
    wait_for(lambda: brokers.partition(1, "moved", 0).role.value == "leader", what="broker 1 leading again")
    for i in range(2):
        produce(brokers.bootstrap(1), "moved", 0, [b"after-%d" % i])
    batches = wait_for(lambda: identical(tmp_path, "moved", 0, at_least=11), what="the last two everywhere")
    assert len(batches) == 11
    epochs = [tuple(brokers.partition(n, "moved", 0).log.epochs.entries) for n in (1, 2, 3)]
    assert len(set(epochs)) == 1 and [e for e, _ in epochs[0]] == [0, epoch, epoch + 1]
    assert len(kafka_format_and_identical(brokers, tmp_path, "moved", 0, leader=1)) == 11


def preferred_election(brokers: Brokers, topic: str, index: int) -> None:
    asked = ElectLeadersRequest(
        election_type=0, topic_partitions=[TopicPartitions(topic=topic, partitions=[index])], timeout_ms=15000
    )
    controller = metadata(brokers.any(), []).controller_id
    result = request(brokers.bootstrap(controller), asked, 2)
    assert result.replica_election_results[0].partition_result[0].error_code == ErrorCode.NONE


def rewrite_isr(zk_admin, topic: str, index: int, isr: list[int]) -> None:
    """The ISR the leader would have written once the follower caught up
    (the leader's own ISR changes come with the leader's side of
    replication)."""
    path = znodes.partition_state_path(topic, index)
    data, stat = zk_admin.get(path)
    state = znodes.decode_partition_state(data, stat.version)
    state.isr = isr
    zk_admin.set(path, znodes.encode_partition_state(state), version=stat.version)


def test_followers_follow_a_leader_that_moved_to_a_new_address(brokers, tmp_path):
    """A leader restarted binds a new port and registers it: its followers
    reconnect there."""
    create(brokers.any(), "readdressed", [[1, 2, 3]])
    led_everywhere(brokers, "readdressed", 1)
    produce(brokers.bootstrap(1), "readdressed", 0, [b"one"])
    wait_for(lambda: identical(tmp_path, "readdressed", 0), what="copied")
    brokers.stop(1)
    # Its leadership went to the next in-sync replica when it stopped; back,
    # it follows, rejoins the ISR, and a preferred election gives it back.
    wait_for(lambda: partitions_view(metadata(brokers.any(), ["readdressed"]), "readdressed")[0][1] == 2, what="2 leads")
    brokers.start(1)
    wait_for(lambda: 1 in brokers.partition(2, "readdressed", 0).info.isr, what="broker 1 back in the ISR")
    preferred_election(brokers, "readdressed", 0)

    def produced() -> bool:
        response = request(brokers.bootstrap(1), produce_request("readdressed", 0, [b"two"]), 9)
        return response.responses[0].partition_responses[0].error_code == 0  # else not leading again yet

    wait_for(produced, what="broker 1 leading again")
    batches = wait_for(lambda: identical(tmp_path, "readdressed", 0, at_least=2), what="copied after the restart")
    assert len(batches) == 2


def replica_fetch(topic: str, offset: int, last_epoch: int, current_epoch: int = 0, wait_ms: int = 0, **session):
    return FetchRequest(
        replica_id=2,
        max_wait_ms=wait_ms,
        min_bytes=1,
        max_bytes=1 << 20,
        topics=[
            FetchTopic(
                topic=topic,
                partitions=[
                    FetchPartition(
                        partition=0,
                        current_leader_epoch=current_epoch,
                        fetch_offset=offset,
                        last_fetched_epoch=last_epoch,
                        log_start_offset=0,
                        partition_max_bytes=1 << 20,
                    )
                ],
            )
        ],
        **session,
    )


def answer(response):
    p = response.responses[0].partitions[0]
    return p.error_code, (p.diverging_epoch.epoch, p.diverging_epoch.end_offset), len(p.records or b"")


def test_the_leaders_answers_to_a_replica_fetch(brokers):
    create(brokers.any(), "answered", [[1, 2, 3]])
    led_everywhere(brokers, "answered", 1)
    leader, follower = brokers.bootstrap(1), brokers.bootstrap(2)
    for i in range(3):
        produce(leader, "answered", 0, [b"m%d" % i])
    code, diverging, size = answer(request(leader, replica_fetch("answered", 0, -1), 12))
    assert (code, diverging) == (ErrorCode.NONE, (-1, -1)) and size > 0
    # Past the leader's log end in its own epoch: the log diverges there.
    assert answer(request(leader, replica_fetch("answered", 7, 0), 12)) == (ErrorCode.NONE, (0, 3), 0)
    assert answer(request(leader, replica_fetch("answered", 3, 0, current_epoch=4), 12))[0] == (
        ErrorCode.UNKNOWN_LEADER_EPOCH
    )
    assert answer(request(follower, replica_fetch("answered", 3, 0), 12))[0] == ErrorCode.NOT_LEADER_OR_FOLLOWER
    # A long poll at the log end wakes on the next append.
    w = Wire(leader, timeout=30)
    try:
        w.send(replica_fetch("answered", 3, 0, wait_ms=20000), 12, 77)
        produce(leader, "answered", 0, [b"woken"])
        _, response = w.receive(1, 12)
    finally:
        w.close()
    assert answer(response)[2] > 0


def incremental(session_id: int, epoch: int) -> FetchRequest:
    """A follower's request in a session that names no partition."""
    return FetchRequest(
        replica_id=2, max_wait_ms=0, min_bytes=1, max_bytes=1 << 20, session_id=session_id, session_epoch=epoch
    )


def test_a_followers_fetch_session(brokers):
    """KIP-227 for followers: a full request opens a session; an
    incremental one naming nothing is answered for every partition the
    session holds, at the offset it was last asked, and carries only
    partitions with news."""
    create(brokers.any(), "sessions", [[1, 2, 3]])
    led_everywhere(brokers, "sessions", 1)
    leader = brokers.bootstrap(1)
    for i in range(3):
        produce(leader, "sessions", 0, [b"m%d" % i])
    wait_for(lambda: brokers.partition(1, "sessions", 0).high_watermark == 3, what="the high watermark at 3")
    opened = request(leader, replica_fetch("sessions", 3, 0, session_id=0, session_epoch=0), 12)
    assert opened.error_code == 0 and opened.session_id != 0
    assert answer(opened) == (ErrorCode.NONE, (-1, -1), 0)
    session = opened.session_id
    # Nothing new: the partition is left out.
    quiet = request(leader, incremental(session, 1), 12)
    assert (quiet.error_code, quiet.session_id, quiet.responses) == (0, session, [])
    produce(leader, "sessions", 0, [b"m3"])
    news = request(leader, incremental(session, 2), 12)
    assert news.error_code == 0 and news.responses[0].topic == "sessions"
    batches, _ = split_batches(news.responses[0].partitions[0].records)
    assert [b.base_offset for b in batches] == [3]  # from the offset the session kept
    assert request(leader, incremental(session, 9), 12).error_code == ErrorCode.INVALID_FETCH_SESSION_EPOCH
    unknown = request(leader, incremental((session + 1000) & 0x7FFFFFFF, 1), 12)  # ids go up one by one
    assert unknown.error_code == ErrorCode.FETCH_SESSION_ID_NOT_FOUND


def test_a_partition_the_follower_does_not_name_still_counts_as_fetched(brokers):
    """The real followers fetch in sessions and name an idle partition only
    when its position changes; each of their fetches must still count for
    it (its follower caught up), or idle partitions would leave the ISR."""
    create(brokers.any(), "idle", [[1, 2], [1, 2]])
    led_everywhere(brokers, "idle", 2)
    produce(brokers.bootstrap(1), "idle", 1, [b"once"])
    wait_for(lambda: brokers.partition(2, "idle", 1).log_end_offset == 1, what="partition 1 copied")
    fetcher = brokers.running[2].broker.fetchers.fetchers[1]
    wait_for(lambda: fetcher.session.id != 0, what="broker 2 fetching from broker 1 in a session")
    follower = brokers.partition(1, "idle", 1).leader_state.followers[2]
    before = follower.last_fetch_ms
    rounds = fetcher.rounds

    def busy_elsewhere():
        produce(brokers.bootstrap(1), "idle", 0, [b"busy"])
        return fetcher.rounds >= rounds + 5 and follower.last_fetch_ms > before

    wait_for(busy_elsewhere, what="broker 2's fetches for partition 0 counting for partition 1")
    assert follower.leo == 1


def test_an_unexpected_error_costs_a_round_not_the_fetcher(brokers, tmp_path, monkeypatch, caplog):
    from pybroker.replica import follower

    real = follower.append_fetched
    failures = []

    def failing_once(replicas, part, records, *rest):
        if part.topic == "unlucky" and records is not None and len(records) and not failures:
            failures.append(part.topic)
            raise RuntimeError("a bug")
        return real(replicas, part, records, *rest)

    monkeypatch.setattr(follower, "append_fetched", failing_once)
    create(brokers.any(), "unlucky", [[1, 2]])
    led_everywhere(brokers, "unlucky", 1)
    for i in range(3):
        produce(brokers.bootstrap(1), "unlucky", 0, [b"m%d" % i])
    wait_for(lambda: identical(tmp_path, "unlucky", 0, (1, 2), at_least=3), what="copied after the failure")
    assert failures == ["unlucky"]
    assert any("handling the leader's answer failed" in r.getMessage() and r.exc_info for r in caplog.records)


def test_a_follower_below_the_leaders_log_start_starts_over_there(brokers, tmp_path):
    create(brokers.any(), "trimmed", [[1, 2]], {"segment.bytes": "1024"})
    led_everywhere(brokers, "trimmed", 1)
    leader = brokers.bootstrap(1)
    for i in range(40):
        produce(leader, "trimmed", 0, [b"trimmed-%02d" % i] * 3)
    wait_for(lambda: identical(tmp_path, "trimmed", 0, (1, 2), at_least=40), what="copied")
    # Broker 2 loses its replica while the leader's log start moves past
    # everything it will start with.
    brokers.stop(2)
    shutil.rmtree(tmp_path / "broker2" / "trimmed-0")
    delete = DeleteRecordsRequest(
        topics=[DeleteRecordsTopic(name="trimmed", partitions=[DeleteRecordsPartition(partition_index=0, offset=61)])],
        timeout_ms=5000,
    )
    wait_for(
        lambda: request(leader, delete, 2).topics[0].partitions[0].low_watermark == 61,
        what="the log start at 61, inside the batch 60..62",
    )
    brokers.start(2)

    def caught_up():
        part = brokers.partition(2, "trimmed", 0)
        return part is not None and part.log_end_offset == 120 and part.log_start_offset == 61

    wait_for(caught_up, what="broker 2 starting over at the leader's log start")
    theirs = [b for b in replica_batches(tmp_path, 1, "trimmed", 0) if int.from_bytes(b[:8], "big") >= 60]
    assert replica_batches(tmp_path, 2, "trimmed", 0) == theirs


def test_a_replica_without_its_epoch_checkpoint_asks_the_leader_first(brokers, tmp_path, monkeypatch):
    from pybroker.replica import leader_offsets

    asked = []
    real = leader_offsets.epoch_ends

    async def recording(call, replica_id, wanted):
        asked.append((replica_id, dict(wanted)))
        return await real(call, replica_id, wanted)

    monkeypatch.setattr(leader_offsets, "epoch_ends", recording)
    create(brokers.any(), "unmarked", [[1, 2]])
    led_everywhere(brokers, "unmarked", 1)
    for i in range(3):
        produce(brokers.bootstrap(1), "unmarked", 0, [b"m%d" % i])
    wait_for(lambda: identical(tmp_path, "unmarked", 0, (1, 2), at_least=3), what="copied")
    brokers.stop(2)
    (tmp_path / "broker2" / "unmarked-0" / "leader-epoch-checkpoint").unlink()
    brokers.start(2)
    produce(brokers.bootstrap(1), "unmarked", 0, [b"m3"])
    wait_for(lambda: identical(tmp_path, "unmarked", 0, (1, 2), at_least=4), what="copied after the restart")
    # At leader epoch 1 (the controller's, when 2 left the ISR), for its last batch's epoch 0.
    assert (2, {("unmarked", 0): (1, 0)}) in asked
