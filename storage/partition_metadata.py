"""A partition's ``partition.metadata``: the id of the topic its log belongs to.

A log directory is named ``<topic>-<partition>``, so a topic deleted and
re-created under the same name would find the old topic's log under the
new topic's name. Kafka (KIP-516) keeps the topic id beside the segments
to tell them apart, in this exact text (two lines, no final newline)::

    version: 0
    topic_id: <the topic's Uuid: 16 bytes, URL-safe base64 without padding>

Reading follows Kafka's PartitionMetadataReadBuffer: each line is a key,
a colon, whitespace and a value; the keys must be ``version`` then
``topic_id``; a version below 0 or the all-zero id is refused. A higher
version is read too, as Kafka reads it, since it keeps these two lines.
An empty file reads as no id: Kafka 2.8 created the file empty before
it knew the id.

The file is written once, when the log gets its topic, and never again:
a different id for a log that has one is an InconsistentTopicIdError.
"""

from __future__ import annotations

import base64
import os
import re
import uuid
from pathlib import Path

from .checkpoint import CheckpointError, write_atomically

FILE_NAME = "partition.metadata"
VERSION = 0

# Java's Pattern ":\s+" ("\s" is ASCII whitespace there) and Integer.parseInt.
_SEPARATOR = re.compile(r":[ \t\n\x0b\f\r]+")
_INT = re.compile(r"[+-]?[0-9]+")
_UUID_TEXT = re.compile(r"[A-Za-z0-9_-]{1,22}")
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


class InconsistentTopicIdError(Exception):
    """Kafka's InconsistentTopicIdException: a log already belongs to
    another topic id than the one it is being given."""

    def __init__(self, directory: Path, stored: uuid.UUID, wanted: uuid.UUID):
        super().__init__(
            f"Tried to assign topic ID {uuid_text(wanted)} to log {directory}, "
            f"but log already contained topic ID {uuid_text(stored)}"
        )
        self.directory, self.stored, self.wanted = directory, stored, wanted


def uuid_text(value: uuid.UUID) -> str:
    """Kafka's Uuid.toString."""
    return base64.urlsafe_b64encode(value.bytes).decode().rstrip("=")


def parse_uuid(text: str) -> uuid.UUID:
    """Kafka's Uuid.fromString; ValueError for anything that is not 16
    bytes in URL-safe base64."""
    if not _UUID_TEXT.fullmatch(text):
        raise ValueError(f"not a base64 (URL-safe) UUID: {text!r}")
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if len(raw) != 16:
        raise ValueError(f"{text!r} decodes to {len(raw)} bytes, not the 16 of a UUID")
    return uuid.UUID(bytes=raw)


def encode(topic_id: uuid.UUID) -> bytes:
    if topic_id.int == 0:
        raise ValueError("the all-zero UUID is not a topic id")
    return f"version: {VERSION}\ntopic_id: {uuid_text(topic_id)}".encode()


def decode(data: bytes, location: os.PathLike | str = FILE_NAME) -> uuid.UUID | None:
    """The topic id in a partition.metadata file's bytes; None if empty."""
    if not data:
        return None
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"partition metadata file {location} is not UTF-8 text: {exc}") from None
    version = _value(lines, 0, "version", location)
    if not _INT.fullmatch(version) or not _INT32_MIN <= int(version) <= _INT32_MAX:
        raise _malformed(location, lines[0])
    if int(version) < VERSION:
        raise CheckpointError(f"Unrecognized version of partition metadata file ({location}): {version}")
    text = _value(lines, 1, "topic_id", location)
    try:
        topic_id = parse_uuid(text)
    except ValueError:
        raise _malformed(location, lines[1]) from None
    if topic_id.int == 0:
        raise CheckpointError(f"Invalid topic ID in partition metadata file ({location})")
    return topic_id


def _value(lines: list[str], index: int, key: str, location) -> str:
    line = lines[index] if index < len(lines) else None
    parts = _SEPARATOR.split(line, maxsplit=1) if line is not None else []
    if len(parts) != 2 or parts[0] != key:
        raise _malformed(location, line)
    return parts[1]


def _malformed(location, line: str | None) -> CheckpointError:
    return CheckpointError(f"Malformed line in partition metadata file [{location}]: {line}")


def read_topic_id(directory: os.PathLike | str) -> uuid.UUID | None:
    """The topic id recorded in a partition directory; None if it has none
    (a log made before topic ids were kept). CheckpointError if unreadable."""
    path = Path(directory) / FILE_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return decode(data, path)


def write_topic_id(directory: os.PathLike | str, topic_id: uuid.UUID, *, sync_dir: bool = True) -> None:
    """Record ``topic_id`` in a partition directory, atomically (the file is
    fsynced before it is renamed into place; with ``sync_dir`` the
    directory after it). Refuses a directory that records another id."""
    stored = read_topic_id(directory)
    if stored == topic_id:
        return
    if stored is not None:
        raise InconsistentTopicIdError(Path(directory), stored, topic_id)
    write_atomically(Path(directory) / FILE_NAME, encode(topic_id), sync_dir=sync_dir)
