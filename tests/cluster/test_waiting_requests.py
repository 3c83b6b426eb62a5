"""A connection is not read while the requests it waits to answer hold a
few MiB: acks=all produce requests that cannot complete (their follower is
paused) leave the rest of the client's requests in the socket instead of
in the broker's memory. Kafka reads nothing from a connection while one of
its requests is in progress; pybroker pipelines, within this bound.

Without the bound, every one of 40 requests of 1 MB was read and held (up
to queued.max.requests, 500), and each held buffer was one the broker
could not recycle."""

from __future__ import annotations

import os
import socket
import threading

import pytest

from pybroker.local_cluster import LocalCluster, wait_for
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.framing import FrameDecoder, decode_response, encode_request
from pybroker.protocol.messages.produce_request import PartitionProduceData, ProduceRequest, TopicProduceData
from pybroker.protocol.records import NewRecord, build_batch
from pybroker.server import MAX_WAITING_BYTES

from .test_replication_clients import latest, states, unique, wait_isr

MB = 1_000_000
REQUESTS = 40


@pytest.fixture(scope="module")
def cluster():
    props = {
        "auto.create.topics.enable": "false",
        "offsets.topic.num.partitions": "1",
        # The paused follower stays in the ISR (and its broker in the
        # cluster) for the whole test: the writes wait for it.
        "replica.lag.time.max.ms": "120000",
        "zookeeper.session.timeout.ms": "60000",
    }
    with LocalCluster(2, overrides=props) as c:
        yield c


def _produce(topic: str, correlation: int) -> bytes:
    batch = build_batch([NewRecord(value=bytes(MB))])
    body = ProduceRequest(
        acks=-1,
        timeout_ms=120_000,
        topic_data=[TopicProduceData(name=topic, partition_data=[PartitionProduceData(index=0, records=batch)])],
    )
    return encode_request(body, 9, correlation, "waiting-test")


def _unread_by_broker(broker_port: int, client_port: int) -> int:
    """Bytes the broker has not read yet from this connection (its receive queue)."""
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == broker_port and int(fields[2].split(":")[1], 16) == client_port:
                return int(fields[4].split(":")[1], 16)
    return 0


def _log_bytes(data_dir, topic: str) -> int:
    part = os.path.join(data_dir, f"{topic}-0")
    return sum(os.path.getsize(os.path.join(part, n)) for n in os.listdir(part) if n.endswith(".log"))


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="needs /proc/net/tcp")
def test_waiting_acks_all_requests_stop_the_reading(cluster):
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = unique("waiting")
    admin = AdminClient({"bootstrap.servers": cluster.brokers[0].bootstrap})
    new = NewTopic(topic, num_partitions=1, replication_factor=2, config={"max.message.bytes": str(2 * MB)})
    assert admin.create_topics([new])[topic].result(30) is None
    wait_isr(cluster, topic, 0, {1, 2})
    leader_id = states(cluster, topic)[0][0]
    leader = cluster.broker(leader_id)
    follower = next(b for b in cluster.brokers if b.node_id != leader_id)
    frames = [_produce(topic, i) for i in range(REQUESTS)]
    sent = threading.Event()
    with socket.create_connection(("127.0.0.1", leader.port), timeout=120) as sock:
        client_port = sock.getsockname()[1]

        def send_all():
            for frame in frames:
                sock.sendall(frame)
            sent.set()

        follower.pause()
        try:
            sender = threading.Thread(target=send_all, daemon=True)
            sender.start()

            # Either the broker stops reading once it holds the bound's worth
            # of requests (the rest piles up on its side of the connection)
            # or it reads everything (the sender finishes).
            def settled():
                if sent.is_set():
                    return True
                return (
                    _log_bytes(leader.data_dir, topic) >= MAX_WAITING_BYTES
                    and _unread_by_broker(leader.port, client_port) >= MB
                )

            wait_for(settled, 60, "the broker to stop reading or the client to send everything")
            assert not sent.is_set(), "the broker read every request while none could be answered"
            # What it took is bounded: the requests waiting (at least the
            # bound's worth) plus the one that crossed it.
            assert _log_bytes(leader.data_dir, topic) <= MAX_WAITING_BYTES + 2 * MB
        finally:
            follower.resume()
        # The follower back, every write completes and the rest is read.
        decoder = FrameDecoder(max_frame_size=1 << 20)
        codes = []
        while len(codes) < REQUESTS:
            while (frame := decoder.next_frame()) is None:
                data = sock.recv(65536)
                assert data, "the broker closed the connection"
                decoder.feed(data)
            answer = decode_response(ProduceRequest.API_KEY, 9, frame)[1]
            codes.append(answer.responses[0].partition_responses[0].error_code)
        sender.join(60)
    assert codes == [ErrorCode.NONE] * REQUESTS
    assert latest(leader.bootstrap, topic, 0) == (ErrorCode.NONE, REQUESTS)
