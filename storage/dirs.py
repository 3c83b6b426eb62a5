"""Guards on the log directories: who may use them, and whose data they hold.

Three files at the top of every log dir, as Kafka keeps them:

* ``.lock`` — held (``flock``) for as long as a broker uses the dir, so a
  second broker pointed at the same dir refuses to start and touches
  nothing else (Kafka's LogManager.lockLogDirs).
* ``meta.properties`` — the cluster id and node id the dir belongs to
  (Kafka's KRaft layout: ``version=1``, ``node.id``, ``cluster.id``,
  ``directory.id``; a ZooKeeper-era ``version=0`` file names ``broker.id``).
  A dir of another node or another cluster is refused, never rewritten.
* partition dirs nothing knows about are moved aside as
  ``<topic>-<partition>.<id>-stray`` (Kafka 3.7's name), never deleted.

Checking is read-only; writing a missing meta.properties is a separate
step, taken once the broker holds every lock and has bound its listeners,
so that a start that fails (a port in use) leaves the dirs as they were.
"""

from __future__ import annotations

import base64
import errno
import fcntl
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from .checkpoint import write_atomically

LOCK_FILE = ".lock"
META_PROPERTIES = "meta.properties"
STRAY_SUFFIX = "-stray"


class LogDirError(Exception):
    """A log dir this broker must not use; the message says why and what to do."""


class DirLock:
    """An exclusive lock on ``<dir>/.lock``, held until ``release``."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._fd = -1

    def acquire(self) -> None:
        path = self.directory / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise LogDirError(
                    f"Failed to acquire lock on file {LOCK_FILE} in {self.directory}. "
                    "A Kafka instance in another process or thread is using this directory."
                ) from None
            raise
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = -1


def lock_dirs(dirs: list[Path]) -> list[DirLock]:
    """Create each dir if needed and lock it; all or none."""
    locks: list[DirLock] = []
    try:
        for d in dirs:
            lock = DirLock(d)
            try:
                d.mkdir(parents=True, exist_ok=True)
                lock.acquire()
            except OSError as exc:
                raise LogDirError(f"cannot use log dir {d}: {exc.strerror or exc}") from exc
            locks.append(lock)
    except BaseException:
        for lock in locks:
            lock.release()
        raise
    return locks


@dataclass(frozen=True)
class MetaProperties:
    cluster_id: str | None
    node_id: int | None
    directory_id: str | None = None
    version: int = 1

    def to_text(self) -> str:
        lines = [f"version={self.version}"]
        if self.cluster_id:
            lines.append(f"cluster.id={self.cluster_id}")
        if self.node_id is not None:
            lines.append(f"{'node.id' if self.version >= 1 else 'broker.id'}={self.node_id}")
        if self.directory_id:
            lines.append(f"directory.id={self.directory_id}")
        return "\n".join(lines) + "\n"


def read_meta_properties(directory: Path) -> MetaProperties | None:
    """The dir's meta.properties, None if it has none; LogDirError if unreadable."""
    path = directory / META_PROPERTIES
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise LogDirError(f"cannot read {path}: {exc}") from None
    props = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#!":
            continue
        key, sep, value = line.partition("=")
        if not sep:
            key, sep, value = line.partition(":")
        props[key.strip()] = value.strip()
    try:
        version = int(props.get("version", "0"))
        raw_id = props.get("node.id") if version >= 1 else props.get("broker.id")
        node_id = int(raw_id) if raw_id not in (None, "") else None
    except ValueError:
        raise LogDirError(f"{path} is not a valid meta.properties file") from None
    return MetaProperties(props.get("cluster.id") or None, node_id, props.get("directory.id") or None, version)


def check_meta_properties(dirs: list[Path], node_id: int, cluster_id: str | None) -> str | None:
    """Refuse dirs that belong to another node or another cluster (or to
    each other's different clusters); return the cluster id they agree on,
    else ``cluster_id``."""
    agreed = cluster_id
    agreed_from = "the cluster.id property" if cluster_id else None
    for d in dirs:
        meta = read_meta_properties(d)
        if meta is None:
            continue
        path = d / META_PROPERTIES
        if meta.node_id is not None and meta.node_id != node_id:
            raise LogDirError(
                f"Stored node id {meta.node_id} doesn't match previous node id {node_id} in {path}. "
                "If you moved your data, make sure your configured node id matches. If you intend to "
                "create a new node, you should remove all data in your data directories."
            )
        if meta.cluster_id is None:
            continue
        if agreed is None:
            agreed, agreed_from = meta.cluster_id, str(path)
        elif meta.cluster_id != agreed:
            raise LogDirError(
                f"Invalid cluster.id in: {path}. Expected {agreed} (from {agreed_from}), but read {meta.cluster_id}"
            )
    return agreed


def write_meta_properties(dirs: list[Path], node_id: int, cluster_id: str, *, zookeeper: bool = False) -> None:
    """Give every dir a meta.properties, keeping a dir's own directory.id.

    A ZooKeeper-mode broker writes what Kafka's does (``KafkaServer``,
    not migrating): version 0 with ``broker.id`` and ``cluster.id``, and no
    new directory.id."""
    for d in dirs:
        old = read_meta_properties(d)
        directory_id = old.directory_id if old is not None and old.directory_id else None
        if zookeeper:
            meta = MetaProperties(cluster_id, node_id, directory_id, version=0)
        else:
            meta = MetaProperties(cluster_id, node_id, directory_id or new_kafka_uuid())
        if old != meta:
            write_atomically(d / META_PROPERTIES, meta.to_text().encode())


def new_kafka_uuid() -> str:
    # Kafka's Uuid in its string form: 16 random bytes, URL-safe base64, unpadded.
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def stray_name(partition_dir_name: str) -> str:
    """Kafka's name for a log moved aside: ``<topic>-<partition>.<id>-stray``."""
    return f"{partition_dir_name}.{uuid.uuid4().hex}{STRAY_SUFFIX}"


def move_aside(partition_dir: Path) -> Path:
    """Rename a partition dir nothing knows about; its data stays on disk."""
    target = partition_dir.with_name(stray_name(partition_dir.name))
    os.rename(partition_dir, target)
    fd = os.open(partition_dir.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return target
