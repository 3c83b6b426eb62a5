"""pybroker.zk.ZkClient against a real ZooKeeper.

A read through the client is the tests' synchronisation point: ZooKeeper
sends a client the events of a change before its answer to any later
request, and the client delivers both to Trio in that order, so once
``await zk.exists("/")`` returns, every event of a change already made has
been delivered.
"""

import logging
import math
import threading
import time

import pytest
import trio
import trio.testing
from kazoo.client import KazooClient

from pybroker.zk import (
    BadVersionError,
    ConnectionLossError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    ZkClient,
    ZkConnectTimeout,
    ZkEvent,
    ops,
)
from pybroker.zk.server import ZooKeeperServer, free_port

from ..zk_fixtures import kazoo_client
from .gate import Gate


async def synced(zk: ZkClient) -> None:
    await zk.exists("/")


class States:
    """A session listener that a test can wait on."""

    def __init__(self, zk: ZkClient):
        self.seen: list[str] = []
        self._send, self._receive = trio.open_memory_channel(math.inf)
        zk.add_session_listener(self._heard)

    def _heard(self, state: str) -> None:
        self.seen.append(state)
        self._send.send_nowait(state)

    async def until(self, state: str, timeout: float = 30) -> None:
        with trio.fail_after(timeout):
            while await self._receive.receive() != state:
                pass


class Events:
    """A watch callback that a test can wait on."""

    def __init__(self):
        self.seen: list[ZkEvent] = []
        self.threads: set[int] = set()
        self._send, self._receive = trio.open_memory_channel(math.inf)

    def __call__(self, event: ZkEvent) -> None:
        self.seen.append(event)
        self.threads.add(threading.get_ident())
        self._send.send_nowait(event)

    async def next(self, timeout: float = 30) -> ZkEvent:
        with trio.fail_after(timeout):
            return await self._receive.receive()


def through(gate: Gate, connect: str) -> str:
    """``connect`` with its host replaced by the gate's."""
    return gate.address + "/" + connect.partition("/")[2]


async def test_reads_and_writes(zk, zk_admin):
    assert zk.connected
    assert await zk.create("/a", b"one") == "/a"
    data, stat = await zk.get("/a")
    assert (data, stat.version, stat.ephemeralOwner) == (b"one", 0, 0)
    stat = await zk.set("/a", b"two", version=0)
    assert stat.version == 1 and zk_admin.get("/a")[0] == b"two"
    assert await zk.create("/a/b/c", makepath=True) == "/a/b/c"
    await zk.ensure_path("/a/d/e")
    await zk.ensure_path("/a/d/e")
    assert sorted(await zk.get_children("/a")) == ["b", "d"]
    assert (await zk.exists("/a")).numChildren == 2
    assert await zk.exists("/nothing") is None
    node = await zk.create("/a/seq-", b"", sequence=True)
    assert node.startswith("/a/seq-") and len(node) == len("/a/seq-") + 10
    await zk.delete(node)
    eph = await zk.create("/eph", ephemeral=True)
    assert zk_admin.exists(eph).ephemeralOwner == zk.session_id
    await zk.delete("/a", recursive=True)
    assert zk_admin.exists("/a") is None
    await zk.delete("/a", recursive=True)  # already gone: nothing to do


async def test_errors_are_zookeepers(zk, zk_admin):
    with pytest.raises(NoNodeError):
        await zk.get("/missing")
    with pytest.raises(NoNodeError):
        await zk.get_children("/missing")
    with pytest.raises(NoNodeError):
        await zk.set("/missing", b"")
    with pytest.raises(NoNodeError):
        await zk.delete("/missing")
    zk_admin.create("/n/child", makepath=True)
    with pytest.raises(NodeExistsError):
        await zk.create("/n")
    with pytest.raises(BadVersionError):
        await zk.set("/n", b"x", version=3)
    with pytest.raises(BadVersionError):
        await zk.delete("/n/child", version=3)
    with pytest.raises(NotEmptyError):
        await zk.delete("/n")
    assert zk_admin.exists("/n/child") is not None


async def test_a_watch_fires_once_in_the_trio_thread_and_can_be_rearmed(zk, zk_admin):
    zk_admin.create("/w", b"0")
    events = Events()
    assert (await zk.get("/w", watch=events))[0] == b"0"
    zk_admin.set("/w", b"1")
    zk_admin.set("/w", b"2")
    await synced(zk)
    assert events.seen == [ZkEvent("changed", "/w")]
    assert events.threads == {threading.get_ident()}

    assert (await zk.get("/w", watch=events))[0] == b"2"
    zk_admin.delete("/w")
    await synced(zk)
    assert events.seen[1:] == [ZkEvent("deleted", "/w")]
    # Fired watches are forgotten, not kept for ever.
    assert len(zk._watches) == 0


async def test_exists_and_children_watches(zk, zk_admin):
    created, children = Events(), Events()
    assert await zk.exists("/later", watch=created) is None
    zk_admin.create("/later")
    assert await created.next() == ZkEvent("created", "/later")

    assert await zk.get_children("/later", watch=children) == []
    zk_admin.create("/later/kid")
    assert await children.next() == ZkEvent("child", "/later")
    await zk.get_children("/later", watch=children)
    zk_admin.delete("/later", recursive=True)
    await synced(zk)
    # The child's deletion changes the children, then the node goes: one event, the first.
    assert children.seen[1:] == [ZkEvent("child", "/later")]


async def test_the_same_callback_on_the_same_path_registers_once(zk, zk_admin):
    zk_admin.create("/once")
    events, other = Events(), Events()
    await zk.get("/once", watch=events)
    await zk.get("/once", watch=events)
    await zk.exists("/once", watch=events)
    await zk.exists("/once", watch=other)
    zk_admin.set("/once", b"x")
    await synced(zk)
    assert events.seen == [ZkEvent("changed", "/once")]
    assert other.seen == [ZkEvent("changed", "/once")]


async def test_multi_is_all_or_nothing(zk, zk_admin):
    zk_admin.create("/m", b"0")
    with pytest.raises(BadVersionError) as failed:
        await zk.multi([ops.create("/m2", b"new"), ops.check("/m", 5), ops.set("/m", b"1")])
    assert failed.value.op_index == 1
    assert zk_admin.exists("/m2") is None and zk_admin.get("/m")[0] == b"0"

    with pytest.raises(NodeExistsError) as failed:
        await zk.multi([ops.check("/m", 0), ops.set("/m", b"1", version=0), ops.create("/m")])
    assert failed.value.op_index == 2
    assert zk_admin.get("/m")[1].version == 0

    results = await zk.multi(
        [ops.create("/m2", b"new"), ops.check("/m", 0), ops.set("/m", b"1", version=0), ops.delete("/m2")]
    )
    assert results[0] == "/m2" and results[1] is True and results[2].version == 1 and results[3] is True
    assert zk_admin.get("/m")[0] == b"1" and zk_admin.exists("/m2") is None
    assert await zk.multi([]) == []


async def test_the_chroot_is_created_when_missing(zookeeper_server, zk_connect):
    zk = ZkClient(zk_connect + "/nested/root", session_timeout_ms=6000)
    await zk.connect()
    try:
        await zk.create("/inside", b"x")
        assert await zk.get_children("/") == ["inside"]
    finally:
        await zk.close()
    root = kazoo_client(zookeeper_server.connect)
    try:
        chroot = "/" + zk_connect.partition("/")[2]
        assert root.get(chroot + "/nested/root/inside")[0] == b"x"
    finally:
        root.stop()
        root.close()


async def test_connecting_to_nothing_times_out():
    zk = ZkClient(f"127.0.0.1:{free_port()}", session_timeout_ms=6000, connection_timeout_ms=1000)
    started = time.monotonic()
    with pytest.raises(ZkConnectTimeout, match="^Timed out waiting for connection while in state: CONNECTING$"):
        await zk.connect()
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 6.0
    assert not zk.connected
    # kazoo was stopped: its connection thread has ended.
    assert zk._kazoo._connection.connection_stopped.is_set()


async def test_the_granted_session_timeout_is_known_and_a_difference_warned(zk_connect, caplog):
    caplog.set_level(logging.INFO, logger="pybroker.zk")
    zk = ZkClient(zk_connect, session_timeout_ms=500)  # below the server's minimum (1000)
    await zk.connect()
    try:
        assert zk.negotiated_timeout_ms == 1000
        warned = [r for r in caplog.records if r.name == "pybroker.zk.client" and r.levelno == logging.WARNING]
        assert len(warned) == 1
        assert "1000 ms granted, 500 ms requested" in warned[0].getMessage()
    finally:
        await zk.close()

    caplog.clear()
    zk = ZkClient(zk_connect, session_timeout_ms=7000)
    await zk.connect()
    try:
        assert zk.negotiated_timeout_ms == 7000
        mine = [r for r in caplog.records if r.name == "pybroker.zk.client"]
        assert [r.levelno for r in mine] == [logging.INFO]
        assert f"0x{zk.session_id:x}" in mine[0].getMessage()
    finally:
        await zk.close()


async def test_an_expired_session_is_replaced_by_a_new_one(zookeeper_server, zk, zk_admin):
    states = States(zk)
    zk_admin.create("/watched")
    events = Events()
    await zk.get("/watched", watch=events)
    await zk.create("/mine", ephemeral=True)
    old_session = zk.session_id

    # The classic way to expire a session: another client takes it over and closes it.
    session_id, password = zk._kazoo.client_id

    def take_over_and_close():
        thief = KazooClient(hosts=zookeeper_server.connect, client_id=(session_id, password))
        thief.start(10)
        thief.stop()
        thief.close()

    await trio.to_thread.run_sync(take_over_and_close)
    await states.until("expired")
    await states.until("connected")
    assert states.seen.index("expired") < len(states.seen) - 1
    assert zk.connected and zk.session_id != old_session
    assert zk.negotiated_timeout_ms == 6000
    assert zk_admin.exists("/mine") is None
    # The watches went with the session: callers set them again.
    zk_admin.set("/watched", b"changed")
    await synced(zk)
    assert events.seen == []
    await zk.create("/mine", ephemeral=True)
    assert zk_admin.exists("/mine").ephemeralOwner == zk.session_id


@pytest.fixture
def own_zookeeper(tmp_path):
    with ZooKeeperServer(tmp_path / "zk") as server:
        yield server


async def test_zookeeper_restarted_within_the_session_keeps_it(own_zookeeper):
    # A session long enough to outlast ZooKeeper's JVM restarting on a
    # loaded machine (it once took longer than 10 s in CI).
    zk = ZkClient(own_zookeeper.connect + "/kept", session_timeout_ms=30000)
    await zk.connect()
    try:
        states = States(zk)
        await zk.create("/p", b"0")
        await zk.create("/mine", ephemeral=True)
        changed, created = Events(), Events()
        await zk.get("/p", watch=changed)
        await zk.exists("/absent", watch=created)
        session = zk.session_id

        await trio.to_thread.run_sync(lambda: own_zookeeper.restart(kill=True))
        await states.until("suspended")
        await states.until("connected", timeout=60)
        assert zk.session_id == session and "expired" not in states.seen
        assert (await zk.exists("/mine")).ephemeralOwner == session

        # The watches set before the restart still fire.
        admin = await trio.to_thread.run_sync(kazoo_client, own_zookeeper.connect + "/kept")
        try:
            admin.set("/p", b"1")
            assert await changed.next() == ZkEvent("changed", "/p")
            admin.create("/absent")
            assert await created.next() == ZkEvent("created", "/absent")
        finally:
            admin.stop()
            admin.close()
        assert "expired" not in states.seen
    finally:
        await zk.close()


async def test_changes_made_while_disconnected_fire_the_watches_on_reconnection(zookeeper_server, zk_connect, zk_admin):
    gate = Gate(zookeeper_server.port)
    zk = ZkClient(through(gate, zk_connect), session_timeout_ms=6000)
    try:
        await zk.connect()
        states = States(zk)
        for node in ("/data", "/dir", "/calm"):
            zk_admin.create(node)
        data, absent, dir_children, calm, dir_data = Events(), Events(), Events(), Events(), Events()
        await zk.get("/data", watch=data)
        await zk.exists("/later", watch=absent)
        await zk.get_children("/dir", watch=dir_children)
        await zk.get("/dir", watch=dir_data)
        await zk.get("/calm", watch=calm)
        session = zk.session_id

        gate.cut()
        await states.until("suspended")
        zk_admin.set("/data", b"new")
        zk_admin.create("/later")
        zk_admin.create("/dir/kid")
        gate.heal()
        await states.until("connected")
        assert zk.session_id == session
        await synced(zk)
        assert data.seen == [ZkEvent("changed", "/data")]
        assert absent.seen == [ZkEvent("created", "/later")]
        assert dir_children.seen == [ZkEvent("child", "/dir")]
        assert dir_data.seen == calm.seen == []
        # Unchanged nodes' watches were set again, silently.
        zk_admin.set("/calm", b"now")
        assert await calm.next() == ZkEvent("changed", "/calm")
    finally:
        await zk.close()
        gate.close()


async def test_the_trio_thread_runs_while_zookeeper_is_silent(zookeeper_server, zk_connect, zk_admin):
    gate = Gate(zookeeper_server.port)
    # Were the Trio thread blocked, nothing below could run until this lets the bytes through.
    failsafe = threading.Timer(20, gate.resume)
    zk = ZkClient(through(gate, zk_connect), session_timeout_ms=6000)
    answers = []
    try:
        zk_admin.create("/slow", b"v")
        failsafe.start()
        async with trio.open_nursery() as nursery:

            async def connect_and_read():
                await zk.connect()
                answers.append((await zk.get("/slow"))[0])

            gate.pause()
            nursery.start_soon(connect_and_read)
            ticks = 0
            while ticks < 100:
                await trio.lowlevel.checkpoint()
                ticks += 1
            assert answers == [] and not zk.connected
            gate.resume()
        assert answers == [b"v"]

        gate.pause()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: zk.set("/slow", b"w"))
            ticks = 0
            while ticks < 100:
                await trio.lowlevel.checkpoint()
                ticks += 1
            assert zk_admin.get("/slow")[0] == b"v"
            gate.resume()
        assert zk_admin.get("/slow")[0] == b"w"
    finally:
        failsafe.cancel()
        gate.close()
        await zk.close()


async def test_events_arrive_before_the_answer_that_follows_them(zk):
    """ZooKeeper sends the event of a change before its answer to the
    request that made it; Trio sees them in that order too, every time."""
    await zk.create("/order")
    events = Events()
    late = 0
    for round in range(300):
        await zk.get("/order", watch=events)
        await zk.set("/order", b"%d" % round)
        late += len(events.seen) != round + 1
        await synced(zk)
    assert late == 0 and len(events.seen) == 300


async def test_connection_loss_reaches_the_requests_in_flight_and_later_ones_wait(
    zookeeper_server, zk_connect, zk_admin
):
    gate = Gate(zookeeper_server.port)
    zk = ZkClient(through(gate, zk_connect), session_timeout_ms=6000)
    try:
        await zk.connect()
        states = States(zk)
        zk_admin.create("/n", b"v")
        gate.pause()
        async with trio.open_nursery() as nursery:

            async def read_in_flight():
                with pytest.raises(ConnectionLossError):
                    await zk.get("/n")

            nursery.start_soon(read_in_flight)
            await trio.testing.wait_all_tasks_blocked()
            gate.cut()
        await states.until("suspended")

        answers = []

        async def read_while_disconnected():
            answers.append((await zk.get("/n"))[0])

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_while_disconnected)
            await trio.testing.wait_all_tasks_blocked()
            assert answers == [] and not zk.connected
            gate.resume()
            gate.heal()
        assert answers == [b"v"] and states.seen == ["suspended", "connected"]
    finally:
        await zk.close()
        gate.close()
