"""Crash detection faster than the ZooKeeper session.

A broker killed with kill -9 keeps its ZooKeeper session, registration
and leaderships until the session times out; here the session is 10 s
and the cluster must move on long before: the controller finds the dead
broker's listener refusing connections, deletes its registration and
elects new leaders; a dead controller is found the same way by the
others, which free /controller. The killed broker, started again while
its old session still lives, registers anew and keeps that registration
when the old session finally expires."""

from __future__ import annotations

import re
import time

import pytest

from pybroker.cluster.crash_detection import RefusalStreak
from pybroker.local_cluster import LocalCluster, wait_for
from pybroker.zk.server import four_letter_word

from .test_replication_clients import create, states, unique, wait_isr

SESSION_MS = 10_000
# Well below the session: a failover this fast did not wait for it.
BEFORE_EXPIRY_S = 6.0
SESSION_LINE = re.compile(r"ZooKeeper session 0x([0-9a-f]+): session timeout")


def test_refusals_are_confirmed_once_they_span_the_interval():
    streak = RefusalStreak(0.25)
    assert not streak.refused(10.0)
    assert not streak.refused(10.2)
    assert streak.refused(10.25)
    streak.reset()  # a connection made, or a timeout: start again
    assert not streak.refused(10.3)
    assert streak.refused(10.6)


@pytest.fixture(scope="module")
def cluster():
    props = {
        "auto.create.topics.enable": "false",
        "offsets.topic.num.partitions": "1",
        "zookeeper.session.timeout.ms": str(SESSION_MS),
    }
    with LocalCluster(3, overrides=props) as c:
        yield c


def registered(cluster: LocalCluster) -> set[int]:
    return {b.node_id for b in cluster.metadata().brokers}


def session_of(broker) -> str:
    return SESSION_LINE.findall(broker.log_text())[-1]


def holds_ephemerals(cluster: LocalCluster, session: str) -> bool:
    dump = four_letter_word(cluster.zookeeper.port, "dump", timeout=2)
    assert "Sessions with Ephemerals" in dump, dump
    return re.search(rf"0x0*{session.lstrip('0')}\b", dump) is not None


@pytest.mark.parametrize("role", ["leader", "controller"])
def test_a_killed_broker_is_failed_over_before_its_session_expires(cluster, role):
    topic = unique(role)
    create(cluster.brokers[0].bootstrap, topic, 3)  # one partition led by each broker
    for p in range(3):
        wait_isr(cluster, topic, p, {1, 2, 3})
    controller_id = cluster.controller_id()
    before = states(cluster, topic)
    # The leader case kills a broker that is not the controller.
    p = next(p for p, s in sorted(before.items()) if (s[0] == controller_id) == (role == "controller"))
    leader_id, epoch, _ = before[p]
    victim = cluster.broker(leader_id)
    old_session = session_of(victim)
    assert holds_ephemerals(cluster, old_session)

    killed_at = time.monotonic()
    victim.kill()
    wait_for(lambda: victim.node_id not in registered(cluster), BEFORE_EXPIRY_S, "the dead broker to be unregistered")
    if role == "controller":
        wait_for(lambda: cluster.controller_id() not in (-1, victim.node_id), BEFORE_EXPIRY_S, "a new controller")
    wait_for(lambda: states(cluster, topic)[p][0] != leader_id, BEFORE_EXPIRY_S, "a new leader")
    _, new_epoch, isr = states(cluster, topic)[p]
    assert new_epoch > epoch and victim.node_id not in isr
    print(f"{role} {victim.node_id} killed: failed over after {time.monotonic() - killed_at:.2f} s")
    # All of it while the dead broker's session still held its ephemerals.
    assert holds_ephemerals(cluster, old_session)
    logs = "".join(b.log_text() for b in cluster.live_brokers())
    assert "refuses connections" in logs

    # Back before the old session expires; still registered after it has.
    victim.start()
    assert holds_ephemerals(cluster, old_session)
    wait_for(lambda: not holds_ephemerals(cluster, old_session), SESSION_MS / 1000 + 30, "the old session to expire")
    assert victim.node_id in registered(cluster)
    for p in range(3):
        wait_isr(cluster, topic, p, {1, 2, 3}, timeout=60)


def test_a_broker_killed_again_after_rejoining_leaves_the_isrs_at_once(cluster):
    """Its return to the ISRs is written by the leaders, not the
    controller: the second failure must still take it out of them, long
    before the leaders would drop it for lagging (replica.lag.time.max.ms,
    30 s here)."""
    topic = unique("twice")
    create(cluster.brokers[0].bootstrap, topic, 3)
    controller_id = cluster.controller_id()
    victim = next(b for b in cluster.brokers if b.node_id != controller_id)

    def out_of_every_isr():
        return all(victim.node_id not in s[2] for s in states(cluster, topic).values())

    for round_ in (1, 2):
        for p in range(3):
            wait_isr(cluster, topic, p, {1, 2, 3}, timeout=60)
        victim.kill()
        wait_for(out_of_every_isr, BEFORE_EXPIRY_S, f"broker {victim.node_id} out of every ISR (round {round_})")
        victim.start()
