"""Cluster mode: config change notifications (topics and users), as Kafka's
ZkConfigManager reads them (``ZkNodeChangeNotificationListener``).

A config change is written as the new ``/config/topics/<t>`` and then a
sequential ``/config/changes/config_change_N`` whose JSON names the
entity (``topics/<t>``). Brokers watch the children of
``/config/changes``, read the notifications newer than the last one
they saw, and re-read the configs they name. Every broker deletes the
notifications older than 15 minutes, so the folder does not grow for ever.
"""

from __future__ import annotations

import logging
import time

import trio

from pybroker.zk import NoNodeError, ZkClient

from . import znodes

log = logging.getLogger("pybroker.cluster")

# Notifications older than this are deleted (ZkConfigManager's changeExpirationMs).
CONFIG_CHANGE_EXPIRATION_MS = 15 * 60 * 1000
# Reads in flight at once (ZooKeeper pipelines them).
READS_IN_FLIGHT = 256


class ConfigChanges:
    def __init__(self, zk: ZkClient):
        self.zk = zk
        # The sequence number of the last notification read (-1: none yet).
        self.seen = -1
        self._started = False
        self._ctimes: dict[str, int] = {}  # notification -> its creation time (ms)

    async def read(self, watch) -> set[str]:
        """The entities (``topics/<t>``, ``users/<sanitized user>``) named
        by notifications newer than the last one seen, the children watched
        with ``watch``. The first call only notes where the sequence is: at
        start every config is read anyway."""
        children = await self.zk.get_children(znodes.CONFIG_CHANGES, watch=watch)
        fresh = []
        for child in children:
            if child.startswith(znodes.CONFIG_CHANGE_PREFIX):
                try:
                    seq = int(child[len(znodes.CONFIG_CHANGE_PREFIX) :])
                except ValueError:
                    continue
                if seq > self.seen:
                    fresh.append((seq, child))
        fresh.sort()
        names = set()
        if self._started:
            names.update(e for e in await gather([self._entity(child) for _, child in fresh]) if e is not None)
        self._started = True
        if fresh:
            self.seen = fresh[-1][0]
        await self._purge(children)
        return names

    async def _entity(self, child: str) -> str | None:
        try:
            data, _ = await self.zk.get(f"{znodes.CONFIG_CHANGES}/{child}")
            return znodes.decode_config_change(data)
        except NoNodeError:
            return None  # purged meanwhile
        except ValueError as exc:
            log.warning("ignoring config change %s: %s", child, exc)
            return None

    async def _purge(self, children: list[str]) -> None:
        ctimes = self._ctimes
        for gone in set(ctimes) - set(children):
            del ctimes[gone]
        unknown = [c for c in children if c not in ctimes]
        stats = await gather([self.zk.exists(f"{znodes.CONFIG_CHANGES}/{c}") for c in unknown])
        ctimes.update((c, stat.ctime) for c, stat in zip(unknown, stats) if stat is not None)
        expired = time.time() * 1000 - CONFIG_CHANGE_EXPIRATION_MS
        for child in [c for c, ctime in ctimes.items() if ctime < expired]:
            try:
                await self.zk.delete(f"{znodes.CONFIG_CHANGES}/{child}")
            except NoNodeError:
                pass  # another broker purged it
            del ctimes[child]


async def gather(calls: list) -> list:
    """Await every coroutine in ``calls``, READS_IN_FLIGHT at a time; their
    results in order. The first failure is raised bare (not in a group),
    for the callers' ``except`` clauses."""
    results: list = [None] * len(calls)
    if not calls:
        return results
    if len(calls) == 1:
        results[0] = await calls[0]
        return results
    limit = trio.CapacityLimiter(READS_IN_FLIGHT)
    failures: list[Exception] = []

    async def one(i, call):
        try:
            async with limit:
                if not failures:
                    results[i] = await call
                    return
        except Exception as exc:  # noqa: BLE001 - raised again below, bare
            failures.append(exc)
        call.close()  # not awaited: say so, quietly

    async with trio.open_nursery() as nursery:
        for i, call in enumerate(calls):
            nursery.start_soon(one, i, call)
    if failures:
        raise failures[0]
    return results
