"""Cluster mode: ACLs in ZooKeeper, as AclAuthorizer keeps them (znode
formats in pybroker/acl/codec.py).

At start the broker creates the ACL folders, reads every resource znode
into its table, then watches both change folders. An edit reads the
pattern's znode with its version and writes it back on that version
only (set, create, or delete when no entry is left), reading again on a
conflict, at most ``MAX_UPDATE_RETRIES`` times; once written it updates
this broker's table and adds a sequential change notification naming
the pattern. Every broker (this one too) reads the notifications newer
than the last it saw and re-reads the patterns they name, so an edit
made through any broker is enforced by all. Notifications older than
15 minutes are deleted (ZkNodeChangeNotificationListener). After a
lost session everything is read again.
"""

from __future__ import annotations

import logging
import random
import time

import trio

from pybroker.acl import ResourcePattern
from pybroker.acl.codec import (
    CHANGE_PREFIX,
    EXTENDED_CHANGES,
    LITERAL_CHANGES,
    STORED_PATTERNS,
    STORED_TYPES,
    all_paths,
    changes_path,
    decode_acls,
    decode_change,
    encode_acls,
    encode_change,
    resource_path,
    type_path,
)
from pybroker.zk import (
    BadVersionError,
    ConnectionLossError,
    NodeExistsError,
    NoNodeError,
    SessionExpiredError,
    ZkClient,
)

from .acls import AclStore, Edit
from .zk_configs import gather

log = logging.getLogger("pybroker.authorizer")

MAX_UPDATE_RETRIES = 10  # AclAuthorizer's maxUpdateRetries
RETRY_BACKOFF_MS = (50, 500)  # a random pause between conflicting writes
CHANGE_EXPIRATION_MS = 15 * 60 * 1000
RETRY_AFTER_FAILURE_S = 1.0
_LOST = (ConnectionLossError, SessionExpiredError)


class ZkAcls(AclStore):
    def __init__(self, zk: ZkClient):
        super().__init__()
        self.zk = zk
        self._seen = {LITERAL_CHANGES: -1, EXTENDED_CHANGES: -1}
        self._dirty = {LITERAL_CHANGES: True, EXTENDED_CHANGES: True}
        self._full = True
        self._wake = trio.Event()
        zk.add_session_listener(self._session_changed)

    # -- writes ----------------------------------------------------------------------

    async def update(self, pattern: ResourcePattern, edit: Edit) -> None:
        if "/" in pattern.name or pattern.name in (".", ".."):
            # A znode's name: Kafka's write would fail on it as well.
            raise ValueError(f"ACL binding contains invalid resource name: {pattern.name}")
        path = resource_path(pattern)
        for _ in range(MAX_UPDATE_RETRIES):
            try:
                data, stat = await self.zk.get(path)
                current, version = decode_acls(data), stat.version
            except NoNodeError:
                current, version = frozenset(), None
            new = frozenset(edit(current))
            if new == current:
                self.table.put(pattern, current)
                return
            try:
                if not new:
                    await self.zk.delete(path, version)
                elif version is None:
                    await self.zk.create(path, encode_acls(new), makepath=True)
                else:
                    await self.zk.set(path, encode_acls(new), version)
            except (BadVersionError, NodeExistsError, NoNodeError):
                await trio.sleep(random.uniform(*RETRY_BACKOFF_MS) / 1000)  # another broker's edit won
                continue
            self.table.put(pattern, new)
            await self.zk.create(
                f"{changes_path(pattern.pattern_type)}/{CHANGE_PREFIX}", encode_change(pattern), sequence=True
            )
            return
        raise RuntimeError(f"Failed to update ACLs for {pattern} after trying a maximum of {MAX_UPDATE_RETRIES} times")

    # -- the cache ---------------------------------------------------------------------

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Create the folders, read every ACL, then follow the changes."""
        for path in all_paths():
            await self.zk.ensure_path(path)
        started = False
        while True:
            if started:
                await self._wake.wait()
            self._wake = trio.Event()
            try:
                await self._pass()
            except _LOST:
                self._full = True
                await trio.sleep(0.1)  # until the client notices and reconnects
                self._wake.set()
                continue
            except Exception:
                # The ACLs stay as they were; everything is read again shortly.
                log.exception("reading the ACLs from ZooKeeper failed")
                self._full = True
                await trio.sleep(RETRY_AFTER_FAILURE_S)
                self._wake.set()
                continue
            if not started:
                started = True
                task_status.started()

    async def _pass(self) -> None:
        if self._full:
            self._full = False
            self._dirty = {p: True for p in self._dirty}
            await self._read_changes(initial=True)
            await self._read_all()
            return
        await self._read_changes(initial=False)

    async def _read_all(self) -> None:
        folders = [(kind, rtype) for kind in STORED_PATTERNS for rtype in STORED_TYPES]
        children = await gather([self._children(type_path(kind, rtype)) for kind, rtype in folders])
        patterns = [
            ResourcePattern(rtype, name, kind) for (kind, rtype), names in zip(folders, children) for name in names
        ]
        found = await gather([self._read(p) for p in patterns])
        self.table.replace_all({p: entries for p, entries in zip(patterns, found) if entries})
        log.info("read %d ACLs on %d resource patterns from ZooKeeper", len(self.table), len(self.table.patterns()))

    async def _children(self, path: str) -> list[str]:
        try:
            return await self.zk.get_children(path)
        except NoNodeError:
            return []

    async def _read(self, pattern: ResourcePattern) -> frozenset:
        try:
            data, _ = await self.zk.get(resource_path(pattern))
        except NoNodeError:
            return frozenset()
        try:
            return decode_acls(data)
        except ValueError as exc:
            log.warning("ignoring the ACLs of %s: %s", pattern, exc)
            return frozenset()

    async def _read_changes(self, initial: bool) -> None:
        for folder in (LITERAL_CHANGES, EXTENDED_CHANGES):
            if not self._dirty[folder]:
                continue
            self._dirty[folder] = False
            children = await self.zk.get_children(folder, watch=self._on_change)
            fresh = sorted(
                (seq, child) for child in children if (seq := _sequence(child)) is not None and seq > self._seen[folder]
            )
            if fresh:
                self._seen[folder] = fresh[-1][0]
            if not initial and fresh:
                named = await gather([self._named(folder, child) for _, child in fresh])
                patterns = list(dict.fromkeys(p for p in named if p is not None))
                found = await gather([self._read(p) for p in patterns])
                for pattern, entries in zip(patterns, found):
                    self.table.put(pattern, entries)
            await self._purge(folder, children)

    async def _named(self, folder: str, child: str) -> ResourcePattern | None:
        try:
            data, _ = await self.zk.get(f"{folder}/{child}")
            return decode_change(data, literal=folder == LITERAL_CHANGES)
        except NoNodeError:
            return None  # purged meanwhile
        except ValueError as exc:
            log.warning("ignoring ACL change %s/%s: %s", folder, child, exc)
            return None

    async def _purge(self, folder: str, children: list[str]) -> None:
        expired = time.time() * 1000 - CHANGE_EXPIRATION_MS
        stats = await gather([self.zk.exists(f"{folder}/{c}") for c in children])
        for child, stat in zip(children, stats):
            if stat is not None and stat.ctime < expired:
                try:
                    await self.zk.delete(f"{folder}/{child}")
                except NoNodeError:
                    pass  # another broker purged it

    # -- watches -----------------------------------------------------------------------

    def _on_change(self, event) -> None:
        folder = event.path if event.path in self._dirty else None
        if folder is None:
            return
        self._dirty[folder] = True
        self._wake.set()

    def _session_changed(self, state: str) -> None:
        if state == "connected":
            self._full = True  # watches and notifications may have been missed
            self._wake.set()


def _sequence(child: str) -> int | None:
    if not child.startswith(CHANGE_PREFIX):
        return None
    try:
        return int(child[len(CHANGE_PREFIX):])
    except ValueError:
        return None
