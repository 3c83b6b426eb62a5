"""partition.metadata: Kafka's exact text, strict reading, written once and
atomically, and the log and the log manager refusing another topic's log."""

from __future__ import annotations

import base64
import os
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pybroker.protocol.records import NewRecord, build_batch
from pybroker.storage import checkpoint
from pybroker.storage.checkpoint import CheckpointError, read_offsets
from pybroker.storage.config import LogConfig
from pybroker.storage.dirs import LogDirError
from pybroker.storage.log import KafkaStorageError, PartitionLog
from pybroker.storage.manager import (
    CLEAN_SHUTDOWN_FILE,
    HIGH_WATERMARK_FILE,
    LOG_START_FILE,
    RECOVERY_POINT_FILE,
    LogManager,
    open_new_log,
)
from pybroker.storage.partition_metadata import (
    FILE_NAME,
    InconsistentTopicIdError,
    decode,
    encode,
    parse_uuid,
    read_topic_id,
    uuid_text,
    write_topic_id,
)

T0 = 1_700_000_000_000
# A topic id as Kafka prints it (it has both URL-safe characters' kind: "_").
KAFKA_ID = "jKTRaM_TSNqocJeQI2aYOQ"


def batch(n=2):
    return build_batch([NewRecord(b"k", b"v" * 30, (), T0) for _ in range(n)])


def files(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


# -- the format ------------------------------------------------------------------


def test_exact_bytes():
    one = uuid.UUID(int=1)
    assert encode(one) == b"version: 0\ntopic_id: AAAAAAAAAAAAAAAAAAAAAQ"
    kafka = uuid.UUID(bytes=base64.b64decode("jKTRaM/TSNqocJeQI2aYOQ=="))
    assert encode(kafka) == b"version: 0\ntopic_id: " + KAFKA_ID.encode()
    assert uuid_text(kafka) == KAFKA_ID and parse_uuid(KAFKA_ID) == kafka


@settings(max_examples=100, deadline=None)
@given(st.uuids(version=4))
def test_round_trip(topic_id):
    assert decode(encode(topic_id)) == topic_id
    assert len(uuid_text(topic_id)) == 22


@pytest.mark.parametrize(
    "data",
    [
        b"version: 0\ntopic_id: jKTRaM_TSNqocJeQI2aYOQ\n",
        b"version: 0\r\ntopic_id: jKTRaM_TSNqocJeQI2aYOQ\r\n",
        b"version:\t 0\ntopic_id:  jKTRaM_TSNqocJeQI2aYOQ",
        # A later version keeps these lines; Kafka reads it (downgrades).
        b"version: 1\ntopic_id: jKTRaM_TSNqocJeQI2aYOQ\ndirectory_id: x",
    ],
)
def test_what_kafka_reads(data):
    assert uuid_text(decode(data)) == KAFKA_ID


def test_an_empty_file_is_no_id():
    # Kafka 2.8 created the file empty before it knew the topic id.
    assert decode(b"") is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"version:0\ntopic_id: jKTRaM_TSNqocJeQI2aYOQ", "Malformed line"),
        (b"topic_id: jKTRaM_TSNqocJeQI2aYOQ\nversion: 0", "Malformed line"),
        (b"version: 0", "Malformed line"),
        (b"version: zero\ntopic_id: jKTRaM_TSNqocJeQI2aYOQ", "Malformed line"),
        (b"version: -1\ntopic_id: jKTRaM_TSNqocJeQI2aYOQ", "Unrecognized version"),
        (b"version: 0\ntopic_id: jKTRaM/TSNqocJeQI2aYOQ", "Malformed line"),  # not URL-safe
        (b"version: 0\ntopic_id: jKTRaM_TSNqocJeQI2aYOQA", "Malformed line"),  # too long
        (b"version: 0\ntopic_id: jKTRaM_TSNqocJeQI2aY", "Malformed line"),  # 15 bytes
        (b"version: 0\ntopic_id: AAAAAAAAAAAAAAAAAAAAAA", "Invalid topic ID"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_malformed_files_raise(data, message):
    with pytest.raises(CheckpointError, match=message):
        decode(data)


def test_the_zero_uuid_is_not_written():
    with pytest.raises(ValueError):
        encode(uuid.UUID(int=0))


# -- the file ---------------------------------------------------------------------


def test_written_once_atomically_and_never_with_another_id(tmp_path):
    first, other = uuid.uuid4(), uuid.uuid4()
    assert read_topic_id(tmp_path) is None
    write_topic_id(tmp_path, first)
    path = tmp_path / FILE_NAME
    assert read_topic_id(tmp_path) == first and sorted(os.listdir(tmp_path)) == [FILE_NAME]
    inode = path.stat().st_ino
    write_topic_id(tmp_path, first)  # the same id: nothing to do
    assert path.stat().st_ino == inode
    with pytest.raises(InconsistentTopicIdError) as caught:
        write_topic_id(tmp_path, other)
    assert (caught.value.stored, caught.value.wanted) == (first, other)
    assert uuid_text(first) in str(caught.value) and uuid_text(other) in str(caught.value)
    assert path.read_bytes() == encode(first) and path.stat().st_ino == inode


def test_a_failed_write_leaves_no_file(tmp_path, monkeypatch):
    def failing_replace(src, dst):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(checkpoint.os, "replace", failing_replace)
    with pytest.raises(OSError):
        write_topic_id(tmp_path, uuid.uuid4())
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []


# -- the log --------------------------------------------------------------------


def test_a_new_log_records_its_topic_and_reopens_with_it(tmp_path):
    topic_id = uuid.uuid4()
    log = open_new_log(tmp_path / "t-0", LogConfig(), topic_id)
    assert log.topic_id == topic_id
    assert (tmp_path / "t-0" / FILE_NAME).read_bytes() == encode(topic_id)
    log.append(batch(), now=T0)
    log.flush()
    log.close()
    again = PartitionLog(tmp_path / "t-0", LogConfig())
    assert again.topic_id == topic_id and again.log_end_offset == 2
    again.write_topic_id(topic_id)
    with pytest.raises(InconsistentTopicIdError):
        again.write_topic_id(uuid.uuid4())
    again.close()
    assert read_topic_id(tmp_path / "t-0") == topic_id


def test_a_log_without_the_file_is_given_its_topic(tmp_path):
    old = PartitionLog(tmp_path / "t-0", LogConfig())  # as an older pybroker made it
    old.append(batch(3), now=T0)
    old.flush()
    old.close()
    assert old.topic_id is None and not (tmp_path / "t-0" / FILE_NAME).exists()
    topic_id = uuid.uuid4()
    log = PartitionLog(tmp_path / "t-0", LogConfig(), topic_id=topic_id)
    assert log.topic_id == topic_id and log.log_end_offset == 3
    assert read_topic_id(tmp_path / "t-0") == topic_id
    log.close()


def test_another_topics_log_is_refused_untouched(tmp_path):
    theirs = uuid.uuid4()
    log = open_new_log(tmp_path / "t-0", LogConfig(segment_bytes=300), theirs)
    for _ in range(6):
        log.append(batch(), now=T0)
    log.flush()
    log.close()
    with open(log.segments[-1].path, "ab") as f:
        f.write(b"\x00torn")  # a crash's torn tail: recovery would cut it
    before = files(tmp_path / "t-0")
    ours = uuid.uuid4()
    with pytest.raises(InconsistentTopicIdError) as caught:
        PartitionLog(tmp_path / "t-0", LogConfig(segment_bytes=300), clean=False, topic_id=ours)
    assert (caught.value.stored, caught.value.wanted) == (theirs, ours)
    assert files(tmp_path / "t-0") == before


def test_a_failed_write_takes_the_log_offline(tmp_path, monkeypatch):
    log = PartitionLog(tmp_path / "t-0", LogConfig())
    monkeypatch.setattr(checkpoint.os, "replace", lambda src, dst: (_ for _ in ()).throw(OSError(28, "No space")))
    with pytest.raises(KafkaStorageError):
        log.write_topic_id(uuid.uuid4())
    assert log.offline is not None and log.topic_id is None


# -- the log manager -----------------------------------------------------------------


def test_the_manager_moves_another_topics_log_aside(tmp_path):
    theirs, ours = uuid.uuid4(), uuid.uuid4()
    ids = {"t": theirs, "u": uuid.uuid4()}
    mgr = LogManager([tmp_path], topic_id=ids.get)
    old = mgr.create("t", 0, topic_id=theirs)
    for _ in range(5):
        old.append(batch(), now=T0)
    old.set_high_watermark(10)
    old.delete_records(3)
    kept = mgr.create("u", 0, topic_id=ids["u"])
    kept.append(batch(), now=T0)
    mgr.close()
    data = files(tmp_path / "t-0")

    ids["t"] = ours  # "t" deleted and made again while nobody looked
    mgr = LogManager([tmp_path], topic_id=ids.get)
    assert mgr.get("t", 0) is None and not (tmp_path / "t-0").exists()
    ((tp, stray, stored, wanted),) = mgr.foreign
    assert (tp, stored, wanted) == (("t", 0), theirs, ours)
    assert stray.parent == tmp_path and stray.name.startswith("t-0.") and stray.name.endswith("-stray")
    assert files(stray) == data
    assert mgr.strays == []
    assert mgr.get("u", 0).log_end_offset == 2 and mgr.get("u", 0).topic_id == ids["u"]
    # The stray's offsets went with it.
    assert ("t", 0) not in read_offsets(tmp_path / LOG_START_FILE)
    assert ("t", 0) not in read_offsets(tmp_path / RECOVERY_POINT_FILE)
    assert ("t", 0) not in read_offsets(tmp_path / HIGH_WATERMARK_FILE)

    new = mgr.create("t", 0, topic_id=ours)
    assert new.log_end_offset == 0 and read_topic_id(tmp_path / "t-0") == ours
    new.append(batch(), now=T0)
    new.flush()
    # A crash before any checkpoint: the new log starts where its data does.
    again = LogManager([tmp_path], topic_id=ids.get)
    log = again.get("t", 0)
    assert (log.log_start_offset, log.log_end_offset) == (0, 2) and again.foreign == []
    # A stray is not a partition: it stays where it is.
    assert files(stray) == data
    again.close()


def test_the_manager_gives_old_logs_their_topic(tmp_path):
    mgr = LogManager([tmp_path])
    mgr.create("t", 0).append(batch(), now=T0)
    mgr.close()
    assert not (tmp_path / "t-0" / FILE_NAME).exists()
    topic_id = uuid.uuid4()
    mgr = LogManager([tmp_path], topic_id={"t": topic_id}.get)
    assert mgr.get("t", 0).topic_id == topic_id and mgr.get("t", 0).log_end_offset == 2
    assert read_topic_id(tmp_path / "t-0") == topic_id and mgr.foreign == []
    mgr.close()
    assert (tmp_path / CLEAN_SHUTDOWN_FILE).exists()


def test_an_unreadable_file_stops_the_start_naming_it(tmp_path):
    mgr = LogManager([tmp_path])
    mgr.create("t", 0, topic_id=uuid.uuid4()).append(batch(), now=T0)
    mgr.close()
    (tmp_path / "t-0" / FILE_NAME).write_bytes(b"version: 0\ntopic_id: ?")
    before = files(tmp_path / "t-0")
    with pytest.raises(LogDirError, match=f"{FILE_NAME}.*Malformed line|Malformed line.*{FILE_NAME}") as caught:
        LogManager([tmp_path], topic_id={"t": uuid.uuid4()}.get)
    assert str(tmp_path / "t-0") in str(caught.value)
    assert files(tmp_path / "t-0") == before


def test_without_ids_nothing_is_checked_or_written(tmp_path):
    mgr = LogManager([tmp_path])
    mgr.create("t", 0, topic_id=uuid.uuid4())
    mgr.create("v", 0)
    mgr.close()
    mgr = LogManager([tmp_path])
    assert mgr.get("t", 0) is not None and mgr.get("v", 0).topic_id is None
    assert not (tmp_path / "v-0" / FILE_NAME).exists()
    mgr.close()
