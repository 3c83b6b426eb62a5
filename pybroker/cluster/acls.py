"""Where the ACLs are kept: the edits of CreateAcls and DeleteAcls as
AclAuthorizer makes them, over a store that reads and writes one
resource pattern's entries at a time. The single-node store is here (a
file beside the cluster metadata); ZooKeeper's is in zk_acls.py.

Edits go pattern by pattern: CreateAcls adds its entries to each pattern
named; DeleteAcls takes, from each pattern in the table that a filter's
pattern part matches, the entries that filter's entry part matches, and
reports each removed binding under every filter that matched it. A
pattern whose write fails fails its bindings alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import trio

from pybroker.acl import AclTable, Binding, BindingFilter, Entry, ResourcePattern
from pybroker.acl.codec import decode_file, encode_file
from pybroker.protocol.error_codes import ErrorCode
from pybroker.storage.checkpoint import write_atomically
from pybroker.storage.dirs import LogDirError

log = logging.getLogger("pybroker.authorizer")

ACL_FILE = "acls.json"

Edit = Callable[[frozenset[Entry]], frozenset[Entry]]
# What a failed edit answers: Kafka's apiException of an unexpected error
# (INVALID_REQUEST for a binding the store cannot hold).
Failure = tuple[ErrorCode, str]


def failure(exc: Exception) -> Failure:
    code = ErrorCode.INVALID_REQUEST if isinstance(exc, ValueError) else ErrorCode.UNKNOWN_SERVER_ERROR
    return code, str(exc) or type(exc).__name__


class AclStore:
    def __init__(self):
        self.table = AclTable()

    async def update(self, pattern: ResourcePattern, edit: Edit) -> None:
        """Replace the entries of ``pattern`` by ``edit(current)``, durably."""
        raise NotImplementedError

    async def create(self, bindings: list[Binding]) -> list[Failure | None]:
        results: list[Failure | None] = [None] * len(bindings)
        by_pattern: dict[ResourcePattern, list[int]] = {}
        for i, b in enumerate(bindings):
            by_pattern.setdefault(b.pattern, []).append(i)
        for pattern, indexes in by_pattern.items():
            new = frozenset(bindings[i].entry for i in indexes)
            try:
                await self.update(pattern, lambda current, new=new: current | new)
            except Exception as exc:  # noqa: BLE001 - one pattern's failure is its bindings' answer
                log.warning("creating ACLs on %s failed: %r", pattern, exc)
                for i in indexes:
                    results[i] = failure(exc)
        return results

    async def delete(self, filters: list[BindingFilter]) -> list[list[tuple[Binding, Failure | None]]]:
        out: list[list[tuple[Binding, Failure | None]]] = [[] for _ in filters]
        for pattern in self.table.patterns():
            matching = [(i, f) for i, f in enumerate(filters) if f.matches_pattern(pattern)]
            if not matching:
                continue
            removed: dict[int, list[Entry]] = {}

            def edit(current, matching=matching, removed=removed):
                removed.clear()  # the edit may run again on a newer version
                kept = set()
                for e in current:
                    hits = [i for i, f in matching if f.matches_entry(e)]
                    for i in hits:
                        removed.setdefault(i, []).append(e)
                    if not hits:
                        kept.add(e)
                return frozenset(kept)

            problem = None
            try:
                await self.update(pattern, edit)
            except Exception as exc:  # noqa: BLE001
                log.warning("deleting ACLs on %s failed: %r", pattern, exc)
                problem = failure(exc)
            for i, entries in removed.items():
                out[i] += [(Binding(pattern, e), problem) for e in entries]
        return out


class LocalAcls(AclStore):
    """Single node: the table, saved whole to ``acls.json`` after each edit
    (tmp, fsync, rename: the file holds the old ACLs or all the new)."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = Path(path)
        self._writing = trio.Lock()
        if self.path.exists():
            try:
                self.table.replace_all(decode_file(self.path.read_bytes()))
            except (OSError, ValueError) as exc:
                # The operator's to fix: starting without them would open what they closed.
                raise LogDirError(f"cannot read the ACLs in {self.path}: {exc}") from None

    @classmethod
    def beside(cls, metadata_file: Path) -> LocalAcls:
        return cls(Path(metadata_file).with_name(ACL_FILE))

    async def update(self, pattern: ResourcePattern, edit: Edit) -> None:
        current = self.table.get(pattern)
        new = frozenset(edit(current))
        if new == current:
            return
        self.table.put(pattern, new)
        try:
            async with self._writing:  # the newest table, written once at a time
                data = encode_file(self.table.items())
                await trio.to_thread.run_sync(write_atomically, self.path, data)
        except BaseException:
            if self.table.get(pattern) == new:
                self.table.put(pattern, current)
            raise
