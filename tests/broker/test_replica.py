"""The replica layer where no client can see it yet: the high-watermark
rule over an ISR of more than one replica, the leader-epoch checks,
min.insync.replicas, storage failures turned into KafkaError, and
until_committed (replication, fsync, a partition deleted meanwhile)."""

import pytest
import trio
import trio.testing

from pybroker.cluster.model import PartitionInfo, PartitionState
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import KafkaError
from pybroker.protocol.record_batch import RecordBatch
from pybroker.protocol.records import NewRecord, build_batch
from pybroker.replica import Origin, Partition, ReplicaManager, Role, partition
from pybroker.storage.config import LogConfig
from pybroker.storage.log import PartitionLog

EPOCH = 4


def batch(n=1, **kw) -> RecordBatch:
    return RecordBatch(bytearray(build_batch([NewRecord(value=b"v")] * n, **kw)))


def info(isr=(0,)) -> PartitionInfo:
    return PartitionInfo(index=0, replicas=list(isr), state=PartitionState(leader=0, leader_epoch=EPOCH, isr=list(isr)))


def manager(tmp_path, isr=(0,), **config) -> ReplicaManager:
    replicas = ReplicaManager(0, producer_expiration_ms=86_400_000)
    plog = PartitionLog(tmp_path / "t-0", LogConfig(**config))
    replicas.add("t", 0, plog, info(isr))
    if len(isr) > 1:
        replicas.partition("t", 0).become(info(isr), Role.LEADER)
    return replicas


def code_of(fn, *args, **kwargs) -> ErrorCode:
    with pytest.raises(KafkaError) as exc:
        fn(*args, **kwargs)
    return exc.value.code


def test_alone_in_the_isr_the_high_watermark_is_the_log_end(tmp_path):
    replicas = manager(tmp_path)
    done = replicas.append("t", 0, batch(3), now=0, acks=-1)
    part = done.partition
    assert (done.base_offset, done.last_offset, done.duplicate) == (0, 2, False)
    assert part.high_watermark == part.last_stable_offset == part.log_end_offset == 3


def test_the_high_watermark_is_the_smallest_log_end_over_the_isr(tmp_path, monkeypatch):
    clock = [1_000_000]
    monkeypatch.setattr(partition, "now_ms", lambda: clock[0])
    part = Partition("t", 0, PartitionLog(tmp_path / "t-0", LogConfig(write_caching=True)), info((0, 1, 2)), 0)
    part.become(info((0, 1, 2)), Role.LEADER)
    for _ in range(5):
        part.append_as_leader(batch(2), now=0)
    assert (part.log_end_offset, part.high_watermark) == (10, 0)  # the followers have nothing yet
    part.follower_fetched(1, 6, 0)
    assert part.high_watermark == 0  # replica 2 is in the ISR too
    part.follower_fetched(2, 4, 0)
    assert part.high_watermark == 4
    part.follower_fetched(2, 2, 0)  # a follower that truncated: never back
    assert part.high_watermark == 4
    clock[0] += 60_000
    shrink = part.maybe_shrink_isr(clock[0])  # both long behind: out
    assert shrink.isr == (0,)
    assert part.high_watermark == 4  # not before the shrink is written
    part.isr_change_committed(shrink, 1)
    assert part.high_watermark == 10
    read = part.read(0, 1 << 20)
    assert read.high_watermark == 10 and len(read.records) > 0


def test_leader_epoch_checks(tmp_path):
    part = manager(tmp_path).partition("t", 0)
    part.append_as_leader(batch(), now=0)
    part.check_leader_epoch(-1)
    part.check_leader_epoch(EPOCH)
    assert code_of(part.check_leader_epoch, EPOCH - 1) == ErrorCode.FENCED_LEADER_EPOCH
    assert code_of(part.check_leader_epoch, EPOCH + 1) == ErrorCode.UNKNOWN_LEADER_EPOCH
    # Fetch answers with the offsets and the error; the others refuse.
    fenced = part.read(0, 1 << 20, current_leader_epoch=EPOCH - 1)
    assert (fenced.error, fenced.high_watermark, fenced.records) == (ErrorCode.FENCED_LEADER_EPOCH, 1, b"")
    assert (
        code_of(part.fetch_offset_for_timestamp, -1, current_leader_epoch=EPOCH + 1) == ErrorCode.UNKNOWN_LEADER_EPOCH
    )
    assert code_of(part.end_offset_for_epoch, EPOCH, EPOCH - 1) == ErrorCode.FENCED_LEADER_EPOCH
    assert part.end_offset_for_epoch(EPOCH, EPOCH) == (EPOCH, 1)
    assert part.fetch_offset_for_timestamp(-1, current_leader_epoch=EPOCH) == (-1, 1, EPOCH)


def test_min_insync_replicas(tmp_path):
    replicas = manager(tmp_path, min_insync_replicas=2)
    assert code_of(replicas.append, "t", 0, batch(), now=0, acks=-1) == ErrorCode.NOT_ENOUGH_REPLICAS
    assert replicas.partition("t", 0).log_end_offset == 0
    assert replicas.append("t", 0, batch(), now=0, acks=1).base_offset == 0  # acks=1 does not ask for it


def test_refusals_of_append(tmp_path):
    replicas = manager(tmp_path)
    assert code_of(replicas.append, "t", 1, batch(), now=0, acks=1) == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    replicas.append("t", 0, batch(2, producer_id=9, producer_epoch=1, base_sequence=0), now=0, acks=1)
    dup = replicas.append("t", 0, batch(2, producer_id=9, producer_epoch=1, base_sequence=0), now=0, acks=1)
    assert (dup.base_offset, dup.last_offset, dup.duplicate) == (0, 1, True)
    stale = batch(1, producer_id=9, producer_epoch=0, base_sequence=2)
    assert code_of(replicas.append, "t", 0, stale, now=0, acks=1) == ErrorCode.INVALID_PRODUCER_EPOCH
    gap = batch(1, producer_id=9, producer_epoch=1, base_sequence=5)
    assert code_of(replicas.append, "t", 0, gap, now=0, acks=1) == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER


def test_a_replication_append_keeps_the_leaders_offsets(tmp_path):
    replicas = manager(tmp_path)
    copied = batch(3, base_offset=7, partition_leader_epoch=2, producer_id=5, producer_epoch=0, base_sequence=0)
    done = replicas.append("t", 0, copied, now=0, acks=1, origin=Origin.REPLICATION)
    part = done.partition
    assert (done.base_offset, done.last_offset) == (7, 9)
    assert part.log.epochs.latest_epoch == 2
    assert part.log.producers.last_offsets() == {5: 9}


def test_storage_failures_are_kafka_errors(tmp_path):
    replicas = manager(tmp_path)
    part = replicas.partition("t", 0)
    part.log.io_failed(OSError("disk gone"))
    storage = ErrorCode.KAFKA_STORAGE_ERROR
    assert code_of(replicas.append, "t", 0, batch(), now=0, acks=1) == storage
    assert code_of(part.read, 0, 100) == storage
    assert code_of(part.fetch_offset_for_timestamp, -2) == storage
    assert code_of(part.delete_records, 0) == storage
    assert code_of(part.end_offset_for_epoch, EPOCH) == storage
    assert code_of(part.check_online) == storage


def test_until_committed_waits_for_the_isr_and_the_fsync(tmp_path):
    replicas = manager(tmp_path, isr=(0, 1))

    async def main():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(replicas.run)
            part = replicas.partition("t", 0)
            done = replicas.append("t", 0, batch(2), now=0, acks=-1)
            rounds = replicas.flusher.rounds
            result = {}

            async def wait():
                result["failures"] = await replicas.until_committed([done])

            nursery.start_soon(wait)
            await trio.testing.wait_all_tasks_blocked()
            assert not result  # the follower has not fetched it yet
            part.follower_fetched(1, 2, 0)
            with trio.fail_after(10):
                while not result:
                    await trio.sleep(0.001)
            assert result["failures"] == {}
            assert replicas.flusher.rounds > rounds  # and it was fsynced
            assert part.log.recovery_point == 2
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_a_partition_deleted_before_its_commit(tmp_path):
    replicas = manager(tmp_path)

    async def main():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(replicas.run)
            done = replicas.append("t", 0, batch(), now=0, acks=-1)
            replicas.remove("t", 0)
            failures = await replicas.until_committed([done])
            assert [e.code for e in failures.values()] == [ErrorCode.UNKNOWN_TOPIC_OR_PARTITION]
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_write_caching_skips_the_fsync(tmp_path):
    replicas = manager(tmp_path, write_caching=True)

    async def main():
        done = replicas.append("t", 0, batch(), now=0, acks=-1)
        assert await replicas.until_committed([done]) == {}  # no flusher running: it would hang otherwise
        assert replicas.flusher.rounds == 0

    trio.run(main)
