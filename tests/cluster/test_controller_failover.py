"""The controller moving leaderships off dead brokers, against a real
ZooKeeper, with stand-in brokers (ephemeral registrations written through
``zk_admin``) as in test_controller.py."""

from __future__ import annotations

from pybroker.cluster import znodes as zn
from pybroker.cluster.model import PartitionState

from .test_controller import active, controllers, create_topic, register, state, until, write_state


def live_in_view(node) -> set[int]:
    acting = node.controller._acting
    return set(acting.view.live) if acting is not None else set()


async def test_a_dead_brokers_leaderships_go_to_live_isr_members_and_it_leaves_every_isr(zk_connect, zk_admin):
    register(zk_admin, 1, 2, 3)
    async with controllers(zk_connect, [1]) as (node,):
        await until(lambda: node.controller.active)
        create_topic(zk_admin, "t", {0: [1, 2, 3], 1: [2, 3, 1], 2: [3, 1, 2], 3: [2, 1, 3]})
        await until(lambda: all(state(zk_admin, "t", p) is not None for p in range(4)))
        epoch = node.controller.epoch
        write_state(zk_admin, "t", 3, PartitionState(2, 0, [2, 3], epoch))  # 1 not in sync

        zk_admin.delete(zn.broker_path(2))
        await until(lambda: state(zk_admin, "t", 1).leader == 3, what="a new leader for t-1")
        assert state(zk_admin, "t", 0) == PartitionState(1, 1, [1, 3], epoch, 1)
        assert state(zk_admin, "t", 1) == PartitionState(3, 1, [3, 1], epoch, 1)
        assert state(zk_admin, "t", 2) == PartitionState(3, 1, [3, 1], epoch, 1)
        # The first live ISR member, not the first live replica.
        assert state(zk_admin, "t", 3) == PartitionState(3, 1, [3], epoch, 2)


async def test_a_partition_without_a_live_isr_member_waits_for_it_unless_unclean(zk_connect, zk_admin):
    register(zk_admin, 1, 2)
    async with controllers(zk_connect, [1]) as (node,):
        await until(lambda: node.controller.active)
        create_topic(zk_admin, "clean", {0: [2, 1]})
        create_topic(zk_admin, "unclean", {0: [2, 1]})
        zk_admin.set(zn.topic_config_path("unclean"), zn.encode_topic_config({"unclean.leader.election.enable": "true"}))
        await until(lambda: state(zk_admin, "clean", 0) is not None and state(zk_admin, "unclean", 0) is not None)
        epoch = node.controller.epoch
        for name in ("clean", "unclean"):
            write_state(zk_admin, name, 0, PartitionState(2, 0, [2], epoch))

        zk_admin.delete(zn.broker_path(2))
        await until(lambda: state(zk_admin, "unclean", 0).leader == 1, what="an unclean leader")
        assert state(zk_admin, "unclean", 0) == PartitionState(1, 1, [1], epoch, 2)
        await until(lambda: state(zk_admin, "clean", 0).leader == -1, what="no leader")
        assert state(zk_admin, "clean", 0) == PartitionState(-1, 1, [2], epoch, 2)

        # Its last ISR member back: it leads again.
        register(zk_admin, 2)
        await until(lambda: state(zk_admin, "clean", 0).leader == 2, what="the ISR member to lead again")
        assert state(zk_admin, "clean", 0) == PartitionState(2, 2, [2], epoch, 3)


async def test_unclean_election_as_the_brokers_default(zk_connect, zk_admin):
    register(zk_admin, 1, 2)
    async with controllers(zk_connect, [1], unclean_leader_election_enable="true") as (node,):
        await until(lambda: node.controller.active)
        create_topic(zk_admin, "t", {0: [2, 1]})
        await until(lambda: state(zk_admin, "t", 0) is not None)
        write_state(zk_admin, "t", 0, PartitionState(2, 0, [2], node.controller.epoch))
        zk_admin.delete(zn.broker_path(2))
        await until(lambda: state(zk_admin, "t", 0).leader == 1, what="an unclean leader")


async def test_a_bounced_broker_loses_its_leaderships_even_if_its_deletion_was_never_seen(zk_connect, zk_admin):
    register(zk_admin, 1, 2)
    async with controllers(zk_connect, [1]) as (node,):
        await until(lambda: node.controller.active)
        create_topic(zk_admin, "t", {0: [2, 1]})
        await until(lambda: state(zk_admin, "t", 0) == PartitionState(2, 0, [2, 1], node.controller.epoch, 0))
        before = node.controller._acting.view.live[2]
        # Deleted and registered again in one transaction: the controller
        # only ever sees a higher broker epoch.
        reg = zn.BrokerRegistration(2, "127.0.0.1", 9092, timestamp_ms=0)
        tx = zk_admin.transaction()
        tx.delete(zn.broker_path(2))
        tx.create(zn.broker_path(2), zn.encode_broker(reg), ephemeral=True)
        tx.commit()
        await until(lambda: node.controller._acting.view.live.get(2, 0) > before, what="the new broker epoch")
        await until(lambda: state(zk_admin, "t", 0).leader == 1, what="leadership to move")
        assert state(zk_admin, "t", 0) == PartitionState(1, 1, [1], node.controller.epoch, 1)


async def test_a_new_controller_elects_for_the_partitions_its_dead_predecessor_led(zk_connect, zk_admin):
    async with controllers(zk_connect, [1, 2]) as nodes:
        (first,) = await until(lambda: active(nodes), what="a controller")
        second = next(n for n in nodes if n is not first)
        dead, alive = first.controller.node_id, second.controller.node_id
        # Each stand-in broker registers on its controller's own session, so
        # that one session ending takes broker and controller together, as
        # a broker process dying does.
        for node in nodes:
            reg = zn.BrokerRegistration(node.controller.node_id, "127.0.0.1", 9090, timestamp_ms=0)
            await node.zk.create(zn.broker_path(node.controller.node_id), zn.encode_broker(reg), ephemeral=True)
        await until(lambda: live_in_view(first) == {1, 2}, what="both brokers in the view")
        create_topic(zk_admin, "t", {0: [dead, alive]})
        await until(lambda: state(zk_admin, "t", 0) is not None)
        assert state(zk_admin, "t", 0).leader == dead

        await first.zk.close()
        await until(lambda: second.controller.active, what="the second controller")
        await until(lambda: state(zk_admin, "t", 0).leader == alive, what="leadership to move")
        assert state(zk_admin, "t", 0) == PartitionState(alive, 1, [alive], second.controller.epoch, 1)
