"""ElectLeaders (v0-2) through its handler: with the single node's
elections, and with real controllers on ZooKeeper. Requests and responses
go through the codec as on a connection."""

from __future__ import annotations

import trio

from pybroker.cluster import znodes as zn
from pybroker.cluster.controller_state import SingleNodeElections
from pybroker.cluster.local import LocalMetadata
from pybroker.cluster.model import BrokerInfo, PartitionInfo, PartitionState, TopicInfo
from pybroker.handlers import Later, load_all
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.framing import decode_request, decode_response, encode_request, encode_response
from pybroker.protocol.messages.elect_leaders_request import ElectLeadersRequest, TopicPartitions
from pybroker.protocol.registry import ApiKey
from pybroker.server import RequestContext

from .test_controller import controllers, create_topic, register, state, until, write_state


async def elect(body: ElectLeadersRequest, version: int, *, controller, metadata):
    """The request as a connection hands it to the handler, and the response
    as the client reads it."""
    frame = memoryview(bytearray(encode_request(body, version, 7, "test")))[4:]
    header, request = decode_request(frame)
    handler = load_all()[ApiKey.ELECT_LEADERS]
    services = ("controller", "metadata", "authorizer")
    assert (handler.min_version, handler.max_version, handler.services) == (0, 2, services)
    answer = handler.fn(
        RequestContext(header, "test:0"), request, controller=controller, metadata=metadata, authorizer=None
    )
    response = await answer.run() if isinstance(answer, Later) else answer
    data = b"".join(bytes(c) for c in encode_response(response, version, 7, ApiKey.ELECT_LEADERS))
    return decode_response(ApiKey.ELECT_LEADERS, version, memoryview(data)[4:])[1]


def answers(response) -> dict:
    return {
        (r.topic, p.partition_id): (p.error_code, p.error_message)
        for r in response.replica_election_results
        for p in r.partition_result
    }


def asking(*tps) -> list[TopicPartitions]:
    topics: dict[str, list[int]] = {}
    for t, p in tps:
        topics.setdefault(t, []).append(p)
    return [TopicPartitions(topic=t, partitions=ps) for t, ps in topics.items()]


def single_node(tmp_path) -> LocalMetadata:
    metadata = LocalMetadata(tmp_path / "metadata.json", 1, BrokerInfo(1, "127.0.0.1", 9092))
    metadata.create_topic("t", [[1], [1]])
    return metadata


async def test_a_single_node_needs_no_election(tmp_path):
    metadata = single_node(tmp_path)
    elections = SingleNodeElections(metadata)
    for version in (0, 1, 2):
        response = await elect(
            ElectLeadersRequest(topic_partitions=asking(("t", 0), ("t", 7), ("u", 0))),
            version,
            controller=elections,
            metadata=metadata,
        )
        assert response.error_code == 0
        assert answers(response) == {
            ("t", 0): (ErrorCode.ELECTION_NOT_NEEDED, "Leader election not needed for topic partition."),
            ("t", 7): (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "The partition does not exist."),
            ("u", 0): (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "The partition does not exist."),
        }
    # Every partition (null topics): those that needed no election are left out.
    response = await elect(ElectLeadersRequest(topic_partitions=None), 2, controller=elections, metadata=metadata)
    assert (response.error_code, answers(response)) == (0, {})


async def test_an_unknown_election_type_fails_the_request(tmp_path):
    metadata = single_node(tmp_path)
    body = ElectLeadersRequest(election_type=5, topic_partitions=asking(("t", 0), ("t", 1)))
    response = await elect(body, 1, controller=SingleNodeElections(metadata), metadata=metadata)
    assert response.error_code == ErrorCode.UNKNOWN_SERVER_ERROR
    assert answers(response) == {("t", p): (ErrorCode.UNKNOWN_SERVER_ERROR, None) for p in (0, 1)}


class ZooKeeperView:
    """A stand-in for a broker's metadata cache: reads ZooKeeper through
    the test's kazoo client each time it is asked."""

    def __init__(self, zk_admin):
        self.zk_admin = zk_admin

    def topic(self, name: str) -> TopicInfo | None:
        if self.zk_admin.exists(zn.topic_path(name)) is None:
            return None
        znode = zn.decode_topic(self.zk_admin.get(zn.topic_path(name))[0])
        partitions = [
            PartitionInfo(p, r, state(self.zk_admin, name, p) or PartitionState(-1, -1, []))
            for p, r in sorted(znode.assignment.items())
        ]
        return TopicInfo(name, znode.topic_id, partitions)

    def all_topics(self) -> list[TopicInfo]:
        return [self.topic(t) for t in self.zk_admin.get_children(zn.BROKER_TOPICS)]

    def partition_state(self, topic: str, index: int) -> PartitionState | None:
        return state(self.zk_admin, topic, index)

    async def wait_until(self, condition, deadline) -> bool:
        with trio.move_on_at(deadline):
            while not condition():
                await trio.sleep(0.01)
            return True
        return condition()


class FrozenView(ZooKeeperView):
    """A broker whose cache never hears of the new leader."""

    def __init__(self, zk_admin):
        super().__init__(zk_admin)
        self.states = {}

    def partition_state(self, topic: str, index: int) -> PartitionState | None:
        key = (topic, index)
        if key not in self.states:
            self.states[key] = super().partition_state(topic, index)
        return self.states[key]


async def test_elections_through_the_controller(zk_connect, zk_admin):
    register(zk_admin, 1, 2)
    view = ZooKeeperView(zk_admin)
    async with controllers(zk_connect, [1, 2]) as nodes:
        (active,) = await until(lambda: [n for n in nodes if n.controller.active])
        (standby,) = [n for n in nodes if n is not active]
        create_topic(zk_admin, "t", {0: [1, 2], 1: [2, 1], 2: [1, 2]})
        await until(lambda: all(state(zk_admin, "t", p) is not None for p in range(3)))
        epoch = active.controller.epoch
        write_state(zk_admin, "t", 0, PartitionState(2, 1, [1, 2], controller_epoch=epoch))
        write_state(zk_admin, "t", 2, PartitionState(2, 1, [1, 2], controller_epoch=epoch))

        # A broker that is not the controller: NOT_CONTROLLER for each partition, none at the top.
        body = ElectLeadersRequest(election_type=0, topic_partitions=asking(("t", 0), ("t", 1)))
        response = await elect(body, 1, controller=standby.controller, metadata=view)
        assert response.error_code == 0
        assert answers(response) == {
            ("t", 0): (ErrorCode.NOT_CONTROLLER, None),
            ("t", 1): (ErrorCode.NOT_CONTROLLER, None),
        }

        # The controller: answered once the broker's metadata shows the new leader.
        response = await elect(body, 2, controller=active.controller, metadata=view)
        assert answers(response) == {
            ("t", 0): (0, None),
            ("t", 1): (ErrorCode.ELECTION_NOT_NEEDED, "Leader election not needed for topic partition."),
        }
        assert state(zk_admin, "t", 0).leader == 1

        # Every partition: only the one elected (or failed) is answered.
        response = await elect(
            ElectLeadersRequest(topic_partitions=None), 2, controller=active.controller, metadata=view
        )
        assert answers(response) == {("t", 2): (0, None)}

        # A broker whose metadata does not show the leader in time answers REQUEST_TIMED_OUT.
        write_state(zk_admin, "t", 0, PartitionState(2, 5, [1, 2], controller_epoch=epoch))
        body = ElectLeadersRequest(topic_partitions=asking(("t", 0)), timeout_ms=300)
        response = await elect(body, 0, controller=active.controller, metadata=FrozenView(zk_admin))
        assert answers(response) == {("t", 0): (ErrorCode.REQUEST_TIMED_OUT, None)}
        assert state(zk_admin, "t", 0).leader == 1
