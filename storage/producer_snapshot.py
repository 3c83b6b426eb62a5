"""Producer-state snapshot files: ``<offset, 20 digits>.snapshot`` beside
the segments, in Kafka's layout (version 1):

    version int16 | crc uint32 (CRC-32C of everything after it) |
    count int32 | per producer: producer id int64, epoch int16,
    last sequence int32, last offset int64, offset delta int32,
    timestamp int64, coordinator epoch int32, first offset of the open
    transaction int64 (-1 when none)

A snapshot taken at offset N describes every batch below N. Files are
written atomically; one that fails its CRC or is cut short is reported as
corrupt and the caller falls back to an older one or to a log scan.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import crc32c

from .checkpoint import write_atomically

SUFFIX = ".snapshot"
VERSION = 1
_HEAD = struct.Struct(">hI")
_COUNT = struct.Struct(">i")
_ENTRY = struct.Struct(">qhiqiqiq")


class CorruptSnapshotError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class SnapshotEntry:
    producer_id: int
    epoch: int
    last_sequence: int
    last_offset: int
    offset_delta: int
    timestamp: int
    coordinator_epoch: int = -1
    txn_first_offset: int = -1


def snapshot_path(directory: Path, offset: int) -> Path:
    return Path(directory) / f"{offset:020d}{SUFFIX}"


def list_snapshots(directory: Path) -> list[int]:
    """Offsets of the snapshot files in ``directory``, ascending."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        if name.endswith(SUFFIX):
            stem = name[: -len(SUFFIX)]
            if stem.isdigit():
                out.append(int(stem))
    return sorted(out)


def write_snapshot(directory: Path, offset: int, entries: list[SnapshotEntry]) -> Path:
    body = bytearray(_COUNT.pack(len(entries)))
    for e in entries:
        body += _ENTRY.pack(
            e.producer_id,
            e.epoch,
            e.last_sequence,
            e.last_offset,
            e.offset_delta,
            e.timestamp,
            e.coordinator_epoch,
            e.txn_first_offset,
        )
    data = _HEAD.pack(VERSION, crc32c.crc32c(body)) + body
    path = snapshot_path(directory, offset)
    write_atomically(path, bytes(data))
    return path


def read_snapshot(path: Path) -> list[SnapshotEntry]:
    data = Path(path).read_bytes()
    if len(data) < _HEAD.size + _COUNT.size:
        raise CorruptSnapshotError(f"{path}: too short")
    version, crc = _HEAD.unpack_from(data, 0)
    if version != VERSION:
        raise CorruptSnapshotError(f"{path}: unknown version {version}")
    body = memoryview(data)[_HEAD.size :]
    if crc32c.crc32c(body) != crc:
        raise CorruptSnapshotError(f"{path}: CRC mismatch")
    (count,) = _COUNT.unpack_from(body, 0)
    if count < 0 or _COUNT.size + count * _ENTRY.size != len(body):
        raise CorruptSnapshotError(f"{path}: {count} entries do not fit {len(body)} bytes")
    return [SnapshotEntry(*_ENTRY.unpack_from(body, _COUNT.size + i * _ENTRY.size)) for i in range(count)]


def delete_snapshots(directory: Path, keep, offsets: list[int] | None = None) -> list[int]:
    """Delete every snapshot whose offset ``keep(offset)`` rejects, among
    ``offsets`` (default: those in the directory); return the others."""
    kept = []
    for offset in list_snapshots(directory) if offsets is None else offsets:
        if keep(offset):
            kept.append(offset)
            continue
        try:
            os.unlink(snapshot_path(directory, offset))
        except FileNotFoundError:
            pass
    return kept
