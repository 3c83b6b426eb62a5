"""The ISR on real brokers and a real ZooKeeper, whatever the followers
do: a follower that stops fetching (its broker stopped) leaves the ISR
once it has lagged behind the leader's writes for
replica.lag.time.max.ms, by the leader's own versioned write of the
state znode (same leader epoch); acks=all is then refused below
min.insync.replicas while acks=1 is accepted; a follower that has caught
up joins again."""

import contextlib
import logging
import time

import pytest
import trio

from pybroker.cluster import znodes
from pybroker.protocol.error_codes import ErrorCode

from ..broker.raw_requests import produce_request
from .broker_support import cluster_broker, metadata, partitions_view, request, wait_for
from .test_broker_two import create

LAG_MS = 1000


def produce_code(bootstrap: str, topic: str, acks: int) -> ErrorCode:
    produced = request(bootstrap, produce_request(topic, 0, [b"x"], acks=acks), 9)
    return produced.responses[0].partition_responses[0].error_code


def state(zk_admin, topic: str):
    data, stat = zk_admin.get(znodes.partition_state_path(topic, 0))
    return znodes.decode_partition_state(data, stat.version)


def isr_of(bootstrap: str, topic: str) -> list[int]:
    view = partitions_view(metadata(bootstrap, [topic]), topic)
    return view[0][4] if view else []


@pytest.fixture
def two(zk_connect, tmp_path):
    props = {"replica.lag.time.max.ms": str(LAG_MS), "offsets.topic.replication.factor": "1"}
    with contextlib.ExitStack() as stack:
        b1 = stack.enter_context(cluster_broker(zk_connect, 1, tmp_path, props))
        b2 = stack.enter_context(cluster_broker(zk_connect, 2, tmp_path, props))
        wait_for(lambda: len(metadata(b1.bootstrap_servers, []).brokers) == 2, what="both brokers registered")
        yield stack, b1, b2, props


def test_a_stopped_follower_leaves_the_isr_and_comes_back(two, zk_admin, zk_connect, tmp_path, caplog):
    stack, b1, b2, props = two
    bootstrap = b1.bootstrap_servers
    made = create(bootstrap, "guarded", assignments=[[1, 2]], configs={"min.insync.replicas": "2"})
    assert made.error_code == ErrorCode.NONE
    wait_for(lambda: isr_of(bootstrap, "guarded") == [1, 2], what="the ISR of both")
    before = state(zk_admin, "guarded")

    with caplog.at_level(logging.INFO, logger="pybroker.replica"):
        b2.stop()
        # Its session closed: the controller takes it out of the ISR at the
        # next leader epoch (Kafka's onBrokerFailure).
        assert produce_code(bootstrap, "guarded", 1) == ErrorCode.NONE
        wait_for(lambda: isr_of(bootstrap, "guarded") == [1], timeout=20, what="the ISR to shrink")
    after = state(zk_admin, "guarded")
    assert (after.leader, after.leader_epoch, after.controller_epoch) == (
        1,
        before.leader_epoch + 1,
        before.controller_epoch,
    )
    assert (after.isr, after.version) == ([1], before.version + 1)
    wait_for(lambda: "guarded-0: ISR 1,2 -> 1 (leader epoch 1)" in caplog.text, what="the leader's ISR log line")

    assert produce_code(bootstrap, "guarded", -1) == ErrorCode.NOT_ENOUGH_REPLICAS
    assert produce_code(bootstrap, "guarded", 1) == ErrorCode.NONE

    # Broker 2 again; its replica is driven to the leader's log end here if
    # nothing fetches it there, as a follower's fetches would.
    stack.enter_context(cluster_broker(zk_connect, 2, tmp_path, props))
    part = b1.broker.replicas.partition("guarded", 0)
    wait_for(lambda: b1.broker.metadata.broker(2) is not None, what="broker 2 registered again")

    def fetched():
        part.follower_fetched(2, part.log_end_offset, int(time.time() * 1000))

    def back():
        if part.pending_isr_change is None and 2 not in part.isr:
            trio.from_thread.run_sync(fetched, trio_token=b1.token)
        return isr_of(bootstrap, "guarded") == [1, 2]

    wait_for(back, what="the ISR to grow back")
