"""What the controller reads from ZooKeeper, turned into its view's records.

Reads of many znodes go out together (kazoo pipelines them on its one
connection), so that a controller taking over a cluster with thousands of
partitions reads their states in a few round trips' time, not one by one.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from pybroker.zk import NoNodeError

from . import znodes as zn
from .controller_state import TopicView
from .model import PartitionState

log = logging.getLogger("pybroker.controller")

# Reads in flight at once.
CONCURRENT_READS = 64


async def gather(calls: list[Callable[[], Awaitable]]) -> list:
    """Every call's result, in order. The first failure ends the others
    and is raised as itself (ZooKeeper's error), not in a group."""
    results: list = [None] * len(calls)
    limiter = trio.CapacityLimiter(CONCURRENT_READS)

    async def one(i, call):
        async with limiter:
            results[i] = await call()

    try:
        async with trio.open_nursery() as nursery:
            for i, call in enumerate(calls):
                nursery.start_soon(one, i, call)
    except BaseExceptionGroup as group:
        first = group
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None
    return results


async def read_brokers(zk, watch) -> dict[int, int]:
    """Registered brokers: {id: broker epoch (the czxid of its znode)}; watches the children."""
    ids = await zk.get_children(zn.BROKER_IDS, watch=watch)

    async def epoch(child):
        stat = await zk.exists(f"{zn.BROKER_IDS}/{child}")
        return None if stat is None else stat.czxid

    epochs = await gather([lambda c=c: epoch(c) for c in ids])
    return {int(c): e for c, e in zip(ids, epochs) if e is not None and c.isdigit()}


async def read_state(zk, topic: str, index: int) -> PartitionState | None:
    try:
        data, stat = await zk.get(zn.partition_state_path(topic, index))
    except NoNodeError:
        return None
    return zn.decode_partition_state(data, stat.version)


async def read_states(zk, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], PartitionState | None]:
    found = await gather([lambda tp=tp: read_state(zk, *tp) for tp in partitions])
    return dict(zip(partitions, found))


async def read_topic(zk, name: str, watch, *, states: bool = True) -> TopicView | None:
    """The topic's znode (watched, for partition additions) and, with
    ``states``, its partitions' states; None if it is gone or unreadable."""
    try:
        data, _ = await zk.get(zn.topic_path(name), watch=watch)
    except NoNodeError:
        return None
    try:
        znode = zn.decode_topic(data)
    except (ValueError, KeyError, TypeError) as exc:
        # Kafka's controller fails on such a znode; skipping it keeps the rest of the cluster served.
        log.error("Ignoring topic %s: its znode %s cannot be read: %s", name, zn.topic_path(name), exc)
        return None
    topic = TopicView(name, znode.topic_id, {p: list(r) for p, r in znode.assignment.items()})
    if states:
        found = await read_states(zk, [(name, p) for p in sorted(topic.assignment)])
        topic.states = {p: s for (_, p), s in found.items() if s is not None}
    return topic


async def subtree(zk, path: str) -> list[str]:
    """``path`` and every znode under it, deepest first (the order they
    can be deleted in), read a level at a time; empty if it is absent."""

    async def children(parent):
        try:
            return [f"{parent}/{child}" for child in await zk.get_children(parent)]
        except NoNodeError:
            return []

    try:
        levels = [[path], [f"{path}/{child}" for child in await zk.get_children(path)]]
    except NoNodeError:
        return []
    while levels[-1]:
        found = await gather([lambda p=p: children(p) for p in levels[-1]])
        levels.append([child for below in found for child in below])
    return [node for level in reversed(levels) for node in level]
