"""A broker's ZooKeeper session: when it expires the broker drops every
leadership at once, registers again (a new broker epoch), re-reads and
watches everything again, and serves once more; when ZooKeeper itself
restarts within the session, nothing happens at all — the broker keeps
serving from its cache and keeps its registration."""

import threading

import pytest
import trio
import trio.testing
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kazoo.client import KazooClient

from pybroker.cluster.zk_metadata import ZkMetadata
from pybroker.protocol.messages.find_coordinator_request import FindCoordinatorRequest
from pybroker.protocol.messages.offset_commit_request import (
    OffsetCommitRequest,
    OffsetCommitRequestPartition,
    OffsetCommitRequestTopic,
)
from pybroker.protocol.messages.offset_fetch_request import OffsetFetchRequest, OffsetFetchRequestTopic
from pybroker.replica import Partition, Role
from pybroker.zk.server import ZooKeeperServer

from ..broker.raw_requests import produce_request
from .broker_support import cluster_broker, metadata, partitions_view, request, wait_for

SINGLE = {"offsets.topic.replication.factor": "1", "default.replication.factor": "1"}


def produced(bootstrap: str, topic: str, partition: int = 0) -> int:
    """The error code of a one-record produce."""
    return (
        request(bootstrap, produce_request(topic, partition, [b"x"]), 9).responses[0].partition_responses[0].error_code
    )


def commit(bootstrap: str, group: str, offset: int) -> int:
    body = OffsetCommitRequest(
        group_id=group,
        generation_id_or_member_epoch=-1,
        member_id="",
        topics=[
            OffsetCommitRequestTopic(
                name="kept", partitions=[OffsetCommitRequestPartition(partition_index=0, committed_offset=offset)]
            )
        ],
    )
    return request(bootstrap, body, 8).topics[0].partitions[0].error_code


def committed(bootstrap: str, group: str) -> tuple[int, int]:
    body = OffsetFetchRequest(group_id=group, topics=[OffsetFetchRequestTopic(name="kept", partition_indexes=[0])])
    answer = request(bootstrap, body, 7)
    part = answer.topics[0].partitions[0]
    return answer.error_code or part.error_code, part.committed_offset


@pytest.fixture
def roles(monkeypatch):
    """Every role a partition is given, in order: [(topic, index, role)]."""
    seen = []
    lock = threading.Lock()
    become = Partition.become

    def recording(self, info, role):
        with lock:
            seen.append((self.topic, self.index, role))
        become(self, info, role)

    monkeypatch.setattr(Partition, "become", recording)
    return seen


def expire(server_connect: str, session: tuple[int, bytes]) -> None:
    """ZooKeeper's classic way: another client takes the session over and closes it."""
    thief = KazooClient(hosts=server_connect, client_id=session)
    thief.start(10)
    thief.stop()
    thief.close()


def test_an_expired_session_drops_leaderships_then_registers_again(
    zookeeper_server, zk_connect, zk_admin, tmp_path, roles
):
    with cluster_broker(zk_connect, 1, tmp_path, SINGLE) as running:
        broker, bootstrap = running.broker, running.bootstrap_servers
        assert request(bootstrap, FindCoordinatorRequest(key="g1"), 3).error_code in (0, 15)  # makes the offsets topic
        wait_for(lambda: request(bootstrap, FindCoordinatorRequest(key="g1"), 3).error_code == 0, what="a coordinator")
        wait_for(lambda: partitions_view(metadata(bootstrap, ["kept"], auto_create=True), "kept"), what="topic kept")
        wait_for(lambda: produced(bootstrap, "kept") == 0, what="a leader for kept")
        assert commit(bootstrap, "g1", 1) == 0
        old_epoch, old_session = broker.broker_epoch, broker.zk.session_id
        offsets_index = broker.groups.partition_index("g1")
        roles.clear()

        expire(zookeeper_server.connect, broker.zk._kazoo.client_id)

        # Registered again, in a new session, with a new broker epoch.
        wait_for(lambda: broker.broker_epoch != old_epoch, what="a new registration")
        stat = zk_admin.exists("/brokers/ids/1")
        assert stat.czxid == broker.broker_epoch and stat.ephemeralOwner == broker.zk.session_id != old_session
        wait_for(lambda: produced(bootstrap, "kept") == 0, what="serving again")
        # Every leadership was dropped, then given back from what ZooKeeper says.
        for topic, index in (("kept", 0), ("__consumer_offsets", offsets_index)):

            def given(tp=(topic, index)):
                mine = [r for t, i, r in roles if (t, i) == tp]
                return mine if Role.LEADER in mine else None

            mine = wait_for(given, what=f"{topic}-{index} led again")
            assert mine[0] is Role.FOLLOWER and mine[-1] is Role.LEADER, (topic, mine)
        assert metadata(bootstrap, ["kept"]).brokers[0].node_id == 1
        # The group partition was unloaded and loaded again: its offsets are back.
        wait_for(lambda: committed(bootstrap, "g1") == (0, 1), what="the group's offsets")
        # The watches are set again: a new state written by hand is seen.
        state = b'{"version":1,"leader":1,"leader_epoch":9,"controller_epoch":1,"isr":[1]}'
        zk_admin.set("/brokers/topics/kept/partitions/0/state", state)
        wait_for(lambda: broker.replicas.partition("kept", 0).leader_epoch == 9, what="the new state")


def test_zookeeper_restarted_within_the_session_changes_nothing(tmp_path):
    with ZooKeeperServer(tmp_path / "zk") as server:
        connect = server.connect + "/restart"
        # A session long enough for the restart to fall within it on a busy
        # machine: ZooKeeper restores the session at its start, and the JVM's
        # start plus the client's reconnection once took longer than 6 s.
        props = {**SINGLE, "zookeeper.session.timeout.ms": "30000"}
        with cluster_broker(connect, 1, tmp_path, props) as running:
            broker, bootstrap = running.broker, running.bootstrap_servers
            wait_for(lambda: partitions_view(metadata(bootstrap, ["steady"], auto_create=True), "steady"))
            wait_for(lambda: produced(bootstrap, "steady") == 0, what="a leader")
            epoch, session = broker.broker_epoch, broker.zk.session_id
            states = []
            broker.zk.add_session_listener(states.append)  # called in the broker's Trio thread

            server.stop()
            # ZooKeeper is down: produce and consume go on, from the cache.
            producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1)
            for i in range(20):
                producer.send("steady", value=b"during-%d" % i, partition=0)
            producer.flush(10)
            producer.close()
            consumer = KafkaConsumer(
                bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=10000
            )
            consumer.assign([TopicPartition("steady", 0)])
            values = [m.value for m in consumer]
            consumer.close()
            assert [v for v in values if v.startswith(b"during")] == [b"during-%d" % i for i in range(20)]
            assert view_leader(bootstrap) == 1

            server.start()
            server.wait_ready()
            wait_for(lambda: "connected" in states, what="the session back")
            assert "expired" not in states
            assert broker.zk.session_id == session and broker.broker_epoch == epoch
            assert produced(bootstrap, "steady") == 0
            assert view_leader(bootstrap) == 1


def view_leader(bootstrap: str) -> int:
    return partitions_view(metadata(bootstrap, ["steady"]), "steady")[0][1]


async def test_a_suspension_then_an_expiry_is_one_disconnection(zk):
    """The metadata task waits for the connection on the event the first
    "suspended" made; the "expired" that follows must not replace it, or
    the "connected" of the new session sets an event nobody waits on and
    the broker never registers again (seen with a paused broker)."""
    metadata = ZkMetadata(zk, node_id=1)
    metadata._session_changed("suspended")
    resumed = trio.Event()

    async def wait_for_the_connection():
        await metadata._connected.wait()
        resumed.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait_for_the_connection)
        await trio.testing.wait_all_tasks_blocked()
        metadata._session_changed("expired")
        metadata._session_changed("connected")
        with trio.fail_after(5):
            await resumed.wait()
