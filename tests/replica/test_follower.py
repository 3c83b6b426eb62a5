"""follower.py and the storage operations it uses: what a follower's Fetch
reports, how the leader's batches are appended (checked by their CRC
only, producer state updated), the high watermark and log start
followed, and truncation cutting the epoch cache and rebuilding the
producer state."""

from __future__ import annotations

import struct

import pytest

from pybroker.cluster.model import PartitionInfo, PartitionState
from pybroker.protocol.errors import CorruptRecordError
from pybroker.protocol.record_batch import CRC_OFFSET, RecordBatch
from pybroker.protocol.records import NewRecord, build_batch
from pybroker.replica import ReplicaManager, Role, follower
from pybroker.storage.config import LogConfig
from pybroker.storage.log import PartitionLog

EPOCH = 5


def leader_batches(first_offset: int, count: int, epoch: int = EPOCH, **producer) -> bytes:
    """Batches as a leader stored them: offsets and epoch assigned."""
    out = b""
    for i in range(count):
        out += build_batch(
            [NewRecord(b"k", b"v%d" % i)],
            base_offset=first_offset + i,
            partition_leader_epoch=epoch,
            **producer,
            **({"base_sequence": i} if producer else {}),
        )
    return out


@pytest.fixture
def part(tmp_path):
    replicas = ReplicaManager(2, producer_expiration_ms=86_400_000)
    info = PartitionInfo(0, [1, 2], PartitionState(1, EPOCH, [1, 2]))
    p = replicas.add("t", 0, PartitionLog(tmp_path / "t-0", LogConfig(segment_bytes=400)), info)
    p.become(info, Role.FOLLOWER)
    yield p
    p.log.close()


def append(part, data: bytes, hw: int = -1, start: int = 0) -> int:
    replicas = ReplicaManager(2, producer_expiration_ms=86_400_000)
    replicas.partitions[("t", 0)] = part
    return follower.append_fetched(replicas, part, memoryview(bytearray(data)), hw, start, 0)


def test_position(part):
    assert follower.position(part) == follower.Position(0, -1, 0, EPOCH)
    append(part, leader_batches(0, 3))
    assert follower.position(part) == follower.Position(3, EPOCH, 0, EPOCH)
    # An epoch this replica led without writing is not its last batch's.
    part.log.epochs.assign(EPOCH + 2, 3)
    assert follower.position(part).last_fetched_epoch == EPOCH


def test_batches_are_appended_as_they_are(part):
    data = leader_batches(0, 3) + leader_batches(3, 2, epoch=EPOCH + 1)
    assert append(part, data, hw=4) == len(data)
    stored = part.log.read(0, 1 << 20, part.log.log_end_offset).data
    assert bytes(stored) == data
    assert part.log.epochs.entries == [(EPOCH, 0), (EPOCH + 1, 3)]
    assert part.log.high_watermark == 4


def test_only_the_crc_is_checked(part):
    # Records the leader would have refused (a bad varint) pass: the leader
    # checked them; the CRC says the bytes are the leader's.
    raw = bytearray(leader_batches(0, 1))
    raw[-3] = 0xFF
    struct.pack_into(">I", raw, CRC_OFFSET, RecordBatch(raw).compute_crc())
    append(part, bytes(raw))
    assert part.log.log_end_offset == 1
    # A wrong CRC is refused, nothing written.
    raw = bytearray(leader_batches(1, 2))
    raw[-1] ^= 1
    with pytest.raises(CorruptRecordError):
        append(part, bytes(raw))
    assert part.log.log_end_offset == 1


def test_a_partial_batch_at_the_end_is_left_for_the_next_fetch(part):
    data = leader_batches(0, 2)
    append(part, data + data[:20])
    assert part.log.log_end_offset == 2


def test_the_high_watermark_is_the_leaders_clamped_to_the_log_end(part):
    append(part, leader_batches(0, 3), hw=10)
    assert part.log.high_watermark == 3
    append(part, b"", hw=1)
    assert part.log.high_watermark == 1  # the leader's, as Kafka's follower takes it


def test_the_log_start_follows_the_leader_deleting_segments(part):
    for first in range(0, 12, 2):  # a fetch's batches go to one segment: several fetches
        append(part, leader_batches(first, 2), hw=2)
    assert len(part.log.segments) > 2
    append(part, b"", hw=2, start=9)
    assert part.log.log_start_offset == 9
    assert part.log.high_watermark == 9  # dragged along: the leader's start is below its HW
    assert part.log.segments[0].base_offset <= 9
    assert part.log.epochs.entries == [(EPOCH, 9)]
    # Never past the log end.
    assert part.log.advance_log_start(50) == 12


def test_follower_appends_update_the_producer_state(part):
    append(part, leader_batches(0, 3, producer_id=7, producer_epoch=0))
    entry = part.log.producers.entries[7]
    assert entry.last_seq == 2 and entry.batches[-1].last_offset == 2


def test_truncation_rebuilds_the_producer_state_and_cuts_epochs(part):
    append(part, leader_batches(0, 3, producer_id=7, producer_epoch=0))
    append(part, leader_batches(3, 2, epoch=EPOCH + 1))
    part.log.take_producer_snapshot()  # a snapshot past the cut must not be used
    follower.truncate(part, 2, "test")
    assert part.log.log_end_offset == 2
    assert part.log.producers.entries[7].last_seq == 1
    assert part.log.epochs.entries == [(EPOCH, 0)]


def test_truncating_at_the_log_end_drops_an_epoch_led_without_writing(part):
    append(part, leader_batches(0, 3))
    part.log.epochs.assign(EPOCH + 2, 3)
    follower.truncate(part, 3, "test")
    assert part.log.epochs.entries == [(EPOCH, 0)]
    assert part.log.log_end_offset == 3


def test_divergence_cuts(part):
    append(part, leader_batches(0, 4) + leader_batches(4, 3, epoch=EPOCH + 1))
    cut = follower.truncate_diverging(part, EPOCH, 2)
    assert cut.complete and part.log.log_end_offset == 2


def test_out_of_range(part):
    append(part, leader_batches(0, 6))
    follower.recover_out_of_range(part, 0, 4)
    assert part.log.log_end_offset == 4
    follower.recover_out_of_range(part, 20, 30)
    assert (part.log.log_start_offset, part.log.log_end_offset, part.log.epochs.entries) == (20, 20, [])


def test_the_epoch_of_the_last_batch_without_a_cache(part):
    assert part.log.last_batch_epoch() == -1
    append(part, leader_batches(0, 2) + leader_batches(2, 2, epoch=EPOCH + 3))
    part.log.roll()  # an empty active segment: the last batch is in the one before
    assert part.log.last_batch_epoch() == EPOCH + 3


def test_what_must_be_fsynced(part):
    assert follower.durable(part)
    part.log.config = LogConfig(write_caching=True)
    assert not follower.durable(part)
