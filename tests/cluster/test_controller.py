"""The controller against a real ZooKeeper: several controllers, each with
its own session, in one Trio test. Brokers are stand-ins: their
registrations are ephemeral znodes written in Kafka's format through
``zk_admin`` (a plain kazoo client), and so are topics created by hand,
as Kafka's tools write them."""

from __future__ import annotations

import logging
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
import trio
from kazoo.client import KazooClient

from pybroker.cluster import controller_active
from pybroker.cluster import znodes as zn
from pybroker.cluster.controller import Controller
from pybroker.cluster.model import PartitionState
from pybroker.config import BrokerConfig
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import KafkaError
from pybroker.zk import ZkClient

SESSION_MS = 4000
DEADLINE_S = 10


@dataclass
class Node:
    controller: Controller
    zk: ZkClient


@asynccontextmanager
async def controllers(zk_connect: str, ids, **props: str):
    """A running Controller per id, each on its own ZooKeeper session."""
    settings = {k.replace("_", "."): v for k, v in props.items()}
    async with trio.open_nursery() as nursery:
        nodes = []
        try:
            for node_id in ids:
                zk = ZkClient(zk_connect, session_timeout_ms=SESSION_MS)
                await zk.connect()
                controller = Controller(zk, node_id, BrokerConfig(settings))
                nodes.append(Node(controller, zk))
                await nursery.start(controller.run)
            yield nodes
        finally:
            nursery.cancel_scope.cancel()
            for node in nodes:
                await node.zk.close()


async def until(condition, timeout: float = DEADLINE_S, what: str = "condition"):
    with trio.move_on_after(timeout):
        while not (value := condition()):
            await trio.sleep(0.01)
        return value
    raise AssertionError(f"{what} not met within {timeout} s")


def active(nodes) -> list[Node]:
    return [n for n in nodes if n.controller.active]


def register(zk_admin: KazooClient, *ids: int) -> None:
    for i in ids:
        reg = zn.BrokerRegistration(i, "127.0.0.1", 9090 + i, timestamp_ms=int(time.time() * 1000))
        zk_admin.create(zn.broker_path(i), zn.encode_broker(reg), ephemeral=True, makepath=True)


def create_topic(zk_admin: KazooClient, name: str, assignment: dict[int, list[int]], topic_id=None) -> uuid.UUID:
    """As Kafka's AdminZkClient writes a topic: its config, then its znode."""
    topic_id = topic_id or uuid.uuid4()
    zk_admin.create(zn.topic_config_path(name), zn.encode_topic_config({}), makepath=True)
    zk_admin.create(zn.topic_path(name), zn.encode_topic(topic_id, assignment), makepath=True)
    return topic_id


def state(zk_admin: KazooClient, name: str, p: int) -> PartitionState | None:
    stat = zk_admin.exists(zn.partition_state_path(name, p))
    if stat is None:
        return None
    data, stat = zk_admin.get(zn.partition_state_path(name, p))
    return zn.decode_partition_state(data, stat.version)


def epoch_in_zk(zk_admin: KazooClient) -> tuple[int, int]:
    data, stat = zk_admin.get(zn.CONTROLLER_EPOCH)
    return zn.decode_controller_epoch(data), stat.version


def write_state(zk_admin: KazooClient, name: str, p: int, new: PartitionState) -> None:
    zk_admin.set(zn.partition_state_path(name, p), zn.encode_partition_state(new))


async def test_one_of_three_is_elected_and_another_takes_over_with_the_next_epoch(zk_connect, zk_admin):
    async with controllers(zk_connect, [1, 2, 3]) as nodes:
        (first,) = await until(lambda: active(nodes), what="a controller")
        assert [n.controller.active for n in nodes].count(True) == 1
        epoch, _ = epoch_in_zk(zk_admin)
        assert (first.controller.epoch, epoch) == (1, 1)
        data, stat = zk_admin.get(zn.CONTROLLER)
        assert zn.decode_controller(data) == first.controller.node_id
        assert stat.ephemeralOwner == first.zk.session_id
        others = [n for n in nodes if n is not first]
        await until(lambda: all(n.controller.active_id == first.controller.node_id for n in others))

        # Its session ends: one of the others becomes controller, with the next epoch.
        started = trio.current_time()
        await first.zk.close()
        (second,) = await until(lambda: active(others), what="a new controller")
        took = trio.current_time() - started
        assert took < first.zk.negotiated_timeout_ms / 1000 + 1
        assert second.controller.epoch == 2 and epoch_in_zk(zk_admin)[0] == 2
        assert [n.controller.active for n in others].count(True) == 1


async def test_a_controller_whose_epoch_moved_on_writes_nothing_and_steps_back(zk_connect, zk_admin, caplog):
    caplog.set_level(logging.INFO, "pybroker.controller")
    register(zk_admin, 1, 2)
    async with controllers(zk_connect, [1]) as nodes:
        (node,) = nodes
        await until(lambda: node.controller.active)
        # An empty election goes through the controller's queue: once it
        # is answered, the events of its own election have been handled.
        assert await node.controller.elect_leaders([]) == {}
        epoch, version = epoch_in_zk(zk_admin)
        # Behind its back, as a newer controller (99) would: a topic is
        # created, then the epoch is bumped and /controller taken over in
        # one transaction. The controller hears of the topic first.
        create_topic(zk_admin, "t", {0: [1, 2], 1: [2, 1]})
        tx = zk_admin.transaction()
        tx.set_data(zn.CONTROLLER_EPOCH, zn.encode_controller_epoch(epoch + 1), version)
        tx.delete(zn.CONTROLLER)
        tx.create(zn.CONTROLLER, zn.encode_controller(99, 0))
        assert not any(isinstance(r, Exception) for r in tx.commit())

        await until(lambda: "Controller epoch zkVersion check fails" in caplog.text, what="a fenced write")
        await until(lambda: not node.controller.active and node.controller.active_id == 99)
        # Its creations went in one multi behind the failed check: nothing of them is there.
        assert zk_admin.exists(zn.partitions_path("t")) is None
        assert zk_admin.get_children(zn.topic_path("t")) == []

        # The same controller elected again (epoch + 1) writes them.
        zk_admin.delete(zn.CONTROLLER)
        await until(lambda: node.controller.active)
        assert node.controller.epoch == epoch + 2
        await until(lambda: state(zk_admin, "t", 1) is not None)
        assert state(zk_admin, "t", 1).controller_epoch == epoch + 2


async def test_a_topic_created_by_hand_gets_its_partition_states(zk_connect, zk_admin):
    register(zk_admin, 1, 2)
    async with controllers(zk_connect, [1]) as (node,):
        await until(lambda: node.controller.active)
        c_epoch = node.controller.epoch
        create_topic(zk_admin, "t", {0: [1, 2, 3], 1: [3, 2, 1], 2: [3]})
        await until(lambda: state(zk_admin, "t", 1) is not None)
        # Broker 3 is not registered: it is left out of the ISRs, and
        # partition 2, with no live replica, stays without a state.
        assert state(zk_admin, "t", 0) == PartitionState(1, 0, [1, 2], controller_epoch=c_epoch, version=0)
        assert state(zk_admin, "t", 1) == PartitionState(2, 0, [2, 1], controller_epoch=c_epoch, version=0)
        data, _ = zk_admin.get(zn.partition_state_path("t", 0))
        assert data == b'{"controller_epoch":%d,"leader":1,"version":1,"leader_epoch":0,"isr":[1,2]}' % c_epoch
        assert state(zk_admin, "t", 2) is None and zk_admin.exists(zn.partition_path("t", 2)) is None

        register(zk_admin, 3)
        await until(lambda: state(zk_admin, "t", 2) is not None, what="the state once broker 3 registered")
        assert state(zk_admin, "t", 2) == PartitionState(3, 0, [3], controller_epoch=c_epoch, version=0)
        assert state(zk_admin, "t", 0).version == 0  # untouched


async def test_a_topic_written_without_an_id_is_given_one(zk_connect, zk_admin):
    register(zk_admin, 1)
    async with controllers(zk_connect, [1]) as (node,):
        await until(lambda: node.controller.active)
        # A topic znode as Kafka before 2.8 wrote it.
        zk_admin.create(zn.topic_path("old"), b'{"version":1,"partitions":{"0":[1]}}', makepath=True)

        def topic_id():
            return zn.decode_topic(zk_admin.get(zn.topic_path("old"))[0]).topic_id

        await until(lambda: topic_id() is not None)
        assert zn.decode_topic(zk_admin.get(zn.topic_path("old"))[0]).assignment == {0: [1]}
        await until(lambda: state(zk_admin, "old", 0) is not None)


async def test_added_partitions_get_states_and_the_others_keep_theirs(zk_connect, zk_admin):
    register(zk_admin, 1, 2)
    async with controllers(zk_connect, [1]) as (node,):
        await until(lambda: node.controller.active)
        topic_id = create_topic(zk_admin, "t", {0: [1, 2], 1: [2, 1]})
        await until(lambda: state(zk_admin, "t", 1) is not None)
        # The leader of partition 0 shrank its ISR meanwhile.
        shrunk = PartitionState(1, 0, [1], controller_epoch=node.controller.epoch)
        write_state(zk_admin, "t", 0, shrunk)

        zk_admin.set(zn.topic_path("t"), zn.encode_topic(topic_id, {0: [1, 2], 1: [2, 1], 2: [1, 2], 3: [2, 1]}))
        await until(lambda: state(zk_admin, "t", 3) is not None)
        assert state(zk_admin, "t", 2) == PartitionState(1, 0, [1, 2], node.controller.epoch, 0)
        assert state(zk_admin, "t", 3) == PartitionState(2, 0, [2, 1], node.controller.epoch, 0)
        assert state(zk_admin, "t", 0) == PartitionState(1, 0, [1], node.controller.epoch, 1)
        assert state(zk_admin, "t", 1).version == 0


async def test_a_topic_marked_for_deletion_is_deleted(zk_connect, zk_admin):
    register(zk_admin, 1, 2)
    async with controllers(zk_connect, [1]) as (node,):
        await until(lambda: node.controller.active)
        create_topic(zk_admin, "t", {0: [1, 2], 1: [2, 1]})
        create_topic(zk_admin, "kept", {0: [1]})
        await until(lambda: state(zk_admin, "t", 1) is not None and state(zk_admin, "kept", 0) is not None)

        zk_admin.create(zn.delete_topic_path("t"), makepath=True)
        zk_admin.create(zn.delete_topic_path("unknown"), makepath=True)
        await until(lambda: zk_admin.get_children(zn.DELETE_TOPICS) == [], what="the markers gone")
        assert zk_admin.exists(zn.topic_path("t")) is None
        assert zk_admin.exists(zn.topic_config_path("t")) is None
        assert zk_admin.get_children(zn.BROKER_TOPICS) == ["kept"]
        assert zk_admin.exists(zn.topic_config_path("kept")) is not None

        # A topic of the same name created again is a new topic to it.
        create_topic(zk_admin, "t", {0: [2]})
        await until(lambda: state(zk_admin, "t", 0) is not None)
        assert state(zk_admin, "t", 0).leader == 2


async def test_with_topic_deletion_disabled_markers_are_dropped_and_nothing_is_deleted(zk_connect, zk_admin):
    register(zk_admin, 1)
    async with controllers(zk_connect, [1], delete_topic_enable="false") as (node,):
        await until(lambda: node.controller.active)
        create_topic(zk_admin, "t", {0: [1]})
        await until(lambda: state(zk_admin, "t", 0) is not None)
        zk_admin.create(zn.delete_topic_path("t"), makepath=True)
        await until(lambda: zk_admin.get_children(zn.DELETE_TOPICS) == [])
        assert state(zk_admin, "t", 0) is not None
        assert zk_admin.exists(zn.topic_config_path("t")) is not None


async def test_preferred_leader_election(zk_connect, zk_admin):
    register(zk_admin, 1, 2)
    async with controllers(zk_connect, [1, 2]) as nodes:
        (node,) = await until(lambda: active(nodes))
        (other,) = [n for n in nodes if n is not node]
        c_epoch = node.controller.epoch
        create_topic(zk_admin, "t", {0: [1, 2], 1: [2, 1], 2: [1, 2], 3: [3, 1], 4: [1, 2]})
        await until(lambda: all(state(zk_admin, "t", p) is not None for p in range(5)))
        # Partition 0 is led by its second replica; partition 2 too, with
        # the preferred one out of the ISR; partition 4 was last written by
        # a newer controller; partition 3's preferred broker is not live.
        write_state(zk_admin, "t", 0, PartitionState(2, 3, [2, 1], controller_epoch=c_epoch))
        write_state(zk_admin, "t", 2, PartitionState(2, 3, [2], controller_epoch=c_epoch))
        write_state(zk_admin, "t", 4, PartitionState(2, 3, [2, 1], controller_epoch=c_epoch + 5))

        results = await node.controller.elect_leaders([("t", p) for p in range(5)] + [("t", 9), ("nope", 0)])
        codes = {tp: (None if e is None else e.code) for tp, e in results.items()}
        assert codes == {
            ("t", 0): None,
            ("t", 1): ErrorCode.ELECTION_NOT_NEEDED,
            ("t", 2): ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE,
            ("t", 3): ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE,
            ("t", 4): ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE,
            ("t", 9): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
            ("nope", 0): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        }
        assert results[("t", 1)].message == "Leader election not needed for topic partition."
        # The preferred replica leads, with the next leader epoch and the same ISR.
        assert state(zk_admin, "t", 0) == PartitionState(1, 4, [2, 1], controller_epoch=c_epoch, version=2)
        assert state(zk_admin, "t", 2) == PartitionState(2, 3, [2], controller_epoch=c_epoch, version=1)
        assert state(zk_admin, "t", 4).controller_epoch == c_epoch + 5

        # Every partition: the one just elected needs nothing more.
        everything = await node.controller.elect_leaders(None)
        assert set(everything) == {("t", p) for p in range(5)}
        assert everything[("t", 0)].code == ErrorCode.ELECTION_NOT_NEEDED

        with pytest.raises(KafkaError) as refused:
            await other.controller.elect_leaders([("t", 0)])
        assert refused.value.code == ErrorCode.NOT_CONTROLLER


async def test_unclean_election_only_where_the_leader_is_gone(zk_connect, zk_admin):
    register(zk_admin, 1, 2)
    async with controllers(zk_connect, [1]) as (node,):
        await until(lambda: node.controller.active)
        create_topic(zk_admin, "t", {0: [1, 2], 1: [2, 1]})
        await until(lambda: state(zk_admin, "t", 1) is not None)
        epoch = node.controller.epoch
        write_state(zk_admin, "t", 1, PartitionState(2, 0, [2], epoch))  # 1 fell out of sync
        zk_admin.delete(zn.broker_path(2))
        # No live ISR member: the controller leaves t-1 without a leader.
        await until(lambda: state(zk_admin, "t", 1) == PartitionState(-1, 1, [2], epoch, 2))
        assert state(zk_admin, "t", 0) == PartitionState(1, 1, [1], epoch, 1)
        results = await node.controller.elect_leaders([("t", 0), ("t", 1)], preferred=False)
        assert results[("t", 0)].code == ErrorCode.ELECTION_NOT_NEEDED
        assert results[("t", 1)] is None
        assert state(zk_admin, "t", 1) == PartitionState(1, 2, [1], epoch, 3)


async def test_a_new_controller_rebuilds_its_view_from_zookeeper(zk_connect, zk_admin):
    register(zk_admin, 1, 2)
    async with controllers(zk_connect, [1, 2]) as nodes:
        (first,) = await until(lambda: active(nodes))
        topic_id = create_topic(zk_admin, "t", {0: [1, 2], 1: [2, 1]})
        await until(lambda: state(zk_admin, "t", 1) is not None)
        before = {p: zk_admin.exists(zn.partition_state_path("t", p)).mzxid for p in (0, 1)}

        await first.zk.close()
        (second,) = await until(lambda: active([n for n in nodes if n is not first]))
        zk_admin.set(zn.topic_path("t"), zn.encode_topic(topic_id, {0: [1, 2], 1: [2, 1], 2: [2, 1]}))
        await until(lambda: state(zk_admin, "t", 2) is not None)
        assert state(zk_admin, "t", 2) == PartitionState(2, 0, [2, 1], second.controller.epoch, 0)
        assert {p: zk_admin.exists(zn.partition_state_path("t", p)).mzxid for p in (0, 1)} == before


async def test_after_its_session_expires_the_controller_competes_again_and_rebuilds(zk_connect, zk_admin):
    register(zk_admin, 1)
    async with controllers(zk_connect, [1]) as (node,):
        await until(lambda: node.controller.active)
        old_session = node.zk.session_id
        # Expire its session from outside: another client that takes over
        # the session and closes it, as ZooKeeper's tests do.
        kazoo = node.zk._kazoo
        thief = KazooClient(hosts=zk_connect, client_id=(old_session, kazoo._session_passwd))
        thief.start(10)
        thief.stop()
        thief.close()
        await until(lambda: node.zk.session_id != old_session and node.controller.active, what="re-election")
        assert node.controller.epoch == 2
        # Its watches were set again in the new session.
        create_topic(zk_admin, "t", {0: [1]})
        await until(lambda: state(zk_admin, "t", 0) is not None)
        assert state(zk_admin, "t", 0).controller_epoch == 2


async def test_a_large_topic_goes_in_several_multis(zk_connect, zk_admin, monkeypatch):
    # Small limits stand for ZooKeeper's 1 MB request limit on a topic of thousands of partitions.
    monkeypatch.setattr(controller_active, "PARTITIONS_PER_MULTI", 3)
    monkeypatch.setattr(controller_active, "DELETIONS_PER_MULTI", 4)
    register(zk_admin, 1, 2)
    async with controllers(zk_connect, [1]) as (node,):
        await until(lambda: node.controller.active)
        create_topic(zk_admin, "t", {p: [1 + p % 2, 2 - p % 2] for p in range(10)})
        await until(lambda: all(state(zk_admin, "t", p) is not None for p in range(10)))
        assert [state(zk_admin, "t", p).leader for p in range(10)] == [1, 2] * 5
        zk_admin.create(zn.delete_topic_path("t"), makepath=True)
        await until(lambda: zk_admin.exists(zn.topic_path("t")) is None)
        assert zk_admin.get_children(zn.DELETE_TOPICS) == [] and zk_admin.exists(zn.topic_config_path("t")) is None
