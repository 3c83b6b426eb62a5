"""ReplicaFetchers' bookkeeping (one task per leader, started with its
first partition and stopped with its last, a new epoch forgetting the
back-off) and what cluster hosting hands it; the fetching itself is
tested against real brokers in tests/cluster/test_followers.py."""

from __future__ import annotations

from types import SimpleNamespace

import trio
import trio.testing

from pybroker.cluster.model import PartitionInfo, PartitionState
from pybroker.cluster.zk_state import ZkHosting
from pybroker.replica import ReplicaManager, Role
from pybroker.replica.fetcher import ReplicaFetchers

CONFIG = {
    "replica.fetch.wait.max.ms": 500,
    "replica.fetch.min.bytes": 1,
    "replica.fetch.response.max.bytes": 1 << 20,
    "replica.fetch.max.bytes": 1 << 20,
    "replica.fetch.backoff.ms": 1000,
    "replica.socket.timeout.ms": 30000,
}


def part(topic: str, index: int, leader: int, epoch: int = 0, role: Role = Role.FOLLOWER):
    info = PartitionInfo(index, [1, 2, 3], PartitionState(leader, epoch, [1, 2, 3]))
    return SimpleNamespace(topic=topic, index=index, info=info, role=role)


def fetchers(brokers=lambda node_id: None) -> ReplicaFetchers:
    return ReplicaFetchers(ReplicaManager(1, producer_expiration_ms=1000), CONFIG, brokers)


async def test_one_task_per_leader_started_and_stopped_with_its_partitions():
    f = fetchers()
    a, b, c = part("t", 0, 2), part("t", 1, 2), part("t", 2, 3)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(f.run)
        await trio.testing.wait_all_tasks_blocked()
        for p in (a, b, c):
            f.follow(p, p.info.leader)
        await trio.testing.wait_all_tasks_blocked()
        assert set(f.fetchers) == {2, 3}
        to_2 = f.fetchers[2]
        assert set(to_2.partitions) == {("t", 0), ("t", 1)} and f.leader_of(a) == 2
        f.unfollow(a)
        assert f.fetchers[2] is to_2 and not to_2.scope.cancel_called
        f.unfollow(b)
        assert 2 not in f.fetchers and to_2.scope.cancel_called
        # Moved to another leader: out of one task, into the other's.
        f.follow(c, 2)
        assert set(f.fetchers) == {2} and f.leader_of(c) == 2
        nursery.cancel_scope.cancel()


async def test_a_new_epoch_forgets_the_back_off():
    f = fetchers()
    p = part("t", 0, 2)
    f.follow(p, 2)
    st = f.fetchers[2].partitions[("t", 0)]
    st.delay_until = 1e9
    f.follow(p, 2)  # same epoch: nothing changes
    assert st.delay_until == 1e9
    p.info = PartitionInfo(0, [1, 2, 3], PartitionState(2, 1, [1, 2, 3]))
    f.follow(p, 2)
    assert f.fetchers[2].partitions[("t", 0)] is st and st.delay_until == 0 and st.epoch == 1


async def test_a_task_that_cannot_reach_its_leader_keeps_trying(caplog):
    f = fetchers()  # no broker is registered
    f.backoff = 0.01
    f.follow(part("t", 0, 2), 2)
    with trio.move_on_after(0.5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(f.run)
            while f.fetchers[2].failures < 3:
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    assert f.fetchers[2].failures >= 3
    # Logged once, not at every attempt.
    assert sum("is not registered" in r.getMessage() for r in caplog.records if r.levelname == "WARNING") == 1


def hosting(fetchers) -> ZkHosting:
    h = ZkHosting(SimpleNamespace(node_id=1), ReplicaManager(1, producer_expiration_ms=1000))
    h.fetchers = fetchers
    return h


def test_hosting_hands_followers_to_the_fetchers():
    f = fetchers()
    h = hosting(f)
    follower = part("t", 0, 2)
    h.follow(follower)
    assert f.leader_of(follower) == 2
    # Leading now: taken from them.
    follower.info = PartitionInfo(0, [1, 2, 3], PartitionState(1, 1, [1, 2, 3]))
    follower.role = Role.LEADER
    h.follow(follower)
    assert f.leader_of(follower) is None
    # No leader at all: nothing to fetch from.
    leaderless = part("t", 1, -1)
    h.follow(leaderless)
    assert f.leader_of(leaderless) is None


def test_a_session_expiry_stops_every_fetch():
    f = fetchers()
    h = hosting(f)
    p = part("t", 0, 2)
    h.follow(p)
    h.session_expired()
    assert f.leader_of(p) is None and not f.fetchers
    # Until registered again, even a follower's state does not start one.
    h.follow(p)
    assert f.leader_of(p) is None
    h.session_registered()
    h.follow(p)
    assert f.leader_of(p) == 2
