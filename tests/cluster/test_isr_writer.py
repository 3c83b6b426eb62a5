"""The leader's ISR writer (cluster/zk_isr.py) against a real ZooKeeper:
a versioned write of the state znode keeping leader, leader epoch and
controller epoch; a write refused because the version moved is dropped,
not retried, until the newer state arrives; a write whose answer was lost
with the connection is found out by reading the znode again."""

import logging

import pytest
import trio

from pybroker.cluster import znodes
from pybroker.cluster.model import PartitionInfo, PartitionState
from pybroker.cluster.zk_isr import ZkIsrWriter
from pybroker.protocol.record_batch import RecordBatch
from pybroker.protocol.records import NewRecord, build_batch
from pybroker.replica import ReplicaManager, Role
from pybroker.storage.config import LogConfig
from pybroker.storage.log import PartitionLog
from pybroker.zk import ConnectionLossError, ZkClient

PATH = znodes.partition_state_path("t", 0)
EPOCH, CONTROLLER_EPOCH = 4, 3


def state_bytes(isr, leader=1, epoch=EPOCH) -> bytes:
    return znodes.encode_partition_state(PartitionState(leader, epoch, list(isr), CONTROLLER_EPOCH))


def info(isr, version, epoch=EPOCH) -> PartitionInfo:
    return PartitionInfo(0, [1, 2, 3], PartitionState(1, epoch, list(isr), CONTROLLER_EPOCH, version))


def read_state(zk_admin) -> PartitionState:
    data, stat = zk_admin.get(PATH)
    return znodes.decode_partition_state(data, stat.version)


async def until(condition, what: str, timeout: float = 10):
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.01)


@pytest.fixture
async def client(zk_connect, zk_admin):
    zk_admin.create(PATH, state_bytes([1, 2]), makepath=True)
    zk_admin.set(PATH, state_bytes([1, 2]))  # at version 1
    client = ZkClient(zk_connect)
    await client.connect()
    try:
        yield client
    finally:
        await client.close()


def leader(zk, tmp_path, isr=(1, 2), version=1):
    replicas = ReplicaManager(1, producer_expiration_ms=86_400_000, replica_lag_time_max_ms=1000)
    writer = replicas.isr_writer = ZkIsrWriter(zk, replicas)
    part = replicas.add("t", 0, PartitionLog(tmp_path / "t-0", LogConfig(write_caching=True)), info(isr, version))
    part.become(info(isr, version), Role.LEADER)
    part.append_as_leader(RecordBatch(bytearray(build_batch([NewRecord(value=b"v")] * 3))), now=0)
    return replicas, writer, part


async def test_an_expand_is_written_over_the_version_held(client, zk_admin, tmp_path, caplog):
    _replicas, writer, part = leader(client, tmp_path)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        with caplog.at_level(logging.INFO, logger="pybroker.replica"):
            part.follower_fetched(3, 0, 1)  # at the high watermark (0) and the epoch start (0)
            await until(lambda: writer.written == 1, "the write")
        nursery.cancel_scope.cancel()
    written = read_state(zk_admin)
    assert (written.leader, written.leader_epoch, written.controller_epoch) == (1, EPOCH, CONTROLLER_EPOCH)
    assert (written.isr, written.version) == ([1, 2, 3], 2)
    assert part.pending_isr_change is None and part.isr == {1, 2, 3}
    assert part.info.state == written
    assert "t-0: ISR 1,2 -> 1,2,3 (leader epoch 4): follower 3 caught up" in caplog.text
    # The metadata's echo of the same state changes nothing.
    part.become(info([1, 2, 3], 2), Role.LEADER)
    assert part.leader_state.version == 2 and part.pending_isr_change is None


async def test_a_shrink_after_the_lag_time(client, zk_admin, tmp_path):
    replicas, writer, part = leader(client, tmp_path)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        far = part.leader_state.followers[2].last_caught_up_ms + 1001
        assert replicas.shrink_isrs(far) == 1
        await until(lambda: writer.written == 1, "the write")
        nursery.cancel_scope.cancel()
    assert (read_state(zk_admin).isr, part.isr) == ([1], {1})


async def test_a_write_over_a_moved_version_is_dropped_until_the_newer_state(client, zk_admin, tmp_path, caplog):
    _replicas, writer, part = leader(client, tmp_path)
    zk_admin.set(PATH, state_bytes([1, 2]))  # version 2, written by someone else
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        with caplog.at_level(logging.INFO, logger="pybroker.replica"):
            part.follower_fetched(3, 0, 1)
            await until(lambda: writer.refused == 1, "the refusal")
        assert "not written: the state is no longer at version 1" in caplog.text
        assert read_state(zk_admin).isr == [1, 2]
        change = part.pending_isr_change
        assert change is not None  # in flight, not written again
        part.follower_fetched(3, 0, 2)
        assert part.pending_isr_change is change and writer.written == 0
        part.become(info([1, 2], 2), Role.LEADER)  # the metadata brings the newer state
        assert part.pending_isr_change is None
        part.follower_fetched(3, 0, 3)
        await until(lambda: writer.written == 1, "the write")
        nursery.cancel_scope.cancel()
    assert (read_state(zk_admin).isr, read_state(zk_admin).version) == ([1, 2, 3], 3)


class LosingAnswers:
    """The client, but the first write's answer is lost with the
    connection, after the write happened or before."""

    def __init__(self, zk, written: bool):
        self.zk = zk
        self.written = written
        self.lost = 0

    def __getattr__(self, name):
        return getattr(self.zk, name)

    async def set(self, path, data, version=-1):
        if not self.lost:
            self.lost += 1
            if self.written:
                await self.zk.set(path, data, version)
            raise ConnectionLossError()
        return await self.zk.set(path, data, version)


@pytest.mark.parametrize("written", [True, False])
async def test_a_write_whose_answer_was_lost_is_read_back(client, zk_admin, tmp_path, written):
    lossy = LosingAnswers(client, written)
    _replicas, writer, part = leader(lossy, tmp_path)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        part.follower_fetched(3, 0, 1)
        await until(lambda: writer.written == 1, "the write")
        nursery.cancel_scope.cancel()
    assert lossy.lost == 1
    assert (read_state(zk_admin).isr, read_state(zk_admin).version) == ([1, 2, 3], 2)
    assert part.info.state.version == 2 and writer.refused == 0


async def test_nothing_is_written_for_a_partition_no_longer_led(client, zk_admin, tmp_path):
    lossy = LosingAnswers(client, written=False)
    _replicas, writer, part = leader(lossy, tmp_path)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        part.follower_fetched(3, 0, 1)
        await until(lambda: lossy.lost == 1, "the lost answer")
        part.become(info([1, 2], 2, epoch=EPOCH + 1), Role.FOLLOWER)
        await until(lambda: writer.in_flight == 0, "the writer giving up")
        nursery.cancel_scope.cancel()
    assert writer.written == 0 and read_state(zk_admin).version == 1
