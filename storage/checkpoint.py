"""Kafka's small text checkpoint files, written atomically.

Every checkpoint file is UTF-8 text, one item per line:

    0                     version (always 0 for these files)
    <count>               number of entry lines that follow
    <entry>               `count` times

The entry is "topic partition offset" in the per-log-dir offset checkpoints
(recovery-point-offset-checkpoint, replication-offset-checkpoint,
log-start-offset-checkpoint; Kafka's OffsetCheckpointFile) and "epoch
start_offset" in a partition's leader-epoch-checkpoint. As in Kafka's
CheckpointFile, an empty file or one holding only the version line reads as
no entries, and fields may be separated by any run of whitespace.

A write goes to "<path>.tmp", is fsynced, renamed over the old file and the
directory is fsynced, so a crash leaves either the old or the new file.
"""

from __future__ import annotations

import os
import re

VERSION = 0

# Kafka's legal topic characters (Topic.LEGAL_CHARS) and maximum length.
_TOPIC = re.compile(r"[a-zA-Z0-9._-]{1,249}")
_INT = re.compile(r"-?[0-9]+")
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class CheckpointError(Exception):
    """A checkpoint file exists but is not a valid checkpoint."""


def write_atomically(path: os.PathLike | str, data: bytes, *, sync_dir: bool = True) -> None:
    """Replace the file at `path` by `data` so that, whatever happens, it holds
    either its old contents or all of the new ones. Without `sync_dir` the
    rename is not made durable here: for a caller that fsyncs the directory
    later, before it relies on the file."""
    path = os.fspath(path)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if sync_dir:
        _fsync_dir(os.path.dirname(path) or ".")


def write_offsets(path: os.PathLike | str, offsets: dict[tuple[str, int], int]) -> None:
    """Write an offset checkpoint (entries sorted by topic, then partition)."""
    lines = []
    for (topic, partition), offset in sorted(offsets.items()):
        if not _TOPIC.fullmatch(topic):
            raise ValueError(f"illegal topic name {topic!r} for an offset checkpoint")
        _check_int("partition", partition, 0, _INT32_MAX)
        _check_int("offset", offset, _INT64_MIN, _INT64_MAX)
        lines.append(f"{topic} {partition} {offset}")
    write_atomically(path, _format(lines))


def read_offsets(path: os.PathLike | str) -> dict[tuple[str, int], int]:
    """Read an offset checkpoint; {} if the file does not exist."""
    offsets = {}
    for line_no, fields in _read(path, 3):
        topic, partition, offset = fields
        if not _TOPIC.fullmatch(topic):
            raise CheckpointError(f"illegal topic name {topic!r} at line {line_no} of checkpoint file {path}")
        partition = _parse_int(path, line_no, "partition", partition, 0, _INT32_MAX)
        offsets[topic, partition] = _parse_int(path, line_no, "offset", offset, _INT64_MIN, _INT64_MAX)
    return offsets


def write_epochs(path: os.PathLike | str, entries: list[tuple[int, int]]) -> None:
    """Write a leader-epoch-checkpoint with the entries in the order given."""
    lines = []
    for epoch, start_offset in entries:
        _check_int("leader epoch", epoch, 0, _INT32_MAX)
        _check_int("start offset", start_offset, 0, _INT64_MAX)
        lines.append(f"{epoch} {start_offset}")
    write_atomically(path, _format(lines))


def read_epochs(path: os.PathLike | str) -> list[tuple[int, int]]:
    """Read a leader-epoch-checkpoint as [(epoch, start offset)]; [] if missing."""
    return [
        (
            _parse_int(path, line_no, "leader epoch", epoch, 0, _INT32_MAX),
            _parse_int(path, line_no, "start offset", start_offset, 0, _INT64_MAX),
        )
        for line_no, (epoch, start_offset) in _read(path, 2)
    ]


def _format(lines: list[str]) -> bytes:
    return "".join(f"{line}\n" for line in [str(VERSION), str(len(lines)), *lines]).encode()


def _read(path: os.PathLike | str, width: int) -> list[tuple[int, list[str]]]:
    """The entry lines of a checkpoint file, each as (line number, fields)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return []
    try:
        lines = raw.decode("utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise CheckpointError(f"checkpoint file {path} is not UTF-8 text: {e}") from None
    if not lines:
        return []
    version = _parse_int(path, 1, "version", lines[0], _INT32_MIN, _INT32_MAX)
    if version != VERSION:
        raise CheckpointError(f"unrecognised version {version} in checkpoint file {path}, expected {VERSION}")
    if len(lines) == 1:
        return []
    count = _parse_int(path, 2, "entry count", lines[1], 0, _INT32_MAX)
    entries = []
    for line_no, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if len(fields) != width:
            raise CheckpointError(
                f"malformed line {line_no} in checkpoint file {path}: {line!r} (expected {width} fields)"
            )
        entries.append((line_no, fields))
    if len(entries) != count:
        raise CheckpointError(f"expected {count} entries in checkpoint file {path}, found {len(entries)}")
    return entries


def _parse_int(path, line_no: int, what: str, text: str, low: int, high: int) -> int:
    if _INT.fullmatch(text):
        value = int(text)
        if low <= value <= high:
            return value
    raise CheckpointError(f"malformed {what} {text!r} at line {line_no} of checkpoint file {path}")


def _check_int(what: str, value: int, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{what} {value!r} cannot be written to a checkpoint (range {low}..{high})")


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
