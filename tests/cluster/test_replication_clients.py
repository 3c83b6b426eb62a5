"""Replication as clients see it: three broker processes, ZooKeeper, real clients.

One LocalCluster serves the module. Topics are replicated three ways with
``min.insync.replicas=2``; ``replica.lag.time.max.ms`` is short so that a
stopped follower leaves the ISR within seconds.

* kafka-python, confluent-kafka and KafkaJS write 100,000 messages with
  acks=all and read them back; afterwards the three replicas of every
  partition hold the same batches, byte for byte, below the high watermark,
  in Kafka's on-disk format.
* With one follower stopped acks=all goes on (ISR 2 ≥ 2); with both stopped
  acks=all is refused NOT_ENOUGH_REPLICAS and nothing is acknowledged, while
  acks=1 is still written; restarted followers catch up, rejoin the ISR and
  the high watermark moves past what was written meanwhile.
* An idempotent producer whose partition changes leader mid-stream ends with
  every message exactly once, in order.
* Consumer groups whose ``__consumer_offsets`` partitions are led by
  different brokers keep working, and a group's committed offsets are read
  from its new coordinator after that partition's leader moved.

A leader move is written here as the controller writes an election (the
state znode's leader and leader epoch, expecting its version). A stopped
broker's leaderships move to the next in-sync replica (the controller's
election on broker loss); a preferred election gives them back.
"""

from __future__ import annotations

import time
import uuid

import pytest

from pybroker.cluster import znodes
from pybroker.local_cluster import LocalCluster, wait_for
from pybroker.process import request
from pybroker.protocol.messages.elect_leaders_request import ElectLeadersRequest, TopicPartitions
from pybroker.protocol.messages.find_coordinator_request import FindCoordinatorRequest
from pybroker.protocol.messages.list_offsets_request import ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic
from pybroker.protocol.messages.offset_fetch_request import OffsetFetchRequest, OffsetFetchRequestTopic

from ..zk_fixtures import kazoo_client
from .roundtrips import CLIENTS
from .test_cluster_clients import coordinator_partition

BROKERS = 3
PARTITIONS = 6
OFFSETS_PARTITIONS = 6
LAG_MS = 2000
NOT_ENOUGH_REPLICAS = 19
LATEST = -1


@pytest.fixture(scope="module")
def cluster():
    props = {
        "group.initial.rebalance.delay.ms": "0",
        "offsets.topic.num.partitions": str(OFFSETS_PARTITIONS),
        "auto.create.topics.enable": "false",
        "replica.lag.time.max.ms": str(LAG_MS),
        # Leaderships are moved by hand here; none may move back on its own.
        "auto.leader.rebalance.enable": "false",
    }
    with LocalCluster(BROKERS, overrides=props) as c:
        yield c


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create(bootstrap: str, topic: str, partitions: int, **configs) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = NewTopic(
        topic, num_partitions=partitions, replication_factor=3, config={"min.insync.replicas": "2", **configs}
    )
    assert admin.create_topics([new])[topic].result(30) is None


def states(cluster: LocalCluster, topic: str) -> dict[int, tuple[int, int, tuple[int, ...]]]:
    """{partition: (leader, leader epoch, ISR)} from Metadata, once every partition has a leader."""

    def found():
        answer = cluster.metadata([topic])
        parts = {
            p.partition_index: (p.leader_id, p.leader_epoch, tuple(sorted(p.isr_nodes)))
            for t in answer.topics
            for p in t.partitions
        }
        return parts if parts and all(v[0] >= 0 for v in parts.values()) else None

    return wait_for(found, 30, f"the partitions of {topic} to have leaders")


def wait_isr(cluster: LocalCluster, topic: str, partition: int, isr: set[int], timeout: float = 30) -> None:
    def reached():
        for broker in cluster.live_brokers():
            answer = broker.metadata([topic])
            got = {p.partition_index: set(p.isr_nodes) for t in answer.topics for p in t.partitions}
            if got.get(partition) != isr:
                return False
        return True

    wait_for(reached, timeout, f"the ISR of {topic}-{partition} to be {sorted(isr)} on every broker")


def latest(bootstrap: str, topic: str, partition: int) -> tuple[int, int]:
    """(error code, offset) of ListOffsets(latest): the high watermark."""
    body = ListOffsetsRequest(
        replica_id=-1,
        topics=[
            ListOffsetsTopic(name=topic, partitions=[ListOffsetsPartition(partition_index=partition, timestamp=LATEST)])
        ],
    )
    p = request(bootstrap, body, 7).topics[0].partitions[0]
    return p.error_code, p.offset


def leader_broker(cluster: LocalCluster, topic: str, partition: int):
    return cluster.broker(states(cluster, topic)[partition][0])


def move_leader(cluster: LocalCluster, topic: str, partition: int, to: int) -> int:
    """Write the partition's state as the controller writes an election: ``to``
    leads at the next leader epoch, the ISR kept. Returns the new epoch."""
    zk = kazoo_client(cluster.zookeeper_connect)
    try:
        path = znodes.partition_state_path(topic, partition)
        data, stat = zk.get(path)
        state = znodes.decode_partition_state(data, stat.version)
        assert to in state.isr, f"broker {to} is not in the ISR {state.isr}"
        state.leader = to
        state.leader_epoch += 1
        zk.set(path, znodes.encode_partition_state(state), version=stat.version)
        return state.leader_epoch
    finally:
        zk.stop()
        zk.close()


# -- 100,000 messages from three clients ------------------------------------------


def test_three_clients_write_identical_replicas(cluster):
    from .replica_files import compare

    per_partition = {"confluent-kafka": 7000, "kafka-python": 5000, "kafkajs": 5000}
    topics = {client: unique(f"replicated-{client}") for client in per_partition}
    for topic in topics.values():
        create(cluster.brokers[0].bootstrap, topic, PARTITIONS)
        states(cluster, topic)
    total = 0
    for n, (client, count) in enumerate(per_partition.items()):
        # Each client is given one broker; it finds every partition's leader itself.
        trip = CLIENTS[client](cluster.brokers[n].bootstrap, topics[client], unique(f"g-{client}"), PARTITIONS, count)
        assert len(trip.delivered) == PARTITIONS * count, client
        assert trip.consumed == trip.delivered, client
        total += len(trip.delivered)
    assert total >= 100_000
    dirs = {b.node_id: b.data_dir for b in cluster.brokers}
    for client, topic in topics.items():
        for p in range(PARTITIONS):
            error, hw = latest(leader_broker(cluster, topic, p).bootstrap, topic, p)
            assert (error, hw) == (0, per_partition[client])
            # Followers copy up to the leader's log end and learn the HW on their next fetch.
            wait_for(
                lambda t=topic, p=p, hw=hw: _all_hold(dirs, t, p, hw), 60, f"every replica of {topic}-{p} to hold {hw}"
            )
            batches = compare(dirs, topic, p, hw)
            assert batches[-1].last_offset == hw - 1


def _all_hold(dirs, topic: str, partition: int, offset: int) -> bool:
    from .replica_files import ReplicaFormatError, read_replica

    try:
        return all(read_replica(d, topic, partition).log_end_offset >= offset for d in dirs.values())
    except ReplicaFormatError:
        return False  # a batch being written as it is read


# -- followers stopped and restarted ------------------------------------------------


def _produce(bootstrap: str, topic: str, acks, values: list[str], timeout_s: float = 20):
    """kafka-python without retries: [(offset or None, error name or None)]."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks=acks, retries=0, request_timeout_ms=int(timeout_s * 1000)
    )
    try:
        futures = [producer.send(topic, value=v.encode(), partition=0) for v in values]
        out = []
        for f in futures:
            try:
                out.append((f.get(timeout=timeout_s + 10).offset, None))
            except KafkaError as exc:
                out.append((None, type(exc).__name__))
        return out
    finally:
        producer.close(timeout=10)


def test_stopped_followers_and_min_insync(cluster):
    topic = unique("min-isr")
    create(cluster.brokers[0].bootstrap, topic, 1)
    leader_id, _, isr = states(cluster, topic)[0]
    assert isr == (1, 2, 3)
    leader = cluster.broker(leader_id)
    first, second = (cluster.broker(n) for n in (1, 2, 3) if n != leader_id)
    try:
        assert [e for _, e in _produce(leader.bootstrap, topic, "all", ["a0", "a1"])] == [None, None]
        first.stop()
        # A stopped follower that holds everything is in sync until the leader
        # writes more (Kafka's rule): this write waits for the ISR to shrink,
        # then ISR 2 >= min.insync.replicas 2 lets it through.
        assert [e for _, e in _produce(leader.bootstrap, topic, "all", ["b0", "b1"])] == [None, None]
        wait_isr(cluster, topic, 0, {leader_id, second.node_id})
        second.stop()
        assert _produce(leader.bootstrap, topic, 1, ["c0"])[0][1] is None
        wait_isr(cluster, topic, 0, {leader_id})
        refused = _produce(leader.bootstrap, topic, "all", ["x0", "x1"])
        assert refused == [(None, "NotEnoughReplicasError")] * 2
        written = _produce(leader.bootstrap, topic, 1, ["d0"])
        assert written[0][1] is None
        # Below min.insync the HW stands still: c0 and d0 are written, not committed.
        assert latest(leader.bootstrap, topic, 0) == (0, 4)
        end = written[0][0] + 1
    finally:
        for b in (first, second):
            if not b.alive():
                b.start()
    wait_isr(cluster, topic, 0, {1, 2, 3})
    wait_for(lambda: latest(leader.bootstrap, topic, 0) == (0, end), 30, "the HW to cover what acks=1 wrote")
    values = _read_all(leader.bootstrap, topic, 0, end)
    assert values == ["a0", "a1", "b0", "b1", "c0", "d0"]  # x0, x1 were refused before the append
    assert "ISR" in leader.log_text()


def _read_all(bootstrap: str, topic: str, partition: int, end: int) -> list[str]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("reader"), "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, partition, 0)])
        out: list[tuple[int, str]] = []
        deadline = time.monotonic() + 60
        while (not out or out[-1][0] < end - 1) and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=1000, timeout=0.5):
                assert msg.error() is None, msg.error()
                out.append((msg.offset(), msg.value().decode()))
        offsets = [o for o, _ in out]
        assert offsets == sorted(set(offsets)), "offsets went backwards or repeated"
        return [v for _, v in out]
    finally:
        consumer.close()


# -- an idempotent producer across a leader move --------------------------------------


class IdempotentWriter:
    """A confluent-kafka idempotent acks=all producer writing m0, m1, ...
    to partition 0, with what it was told delivered and what failed."""

    def __init__(self, bootstrap: str, topic: str, payload: int = 0, **conf):
        from confluent_kafka import Producer

        self.topic = topic
        self.payload = payload  # values padded to this many bytes after a "|"
        self.delivered: list[int] = []
        self.errors: list = []
        settings = {"enable.idempotence": True, "acks": "all", "linger.ms": 5, "batch.num.messages": 200}
        self.producer = Producer({"bootstrap.servers": bootstrap, **settings, **conf})

    def _report(self, err, msg) -> None:
        if err is not None:
            self.errors.append(err)
        else:
            self.delivered.append(msg.offset())

    def send(self, values) -> None:
        for i in values:
            while True:
                try:
                    value = f"m{i}|".ljust(self.payload, "x") if self.payload else f"m{i}"
                    self.producer.produce(self.topic, value=value.encode(), partition=0, on_delivery=self._report)
                    break
                except BufferError:
                    self.producer.poll(0.05)
            self.producer.poll(0)

    def until_delivered(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.delivered) < count and time.monotonic() < deadline:
            self.producer.poll(0.01)


def test_idempotent_producer_across_a_leader_move(cluster):
    topic = unique("moved")
    create(cluster.brokers[0].bootstrap, topic, 1)
    leader_id, _, isr = states(cluster, topic)[0]
    successor = next(n for n in isr if n != leader_id)
    total = 20_000
    writer = IdempotentWriter(cluster.bootstrap_servers, topic)
    producer, delivered, errors, send = writer.producer, writer.delivered, writer.errors, writer.send
    send(range(total // 2))
    writer.until_delivered(total // 8)
    # Moved while the rest of the first half is queued or in flight.
    assert total // 8 <= len(delivered) < total // 2, len(delivered)
    new_epoch = move_leader(cluster, topic, 0, successor)
    send(range(total // 2, total))
    assert producer.flush(120) == 0
    assert not errors, errors[:3]
    assert states(cluster, topic)[0][:2] == (successor, new_epoch)
    values = _read_all(cluster.broker(successor).bootstrap, topic, 0, total)
    assert values == [f"m{i}" for i in range(total)], "a message was lost, duplicated or reordered"


# -- consumer groups across coordinators -----------------------------------------------


def _group_for_partition(partition: int, prefix: str) -> str:
    while True:
        group = unique(prefix)
        if coordinator_partition(group) == partition:
            return group


def _committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    body = OffsetFetchRequest(
        group_id=group, topics=[OffsetFetchRequestTopic(name=topic, partition_indexes=list(range(partitions)))]
    )
    answer = request(bootstrap, body, 5)
    assert answer.error_code == 0, answer.error_code
    return {p.partition_index: p.committed_offset for t in answer.topics for p in t.partitions}


def _coordinator(bootstrap: str, group: str) -> tuple[int, int]:
    answer = request(bootstrap, FindCoordinatorRequest(key=group, key_type=0), 3)
    return answer.error_code, answer.node_id


def _preferred_leaders(cluster: LocalCluster, topic: str, partitions: int) -> None:
    """A preferred election for every partition of ``topic``, as an operator
    runs after brokers came back (their leaderships moved while they were
    away); waits until each partition's first replica leads."""
    asked = ElectLeadersRequest(
        election_type=0, topic_partitions=[TopicPartitions(topic=topic, partitions=list(range(partitions)))]
    )
    controller = cluster.metadata([]).controller_id
    request(cluster.broker(controller).bootstrap, asked, 2)

    def preferred():
        answer = cluster.metadata([topic])
        return all(p.leader_id == p.replica_nodes[0] for t in answer.topics for p in t.partitions)

    wait_for(preferred, 30, f"the preferred replicas of {topic} to lead")


def test_groups_across_coordinators_and_a_coordinator_move(cluster):
    # The first FindCoordinator creates the offsets topic.
    wait_for(lambda: _coordinator(cluster.brokers[0].bootstrap, "any")[0] == 0, 30, "a group coordinator")
    # Earlier tests stopped brokers, and their leaderships moved meanwhile.
    _preferred_leaders(cluster, "__consumer_offsets", OFFSETS_PARTITIONS)
    offsets = states(cluster, "__consumer_offsets")
    groups: dict[int, tuple[str, str]] = {}  # coordinator broker -> (group, topic)
    for index, (leader, _, _) in sorted(offsets.items()):
        if leader not in groups:
            groups[leader] = (_group_for_partition(index, f"g{leader}"), unique(f"groups{leader}"))
    assert len(groups) == BROKERS, offsets  # one group per coordinator broker
    for n, (group, topic) in enumerate(groups.values()):
        create(cluster.brokers[0].bootstrap, topic, 3)
        trip = CLIENTS["confluent-kafka"](cluster.brokers[n].bootstrap, topic, group, 3, 20)
        assert trip.committed == {0: 20, 1: 20, 2: 20}, (group, trip.committed)
    coordinator, (group, topic) = next(iter(groups.items()))
    assert _coordinator(cluster.brokers[0].bootstrap, group) == (0, coordinator)
    assert _committed(cluster.broker(coordinator).bootstrap, group, topic, 3) == {0: 20, 1: 20, 2: 20}
    index = coordinator_partition(group)
    isr = offsets[index][2]
    successor = next(n for n in isr if n != coordinator)
    move_leader(cluster, "__consumer_offsets", index, successor)
    wait_for(lambda: _coordinator(cluster.brokers[0].bootstrap, group) == (0, successor), 30, "the new coordinator")
    new = cluster.broker(successor).bootstrap
    after = wait_for(lambda: _try_committed(new, group, topic), 30, "the new coordinator to load the group")
    assert after == {0: 20, 1: 20, 2: 20}


def _try_committed(bootstrap, group, topic):
    try:
        return _committed(bootstrap, group, topic, 3)
    except AssertionError:
        return None  # still loading: COORDINATOR_LOAD_IN_PROGRESS
