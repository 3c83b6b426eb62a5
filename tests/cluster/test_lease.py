"""The leader lease: a leader serves only while ZooKeeper answers it.

The pure part (renewal from the send time, revocation) is checked on its
own; then a leader paused past its ZooKeeper session (SIGSTOP, a zombie)
is sent an acks=1 write while it sleeps. By the time it wakes another
broker leads; without the lease it would append the write and answer
it, and the write would then be lost to the new leader's log. With the
lease it answers NOT_LEADER_OR_FOLLOWER, reports the partition
leaderless, and the write is nowhere."""

from __future__ import annotations

import socket

import pytest

from pybroker.local_cluster import LocalCluster, wait_for
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.framing import FrameDecoder, decode_response, encode_request
from pybroker.protocol.messages.produce_request import PartitionProduceData, ProduceRequest, TopicProduceData
from pybroker.protocol.records import NewRecord, build_batch
from pybroker.replica.lease import Lease

from .test_replication_clients import _read_all, create, latest, states, unique, wait_isr

SESSION_MS = 4000


def test_a_lease_runs_two_thirds_of_the_session_from_the_send_time():
    lease = Lease()
    assert not lease.valid(0.0)
    lease.renew(10.0, 6.0)
    assert lease.valid(13.9) and not lease.valid(14.0)
    lease.renew(9.0, 6.0)  # an answer to an older request does not shorten it
    assert lease.until == 14.0 and lease.renewed_at == 10.0
    lease.renew(11.0, 6.0)
    assert lease.valid(14.9) and not lease.valid(15.0)
    lease.revoke()
    assert not lease.valid(11.5)
    with pytest.raises(ValueError):
        Lease(1.0)


@pytest.fixture(scope="module")
def cluster():
    props = {
        "auto.create.topics.enable": "false",
        "offsets.topic.num.partitions": "1",
        "replica.lag.time.max.ms": "2000",
        "zookeeper.session.timeout.ms": str(SESSION_MS),
    }
    with LocalCluster(3, overrides=props) as c:
        yield c


def _produce(topic: str, value: bytes, acks: int) -> bytes:
    batch = build_batch([NewRecord(value=value)])
    body = ProduceRequest(
        acks=acks,
        timeout_ms=10_000,
        topic_data=[TopicProduceData(name=topic, partition_data=[PartitionProduceData(index=0, records=batch)])],
    )
    return encode_request(body, 9, 7, "zombie-test")


def _answer(sock: socket.socket):
    frames = FrameDecoder(max_frame_size=1 << 20)
    while (frame := frames.next_frame()) is None:
        data = sock.recv(65536)
        if not data:
            return None  # closed without answering: nothing was acknowledged either
        frames.feed(data)
    return decode_response(ProduceRequest.API_KEY, 9, frame)[1]


def test_a_paused_leader_refuses_what_it_was_sent_while_paused(cluster):
    topic = unique("zombie")
    create(cluster.brokers[0].bootstrap, topic, 1)
    leader_id, epoch, _ = states(cluster, topic)[0]
    zombie = cluster.broker(leader_id)
    with socket.create_connection(("127.0.0.1", zombie.port), timeout=60) as sock:
        # acks=all: on every replica before the pause (an acks=1 write the
        # followers had not fetched yet would be lost with the pause, as
        # acks=1 allows).
        # Retried as a client would while the new partition's leader does
        # not know it yet (UNKNOWN_TOPIC_OR_PARTITION) or is not serving it
        # yet (NOT_LEADER_OR_FOLLOWER).
        def written():
            sock.sendall(_produce(topic, b"before", -1))
            code = _answer(sock).responses[0].partition_responses[0].error_code
            retriable = (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, ErrorCode.NOT_LEADER_OR_FOLLOWER)
            assert code == ErrorCode.NONE or code in retriable, code
            return code == ErrorCode.NONE

        wait_for(written, 30, "the leader to take the first write")
        zombie.pause()
        try:
            sock.sendall(_produce(topic, b"while paused", 1))  # waits in the zombie's socket buffer

            def moved():
                now = states(cluster, topic)[0]
                return now if now[0] not in (leader_id, -1) else None

            new_leader, new_epoch, _ = wait_for(moved, 60, "a new leader")
            assert new_epoch > epoch
        finally:
            zombie.resume()
        answer = _answer(sock)
    if answer is not None:
        (partition,) = answer.responses[0].partition_responses
        assert partition.error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER, partition
    values = _read_all(cluster.broker(new_leader).bootstrap, topic, 0, 1)
    assert values == ["before"]
    # Awake, the old leader learns it was replaced, follows and catches up.
    wait_isr(cluster, topic, 0, {1, 2, 3}, timeout=60)
    assert latest(cluster.broker(new_leader).bootstrap, topic, 0) == (ErrorCode.NONE, 1)
    assert "leader lease lapsed" in zombie.log_text()
