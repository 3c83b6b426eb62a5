"""The group coordinator's writes to a replicated __consumer_offsets
partition wait for its in-sync replicas at most offsets.commit.timeout.ms,
then fail REQUEST_TIMED_OUT (which the coordinator maps as Kafka does);
when the followers have them they complete."""

import trio
import trio.testing

from pybroker.cluster.model import PartitionInfo, PartitionState
from pybroker.groups import OFFSETS_TOPIC
from pybroker.groups.writes import GroupWriter
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.records import NewRecord
from pybroker.replica import ReplicaManager, Role
from pybroker.storage.config import LogConfig
from pybroker.storage.log import PartitionLog


def offsets_partition(tmp_path):
    replicas = ReplicaManager(0, producer_expiration_ms=86_400_000)
    state = PartitionInfo(0, [0, 1], PartitionState(0, 0, [0, 1]))
    part = replicas.add(OFFSETS_TOPIC, 0, PartitionLog(tmp_path / f"{OFFSETS_TOPIC}-0", LogConfig()), state)
    part.become(state, Role.LEADER)
    return replicas, part


def test_a_write_the_followers_never_get_times_out(tmp_path):
    replicas, _part = offsets_partition(tmp_path)
    writer = GroupWriter(replicas, lambda group: 0, timeout_ms=50)
    outcomes = []

    async def main():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(replicas.run)
            nursery.start_soon(writer.run)
            done = writer.write("g", [NewRecord(key=b"k", value=b"v")], 0, lambda e, a: outcomes.append(e))
            with trio.fail_after(10):
                assert await done.wait() == ErrorCode.REQUEST_TIMED_OUT
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert outcomes == [ErrorCode.REQUEST_TIMED_OUT]


def test_a_write_the_followers_get_completes(tmp_path):
    replicas, part = offsets_partition(tmp_path)
    writer = GroupWriter(replicas, lambda group: 0, timeout_ms=5000)

    async def main():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(replicas.run)
            nursery.start_soon(writer.run)
            done = writer.write("g", [NewRecord(key=b"k", value=b"v")], 0)
            await trio.testing.wait_all_tasks_blocked()
            assert not done.done
            part.follower_fetched(1, 1, 0)
            with trio.fail_after(10):
                assert await done.wait() == ErrorCode.NONE
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert part.high_watermark == 1 and part.log.recovery_point == 1
