"""The controller when its connection to ZooKeeper fails: a gate (a TCP
proxy the test can shut) stands between one controller and ZooKeeper."""

from __future__ import annotations

import pytest

from pybroker.cluster import znodes as zn
from tests.zk.gate import Gate

from .test_controller import controllers, create_topic, epoch_in_zk, register, state, until


def through(gate: Gate, connect: str) -> str:
    return gate.address + "/" + connect.partition("/")[2]


@pytest.fixture
def gate(zookeeper_server):
    gate = Gate(zookeeper_server.port)
    yield gate
    gate.close()


async def test_a_connection_lost_within_the_session_moves_nothing(gate, zk_connect, zk_admin):
    register(zk_admin, 1, 2)
    async with controllers(through(gate, zk_connect), [1]) as (first,):
        await until(lambda: first.controller.active)
        async with controllers(zk_connect, [2]) as (second,):
            await until(lambda: second.controller.active_id == 1)
            gate.cut()
            await until(lambda: not first.zk.connected, what="the connection lost")
            # Made while the controller cannot hear of it.
            create_topic(zk_admin, "t", {0: [1, 2]})
            gate.heal()
            await until(lambda: state(zk_admin, "t", 0) is not None, what="the state written after reconnection")
            assert state(zk_admin, "t", 0).controller_epoch == 1
            assert first.controller.active and first.controller.epoch == 1
            assert not second.controller.active and epoch_in_zk(zk_admin)[0] == 1


async def test_a_controller_cut_off_is_replaced_and_changes_nothing_once_back(gate, zk_connect, zk_admin):
    register(zk_admin, 1, 2)
    async with controllers(through(gate, zk_connect), [1]) as (first,):
        await until(lambda: first.controller.active)
        async with controllers(zk_connect, [2]) as (second,):
            await until(lambda: second.controller.active_id == 1)
            session_s = first.zk.negotiated_timeout_ms / 1000
            # As a killed broker: its session lives on in ZooKeeper until it times out.
            gate.cut()
            await until(lambda: second.controller.active, timeout=session_s + 1, what="a new controller in time")
            assert second.controller.epoch == 2 and epoch_in_zk(zk_admin)[0] == 2
            create_topic(zk_admin, "t", {0: [1, 2], 1: [2, 1]})
            await until(lambda: state(zk_admin, "t", 1) is not None)

            # Back, the old controller finds its session expired and stands by.
            gate.heal()
            await until(lambda: first.zk.connected and first.controller.active_id == 2, what="the old one back")
            assert not first.controller.active
            assert {p: state(zk_admin, "t", p).controller_epoch for p in (0, 1)} == {0: 2, 1: 2}
            assert zn.decode_controller(zk_admin.get(zn.CONTROLLER)[0]) == 2
