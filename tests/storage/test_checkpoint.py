"""Checkpoint files: Kafka's exact text format, strict reading, atomic writes."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pybroker.storage import checkpoint
from pybroker.storage.checkpoint import (
    CheckpointError,
    read_epochs,
    read_offsets,
    write_atomically,
    write_epochs,
    write_offsets,
)

TOPICS = st.text("abcXYZ019._-", min_size=1, max_size=20)


def test_offsets_exact_bytes(tmp_path):
    path = tmp_path / "recovery-point-offset-checkpoint"
    write_offsets(path, {("orders", 1): 200, ("my.topic-v2_x", 0): 7, ("orders", 0): 0, ("__consumer_offsets", 12): 99})
    assert path.read_bytes() == b"0\n4\n__consumer_offsets 12 99\nmy.topic-v2_x 0 7\norders 0 0\norders 1 200\n"


def test_empty_offsets_exact_bytes(tmp_path):
    path = tmp_path / "log-start-offset-checkpoint"
    write_offsets(path, {})
    assert path.read_bytes() == b"0\n0\n"
    assert read_offsets(path) == {}


@settings(max_examples=50, deadline=None)
@given(offsets=st.dictionaries(st.tuples(TOPICS, st.integers(0, 2**31 - 1)), st.integers(0, 2**63 - 1)))
def test_offsets_round_trip(tmp_path_factory, offsets):
    path = tmp_path_factory.mktemp("cp") / "replication-offset-checkpoint"
    write_offsets(path, offsets)
    assert read_offsets(path) == offsets
    assert not os.path.exists(f"{path}.tmp")


def test_read_kafka_written_offsets(tmp_path):
    # As Kafka's OffsetCheckpointFile documents it; its reader splits on any whitespace.
    path = tmp_path / "replication-offset-checkpoint"
    path.write_bytes(b"0\n3\ntp1 0 1\ntp1  1\t2\r\nfoo.bar-baz_1 17 123456789012\n")
    assert read_offsets(path) == {("tp1", 0): 1, ("tp1", 1): 2, ("foo.bar-baz_1", 17): 123456789012}


def test_missing_file_reads_empty(tmp_path):
    assert read_offsets(tmp_path / "nope") == {}
    assert read_epochs(tmp_path / "nope") == []


@pytest.mark.parametrize("data", [b"", b"0\n"])
def test_empty_or_version_only_file_reads_empty(tmp_path, data):
    # Kafka's CheckpointFile treats both as no entries (it creates the empty file itself).
    path = tmp_path / "cp"
    path.write_bytes(data)
    assert read_offsets(path) == {}
    assert read_epochs(path) == []


@pytest.mark.parametrize(
    "data, message",
    [
        (b"1\n0\n", "unrecognised version 1"),
        (b"x\n0\n", "malformed version"),
        (b" 0\n0\n", "malformed version"),
        (b"0\nmany\n", "malformed entry count"),
        (b"0\n-1\n", "malformed entry count"),
        (b"0\n2\nt 0 5\n", "expected 2 entries"),
        (b"0\n0\nt 0 5\n", "expected 0 entries"),
        (b"0\n1\nt 0\n", "malformed line 3"),
        (b"0\n1\nt 0 5 6\n", "malformed line 3"),
        (b"0\n1\n\n", "malformed line 3"),
        (b"0\n2\nt 0 5\n\n", "malformed line 4"),
        (b"0\n1\nt x 5\n", "malformed partition"),
        (b"0\n1\nt -1 5\n", "malformed partition"),
        (b"0\n1\nt 2147483648 5\n", "malformed partition"),
        (b"0\n1\nt 0 five\n", "malformed offset"),
        (b"0\n1\nt 0 9223372036854775808\n", "malformed offset"),
        (b"0\n1\nt 0 +5\n", "malformed offset"),
        (b"0\n1\nt/x 0 5\n", "illegal topic"),
        (b"0\n1\n\xff 0 5\n", "not UTF-8"),
    ],
)
def test_malformed_offsets_raise(tmp_path, data, message):
    path = tmp_path / "recovery-point-offset-checkpoint"
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match=message) as info:
        read_offsets(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "offsets",
    [
        {("has space", 0): 1},
        {("new\nline", 0): 1},
        {("", 0): 1},
        {("x" * 250, 0): 1},
        {("t", -1): 1},
        {("t", 0): 2**63},
        {("t", 0): "5"},
    ],
)
def test_write_offsets_refuses_what_cannot_be_read_back(tmp_path, offsets):
    path = tmp_path / "cp"
    with pytest.raises(ValueError):
        write_offsets(path, offsets)
    assert not path.exists()
    assert not (tmp_path / "cp.tmp").exists()


def test_epochs_exact_bytes_and_round_trip(tmp_path):
    path = tmp_path / "leader-epoch-checkpoint"
    entries = [(0, 0), (3, 1200), (7, 98765432101)]
    write_epochs(path, entries)
    assert path.read_bytes() == b"0\n3\n0 0\n3 1200\n7 98765432101\n"
    assert read_epochs(path) == entries
    write_epochs(path, [])
    assert path.read_bytes() == b"0\n0\n"
    assert read_epochs(path) == []


@pytest.mark.parametrize(
    "data, message",
    [
        (b"0\n1\n5\n", "malformed line 3"),
        (b"0\n1\n5 6 7\n", "malformed line 3"),
        (b"0\n1\n-1 6\n", "malformed leader epoch"),
        (b"0\n1\n1 -6\n", "malformed start offset"),
        (b"0\n2\n1 6\n", "expected 2 entries"),
        (b"2\n0\n", "unrecognised version"),
    ],
)
def test_malformed_epochs_raise(tmp_path, data, message):
    path = tmp_path / "leader-epoch-checkpoint"
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match=message):
        read_epochs(path)


def test_write_epochs_refuses_negative_values(tmp_path):
    with pytest.raises(ValueError):
        write_epochs(tmp_path / "cp", [(-1, 0)])
    with pytest.raises(ValueError):
        write_epochs(tmp_path / "cp", [(0, -1)])


def test_write_atomically_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"old")
    write_atomically(path, b"new contents")
    assert path.read_bytes() == b"new contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]
    write_atomically(str(tmp_path / "g"), b"")
    assert (tmp_path / "g").read_bytes() == b""


def test_failed_temp_open_leaves_old_file(tmp_path):
    path = tmp_path / "recovery-point-offset-checkpoint"
    write_offsets(path, {("t", 0): 5})
    (tmp_path / "recovery-point-offset-checkpoint.tmp").mkdir()
    with pytest.raises(IsADirectoryError):
        write_offsets(path, {("t", 0): 6})
    assert read_offsets(path) == {("t", 0): 5}


def test_failed_fsync_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "leader-epoch-checkpoint"
    write_epochs(path, [(1, 0)])

    def failing_fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(checkpoint.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="Input/output"):
        write_epochs(path, [(1, 0), (2, 10)])
    monkeypatch.undo()
    assert read_epochs(path) == [(1, 0)]
    assert not (tmp_path / "leader-epoch-checkpoint.tmp").exists()


def test_failed_rename_leaves_old_file_and_no_temp(tmp_path):
    # The target is a non-empty directory: the rename fails after the temp file is complete.
    path = tmp_path / "cp"
    path.mkdir()
    (path / "keep").write_bytes(b"x")
    with pytest.raises(OSError):
        write_atomically(path, b"data")
    assert (path / "keep").read_bytes() == b"x"
    assert not (tmp_path / "cp.tmp").exists()
