"""The replica comparison tool on logs the storage wrote: a leader's log
and followers that copied its batches (as replication does) pass; a
flipped byte, a missing batch, a different batch at the same offset, and
files that are not Kafka's format fail, naming the offset and the broker."""

from __future__ import annotations

import base64
import struct
import uuid

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from pybroker.protocol.record_batch import split_batches
from pybroker.protocol.records import NewRecord, build_batch
from pybroker.storage.config import LogConfig
from pybroker.storage.log import PartitionLog
from pybroker.testing import running_broker

from .replica_files import ReplicaFormatError, ReplicasDiffer, compare, read_replica

T0 = 1_700_000_000_000
TOPIC, PARTITION = "orders", 0
TOPIC_ID = uuid.UUID("6f1c2a9e-41b3-4c55-9a0e-2d7b8c1f0e42")
CONFIG = LogConfig(segment_bytes=1500, index_interval_bytes=200, segment_index_bytes=4096)
BATCHES = 40


def records(i: int, fill: int | None = None) -> bytes:
    value = bytes([fill if fill is not None else i % 251]) * (30 + 11 * (i % 7))
    return build_batch(
        [NewRecord(b"k%d" % i, value, (), T0 + 1000 * i + r) for r in range(1 + i % 3)],
        producer_id=7,
        producer_epoch=0,
        base_sequence=sum(1 + j % 3 for j in range(i)),
    )


def write_leader(root, n: int = BATCHES) -> PartitionLog:
    """A leader's log: n batches over several segments, epochs 0, 1, 2."""
    log = PartitionLog(root / "b1" / f"{TOPIC}-{PARTITION}", CONFIG, topic_id=TOPIC_ID)
    for i in range(n):
        log.append(records(i), leader_epoch=3 * i // n, now=T0 + 1000 * i)
    return log


def leader_batches(log: PartitionLog) -> list[bytes]:
    out, offset = [], log.log_start_offset
    while offset < log.log_end_offset:
        got = log.read(offset, 1 << 20, max_offset=log.log_end_offset)
        batches, rest = split_batches(bytes(got.data))
        assert batches and rest == 0
        out += [bytes(b.view) for b in batches]
        offset = batches[-1].next_offset
    return out


def follow(root, broker: int, batches: list[bytes], *, replace: dict[int, bytes] | None = None) -> PartitionLog:
    """A follower's log: the leader's batches appended as they are, some
    left out (None) or replaced."""
    log = PartitionLog(root / f"b{broker}" / f"{TOPIC}-{PARTITION}", CONFIG, topic_id=TOPIC_ID)
    for i, raw in enumerate(batches):
        raw = (replace or {}).get(i, raw)
        if raw is not None:
            log.append_as_follower(raw, now=T0 + 1000 * i)
    return log


def dirs(root, *brokers: int) -> dict[int, object]:
    return {b: root / f"b{b}" for b in brokers}


@pytest.fixture
def three(tmp_path):
    """A leader (broker 1) and two followers (2, 3) holding the same log,
    closed; the leader's batches."""
    leader = write_leader(tmp_path)
    batches = leader_batches(leader)
    followers = [follow(tmp_path, b, batches) for b in (2, 3)]
    for log in (leader, *followers):
        log.close()
    return batches


def other_batch(i: int, raw: bytes) -> bytes:
    """Batch ``i`` (the leader's ``raw``) with other record values: the same
    offsets, epoch and size, a valid CRC, not the leader's bytes."""
    other = bytearray(records(i, fill=0xEE))
    other[:21] = raw[:17] + other[17:21]  # base offset, length, epoch, magic as stored; its own CRC
    assert len(other) == len(raw) and other != raw
    return bytes(other)


# -- identical replicas ----------------------------------------------------------------


def test_identical_replicas_pass_and_their_batches_come_back(tmp_path, three):
    batches = compare(dirs(tmp_path, 1, 2, 3), TOPIC, PARTITION, _end(three))
    assert [b.data for b in batches] == three
    replica = read_replica(tmp_path / "b2", TOPIC, PARTITION, broker=2)
    assert len(replica.segments) > 3, "the test wants several segments"
    assert replica.epochs == [(0, 0), (1, _base(three[14])), (2, _base(three[27]))]
    assert replica.topic_id == TOPIC_ID
    assert any((tmp_path / "b2" / f"{TOPIC}-{PARTITION}").glob("*.index"))


def _base(raw: bytes) -> int:
    return struct.unpack_from(">q", raw)[0]


def _end(batches: list[bytes]) -> int:
    last = batches[-1]
    return _base(last) + struct.unpack_from(">i", last, 23)[0] + 1


def test_only_what_is_below_the_high_watermark_must_match(tmp_path):
    leader = write_leader(tmp_path)
    batches = leader_batches(leader)
    hw = _base(batches[-2])
    # Broker 2 lacks the last two batches, broker 3 has another one above the HW.
    follow(tmp_path, 2, batches[:-2]).close()
    follow(tmp_path, 3, batches, replace={BATCHES - 1: other_batch(BATCHES - 1, batches[-1])}).close()
    leader.close()
    assert [b.data for b in compare(dirs(tmp_path, 1, 2, 3), TOPIC, PARTITION, hw)] == batches[:-2]


def test_logs_still_open_with_preallocated_indexes_pass(tmp_path):
    leader = write_leader(tmp_path)
    batches = leader_batches(leader)
    follower = follow(tmp_path, 2, batches)
    for log in (leader, follower):
        log.flush()
    active_index = follower.active.offset_index.path
    assert active_index.stat().st_size > 8 * follower.active.offset_index.entries, "preallocated"
    assert len(compare(dirs(tmp_path, 1, 2), TOPIC, PARTITION, _end(batches))) == BATCHES
    leader.close()
    follower.close()


# -- replicas that differ ------------------------------------------------------------------


def test_a_flipped_byte_is_named_by_offset_and_broker(tmp_path, three):
    victim = read_replica(tmp_path / "b3", TOPIC, PARTITION, broker=3).batches[17]
    data = bytearray(victim.segment.read_bytes())
    data[victim.position + len(victim.data) - 5] ^= 0x01
    victim.segment.write_bytes(bytes(data))
    with pytest.raises(ReplicaFormatError) as err:
        compare(dirs(tmp_path, 1, 2, 3), TOPIC, PARTITION, _end(three))
    message = str(err.value)
    assert "broker 3" in message and f"offset {victim.base_offset}" in message and "CRC" in message


def test_a_flipped_epoch_outside_the_crc_is_caught(tmp_path, three):
    """The base offset and the leader epoch lie outside the CRC: an epoch
    stamped wrongly is caught by the replica's own epoch checkpoint."""
    victim = read_replica(tmp_path / "b2", TOPIC, PARTITION, broker=2).batches[20]
    data = bytearray(victim.segment.read_bytes())
    data[victim.position + 15] ^= 0x40  # the partition leader epoch's low byte
    victim.segment.write_bytes(bytes(data))
    with pytest.raises(ReplicaFormatError, match=f"broker 2: at offset {victim.base_offset} .* is in epoch"):
        compare(dirs(tmp_path, 1, 2, 3), TOPIC, PARTITION, _end(three))


def test_a_missing_batch_is_named_by_offset(tmp_path):
    leader = write_leader(tmp_path)
    batches = leader_batches(leader)
    leader.close()
    follow(tmp_path, 2, batches, replace={13: None}).close()  # a batch of two records
    missing = _base(batches[13])
    with pytest.raises(ReplicaFormatError, match=rf"broker 2: .*offsets {missing}\.\.{missing + 1} are missing"):
        compare(dirs(tmp_path, 1, 2), TOPIC, PARTITION, _end(batches))
    # A compacted topic may have gaps; then the comparison names it.
    with pytest.raises(ReplicasDiffer) as err:
        compare(dirs(tmp_path, 1, 2), TOPIC, PARTITION, _end(batches), contiguous=False)
    assert f"at offset {missing} broker 1 has batch {missing}.." in str(err.value)
    assert "broker 2 has no batch" in str(err.value)


def test_a_log_that_ends_below_the_high_watermark_fails(tmp_path):
    leader = write_leader(tmp_path)
    batches = leader_batches(leader)
    leader.close()
    follow(tmp_path, 2, batches[:-1]).close()
    with pytest.raises(ReplicasDiffer) as err:
        compare(dirs(tmp_path, 1, 2), TOPIC, PARTITION, _end(batches))
    assert f"broker 2's log ends at offset {_base(batches[-1])}, below the high watermark {_end(batches)}" in str(
        err.value
    )
    # Below the follower's end, the two agree.
    assert len(compare(dirs(tmp_path, 1, 2), TOPIC, PARTITION, _base(batches[-1]))) == BATCHES - 1


def test_a_different_batch_at_the_same_offset_is_named(tmp_path):
    leader = write_leader(tmp_path)
    batches = leader_batches(leader)
    leader.close()
    follow(tmp_path, 2, batches).close()
    follow(tmp_path, 3, batches, replace={25: other_batch(25, batches[25])}).close()
    offset = _base(batches[25])
    with pytest.raises(ReplicasDiffer) as err:
        compare(dirs(tmp_path, 1, 2, 3), TOPIC, PARTITION, _end(batches))
    message = str(err.value)
    assert f"at offset {offset} broker 1 has batch {offset}.." in message and "broker 3 has batch" in message
    assert "first differ at byte 17 of the batch (crc), and past it at byte" in message and "(records)" in message
    assert "broker 2" not in message
    # Above that offset nothing is compared.
    assert len(compare(dirs(tmp_path, 1, 2, 3), TOPIC, PARTITION, offset)) == 25


# -- files that are not Kafka's format -------------------------------------------------------


def partition_dir(root, broker: int):
    return root / f"b{broker}" / f"{TOPIC}-{PARTITION}"


def test_a_segment_without_its_time_index_fails(tmp_path, three):
    victim = sorted(partition_dir(tmp_path, 2).glob("*.timeindex"))[1]
    victim.unlink()
    with pytest.raises(ReplicaFormatError, match=f"broker 2: .* has no {victim.name}"):
        compare(dirs(tmp_path, 1, 2), TOPIC, PARTITION, _end(three))


def test_trailing_bytes_after_the_last_batch_fail(tmp_path, three):
    last = max(partition_dir(tmp_path, 1).glob("*.log"))
    with last.open("ab") as f:
        f.write(b"\0" * 30)
    with pytest.raises(ReplicaFormatError, match=f"broker 1: {last.name} at byte .*, offset 0: batch length 0"):
        compare(dirs(tmp_path, 1, 2), TOPIC, PARTITION, _end(three))


def test_an_index_entry_pointing_inside_a_batch_fails(tmp_path, three):
    index = next(p for p in sorted(partition_dir(tmp_path, 2).glob("*.index")) if p.stat().st_size >= 8)
    data = bytearray(index.read_bytes())
    rel, position = struct.unpack_from(">ii", data, 0)
    struct.pack_into(">ii", data, 0, rel, position + 3)
    index.write_bytes(bytes(data))
    with pytest.raises(ReplicaFormatError, match=f"broker 2: {index.name} maps offset .* where no batch starts"):
        compare(dirs(tmp_path, 1, 2), TOPIC, PARTITION, _end(three))


def test_a_time_index_naming_the_wrong_timestamp_fails(tmp_path, three):
    index = next(p for p in sorted(partition_dir(tmp_path, 3).glob("*.timeindex")) if p.stat().st_size >= 12)
    data = bytearray(index.read_bytes())
    ts, rel = struct.unpack_from(">qi", data, 0)
    struct.pack_into(">qi", data, 0, ts - 1, rel)
    index.write_bytes(bytes(data))
    with pytest.raises(ReplicaFormatError, match=f"broker 3: {index.name} says offset .* holds timestamp {ts - 1}"):
        compare(dirs(tmp_path, 1, 3), TOPIC, PARTITION, _end(three))


@pytest.mark.parametrize(
    "text, why",
    [
        ("1\n3\n0 0\n", "version is not 0"),
        ("0\n3\n0 0\n1 200\n", "the count is not the number of entries"),
        ("0\n2\n0 0\n1 x\n", "entry '1 x'"),
        ("0\n2\n1 0\n0 5\n", "does not follow"),
    ],
)
def test_a_leader_epoch_checkpoint_not_in_kafkas_format_fails(tmp_path, three, text, why):
    (partition_dir(tmp_path, 2) / "leader-epoch-checkpoint").write_text(text)
    with pytest.raises(ReplicaFormatError, match=f"broker 2: leader-epoch-checkpoint is not a checkpoint file.*{why}"):
        compare(dirs(tmp_path, 1, 2), TOPIC, PARTITION, _end(three))


def test_epochs_that_disagree_with_the_batches_fail(tmp_path, three):
    start = _base(three[27])
    wrong = _base(three[29])
    (partition_dir(tmp_path, 3) / "leader-epoch-checkpoint").write_text(f"0\n3\n0 0\n1 {_base(three[14])}\n2 {wrong}\n")
    with pytest.raises(ReplicaFormatError, match=f"broker 3: at offset {start} .* is in epoch 2, but .* says epoch 1"):
        compare(dirs(tmp_path, 1, 3), TOPIC, PARTITION, _end(three))
    inside = _base(three[29]) + 1  # a batch of three records
    (partition_dir(tmp_path, 3) / "leader-epoch-checkpoint").write_text(
        f"0\n3\n0 0\n1 {_base(three[14])}\n2 {inside}\n"
    )
    with pytest.raises(ReplicaFormatError, match=f"starts epoch 2 at {inside}, inside batch {inside - 1}"):
        compare(dirs(tmp_path, 1, 3), TOPIC, PARTITION, _end(three))


@pytest.mark.parametrize(
    "data",
    [b"version: 0\ntopic: abc", b"version: 0\ntopic_id: AAAAAAAAAAAAAAAAAAAAAA", b"version:0\ntopic_id: x", b"\xff"],
)
def test_a_partition_metadata_not_in_kafkas_format_fails(tmp_path, three, data):
    (partition_dir(tmp_path, 2) / "partition.metadata").write_bytes(data)
    with pytest.raises(ReplicaFormatError, match="broker 2: partition.metadata"):
        compare(dirs(tmp_path, 1, 2), TOPIC, PARTITION, _end(three))


def test_replicas_of_different_topic_ids_fail(tmp_path, three):
    other = uuid.UUID(int=TOPIC_ID.int ^ 1)
    (partition_dir(tmp_path, 3) / "partition.metadata").write_text(
        "version: 0\ntopic_id: " + base64.urlsafe_b64encode(other.bytes).decode().rstrip("=")
    )
    with pytest.raises(ReplicaFormatError, match="different topic ids"):
        compare(dirs(tmp_path, 1, 2, 3), TOPIC, PARTITION, _end(three))


# -- a broker's own files ---------------------------------------------------------------------


def test_a_running_brokers_partition_passes_and_after_its_stop(tmp_path):
    """What a broker writes for a real client (several segments, producer
    snapshots, checkpoints beside them) is read as Kafka's format, while
    it runs (indexes preallocated, entries pending) and once stopped."""
    with running_broker(data_dir=tmp_path / "b1") as b:
        admin = KafkaAdminClient(bootstrap_servers=b.bootstrap_servers)
        configs = {"segment.bytes": "4096", "index.interval.bytes": "512"}
        admin.create_topics([NewTopic("real", 1, 1, topic_configs=configs)])
        admin.close()
        producer = KafkaProducer(bootstrap_servers=b.bootstrap_servers, linger_ms=2, batch_size=600)
        for i in range(400):
            producer.send("real", value=b"v%05d" % i * (1 + i % 9), key=b"k%d" % (i % 5))
        producer.flush(30)
        producer.close(10)
        hw = b.broker.replicas.partition("real", 0).high_watermark
        assert hw == 400
        running = compare({1: tmp_path / "b1"}, "real", 0, hw)
        assert len(read_replica(tmp_path / "b1", "real", 0).segments) > 3
    stopped = compare({1: tmp_path / "b1"}, "real", 0, hw)
    assert [b.data for b in stopped] == [b.data for b in running]
    assert sum(b.last_offset - b.base_offset + 1 for b in stopped) == 400
