"""ZkAcls against a real ZooKeeper: two brokers' stores editing the same
resource at once (versioned writes, retried on a conflict) lose nothing,
each sees the other's edits through the change notifications, and a
deletion that empties a resource removes its znode."""

from __future__ import annotations

import json

import trio

from pybroker.acl import (
    Binding,
    BindingFilter,
    Entry,
    Operation,
    PatternType,
    Permission,
    ResourcePattern,
    ResourceType,
)
from pybroker.cluster.zk_acls import ZkAcls
from pybroker.zk import ZkClient

TOPIC = ResourcePattern(ResourceType.TOPIC, "orders", PatternType.LITERAL)
PREFIX = ResourcePattern(ResourceType.GROUP, "team-", PatternType.PREFIXED)


def entry(user: str, op=Operation.READ) -> Entry:
    return Entry(f"User:{user}", "*", op, Permission.ALLOW)


async def until(condition) -> None:
    with trio.fail_after(20):
        while not condition():
            await trio.sleep(0.01)


async def test_two_stores_edit_at_once_and_see_each_other(zk_connect, zk_admin):
    clients = [ZkClient(zk_connect, session_timeout_ms=6000) for _ in range(2)]
    async with trio.open_nursery() as nursery:
        for c in clients:
            await c.connect()
        one, two = ZkAcls(clients[0]), ZkAcls(clients[1])
        await nursery.start(one.run)
        await nursery.start(two.run)
        users = [f"u{i}" for i in range(10)]
        async with trio.open_nursery() as writers:
            for i, user in enumerate(users):
                store = one if i % 2 else two
                writers.start_soon(store.create, [Binding(TOPIC, entry(user))])
        stored = json.loads(zk_admin.get("/kafka-acl/Topic/orders")[0])
        assert sorted(a["principal"] for a in stored["acls"]) == sorted(f"User:{u}" for u in users)
        expected = {entry(u) for u in users}
        await until(lambda: one.table.get(TOPIC) == expected and two.table.get(TOPIC) == expected)

        assert await one.create([Binding(PREFIX, entry("alice", Operation.DESCRIBE))]) == [None]
        assert zk_admin.exists("/kafka-acl-extended/prefixed/Group/team-")
        await until(lambda: two.table.get(PREFIX) == {entry("alice", Operation.DESCRIBE)})

        everything = BindingFilter(ResourceType.ANY, None, PatternType.ANY, None, None, Operation.ANY, Permission.ANY)
        removed = await two.delete([everything])
        assert len(removed[0]) == 11 and all(problem is None for _, problem in removed[0])
        assert zk_admin.exists("/kafka-acl/Topic/orders") is None
        await until(lambda: len(one.table) == 0)
        nursery.cancel_scope.cancel()
    for c in clients:
        await c.close()
