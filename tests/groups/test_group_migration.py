"""Consumer groups converted online between the classic and the KIP-848
protocol, and KIP-848 groups through broker restarts, with real clients.

The members are confluent-kafka consumers in child processes
(``consumer_worker.py``), some with the classic protocol (JoinGroup,
SyncGroup, Heartbeat; eager "range" assignment) and some with
``group.protocol=consumer`` (ConsumerGroupHeartbeat), committing after
every batch while a producer keeps writing. ``check_deliveries`` (from
test_group_clients) holds the whole run to the at-least-once contract:
one owner per partition at a time, nothing skipped, nothing delivered
again below a commit, every produced message delivered, final commits at
the log end.
"""

from __future__ import annotations

import pytest

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.consumer_group_describe_request import ConsumerGroupDescribeRequest
from pybroker.process import request
from pybroker.testing import running_broker

from ..broker.workload import unique_topic, wait_for
from .test_group_clients import (  # noqa: F401 (groups: a fixture)
    BROKER_PROPS,
    Feeder,
    changes_since,
    check_deliveries,
    groups,
    make_topic,
)

ck = pytest.importorskip("confluent_kafka")

PROPS = {**BROKER_PROPS, "group.consumer.heartbeat.interval.ms": "500"}


def group_type(bootstrap: str, group_id: str):
    """The group's type as ListGroups v5 reports it (None if not listed)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    listed = admin.list_consumer_groups().result(30).valid
    return next((g.type for g in listed if g.group_id == group_id), None)


def delivered_since(worker, mark: int) -> int:
    return sum(len(e["d"]) for e in worker.events()[mark:] if e["ev"] == "msgs")


@pytest.mark.parametrize("strategy", ["range,roundrobin", "cooperative-sticky"])
def test_classic_group_upgraded_and_downgraded_while_consuming(groups, strategy):  # noqa: F811 (the fixture)
    """Two classic members consume; a group.protocol=consumer member joins:
    the group becomes a consumer group holding all three, the partitions are
    spread over them and all three consume. It leaves: the group is a
    classic group again and the two classic members take everything back
    and consume on. No message is lost or delivered twice past a commit.
    Classic members with an eager assignor give up everything at each
    rebalance; cooperative ones only what moves."""
    with running_broker(PROPS) as rb:
        bootstrap = rb.bootstrap_servers
        topic = make_topic(bootstrap, "migrate")
        group_id = unique_topic("g-migrate")
        group = groups("confluent-kafka", bootstrap, topic, group_id, strategy=strategy)
        feeder = Feeder(bootstrap, topic)
        feeder.send(60)
        feeder.start()
        a, b = group.start("a"), group.start("b")
        group.wait_split([a, b], [3, 3])
        assert group_type(bootstrap, group_id) == ck.ConsumerGroupType.CLASSIC

        c = group.start("c", group_protocol="consumer")
        group.wait_split([a, b, c], [2, 2, 2], timeout=60)
        assert group_type(bootstrap, group_id) == ck.ConsumerGroupType.CONSUMER
        marks = {w.name: len(w.events()) for w in (a, b, c)}
        group.wait(lambda: all(delivered_since(w, marks[w.name]) for w in (a, b, c)), 30, "all three to consume")

        c.stop()
        group.wait_split([a, b], [3, 3], timeout=60)
        wait_for(
            lambda: group_type(bootstrap, group_id) == ck.ConsumerGroupType.CLASSIC, 30, "the group to be classic again"
        )
        marks = {w.name: len(w.events()) for w in (a, b)}
        group.wait(lambda: all(delivered_since(w, marks[w.name]) for w in (a, b)), 30, "both to consume")

        produced = feeder.stop()
        group.wait_drained(produced, timeout=60)
        group.close_all()
        check_deliveries(group.log, produced)


def members_and_epochs(bootstrap: str, group_id: str) -> dict[str, int]:
    """member id -> member epoch, as ConsumerGroupDescribe tells."""
    (described,) = request(bootstrap, ConsumerGroupDescribeRequest(group_ids=[group_id]), 0).groups
    assert described.error_code == ErrorCode.NONE, described
    return {m.member_id: m.member_epoch for m in described.members}


def test_consumer_group_survives_broker_restarts(broker_process, groups):  # noqa: F811 (the fixture)
    """Two group.protocol=consumer members keep running while the broker is
    killed (-9) and then stopped gracefully: the group is read back from
    __consumer_offsets, so both keep their member ids, epochs and
    partitions (neither sees a rebalance), and consumption carries on with
    nothing lost or delivered twice."""
    proc = broker_process(PROPS)
    topic = make_topic(proc.bootstrap, "live848")
    group_id = unique_topic("g-live848")
    group = groups("confluent-kafka", proc.bootstrap, topic, group_id, group_protocol="consumer")
    feeder = Feeder(proc.bootstrap, topic)
    feeder.send(60)
    a, b = group.start("a"), group.start("b")
    group.wait_split([a, b], [3, 3], timeout=60)
    group.wait_drained(feeder.produced)
    before = members_and_epochs(proc.bootstrap, group_id)
    assert len(before) == 2
    marks = {w.name: len(w.events()) for w in (a, b)}
    for kill in (True, False):
        proc.restart(kill=kill)
        assert members_and_epochs(proc.bootstrap, group_id) == before
        feeder = Feeder(proc.bootstrap, topic, after=feeder)
        feeder.send(60)
        group.wait_drained(feeder.produced, timeout=60)
    assert members_and_epochs(proc.bootstrap, group_id) == before
    for w in (a, b):
        assert changes_since(w, marks[w.name]) == (set(), set()), f"{w.name} was rebalanced:\n{group.diagnose()}"
    group.close_all()
    stats = check_deliveries(group.log, feeder.produced)
    assert stats["repeats"] == 0
