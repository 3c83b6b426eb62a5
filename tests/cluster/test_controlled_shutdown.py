"""Controlled shutdown: a broker stopped with SIGTERM first asks the
controller to move its leaderships away and take it out of the ISRs
(ControlledShutdown, api key 7), so that clients see only retriable
errors and the partitions have new leaders before it stops serving.

Three broker processes and ZooKeeper; an idempotent acks=all producer
writes while the leader (then the controller, itself a leader) is
stopped. Times from the signal are printed (``pytest -s``)."""

from __future__ import annotations

import time

import pytest

from pybroker.local_cluster import LocalCluster, wait_for
from pybroker.process import request
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.controlled_shutdown_request import ControlledShutdownRequest

from .test_replication_clients import IdempotentWriter, _read_all, create, move_leader, states, unique, wait_isr

CONNECTION = {"_TRANSPORT", "_ALL_BROKERS_DOWN"}


@pytest.fixture(scope="module")
def cluster():
    props = {
        "auto.create.topics.enable": "false",
        "offsets.topic.num.partitions": "1",
        "zookeeper.session.timeout.ms": "6000",
    }
    with LocalCluster(3, overrides=props) as c:
        yield c


def stop_with_sigterm(broker) -> float:
    """SIGTERM, and the seconds until the process exited."""
    started = time.monotonic()
    broker.process.proc.terminate()
    wait_for(lambda: not broker.alive(), 30, f"broker {broker.node_id} to exit")
    return time.monotonic() - started


@pytest.mark.parametrize("who", ["leader", "controller"])
def test_sigterm_moves_leadership_first_and_clients_see_no_error(cluster, who):
    topic = unique(f"term-{who}")
    create(cluster.brokers[0].bootstrap, topic, 1)
    wait_isr(cluster, topic, 0, {1, 2, 3})
    leader_id, epoch, _ = states(cluster, topic)[0]
    if who == "controller":
        # The controller leading the partition: it moves its own leaderships.
        controller_id = cluster.controller_id()
        if leader_id != controller_id:
            epoch = move_leader(cluster, topic, 0, controller_id)
            wait_for(lambda: states(cluster, topic)[0][0] == controller_id, 30, "the controller to lead")
            wait_isr(cluster, topic, 0, {1, 2, 3})
            leader_id = controller_id
    victim = cluster.broker(leader_id)
    total = 20_000
    client_errors = []
    writer = IdempotentWriter(
        cluster.bootstrap_servers, topic, **{"message.timeout.ms": 60_000, "error_cb": client_errors.append}
    )
    writer.send(range(total // 2))
    writer.until_delivered(total // 8)
    exited_after = stop_with_sigterm(victim)
    writer.send(range(total // 2, total))
    assert writer.producer.flush(60) == 0
    new_leader, new_epoch, isr = states(cluster, topic)[0]
    print(f"{who} {leader_id} stopped with SIGTERM: exited after {exited_after:.2f} s, broker {new_leader} leads")
    assert not writer.errors, writer.errors[:3]
    # librdkafka reports the stopped broker's refused connections through
    # error_cb (_TRANSPORT): a notice about a connection, not a request's
    # failure. Anything else must be retriable.
    assert not [e for e in client_errors if e.fatal() or not (e.retriable() or e.name() in CONNECTION)], client_errors
    assert new_leader != leader_id and new_epoch > epoch and leader_id not in isr
    text = victim.log_text()
    assert "Controlled shutdown request returned successfully" in text
    assert text.index("Controlled shutdown request returned successfully") < text.rindex("stopped; logs flushed")
    controller_logs = "".join(b.log_text() for b in cluster.brokers)
    assert f"Shutting down broker {leader_id}" in controller_logs
    values = _read_all(cluster.broker(new_leader).bootstrap, topic, 0, total)
    assert values == [f"m{i}" for i in range(total)], "a message was lost, duplicated or reordered"

    victim.start()
    wait_isr(cluster, topic, 0, {1, 2, 3}, timeout=60)


def test_controlled_shutdown_requests_kafka_refuses(cluster):
    controller_id = cluster.controller_id()
    controller = cluster.broker(controller_id)
    other = next(b for b in cluster.brokers if b.node_id != controller_id)

    def ask(broker, broker_id: int, broker_epoch: int, version: int = 3) -> int:
        body = ControlledShutdownRequest(broker_id=broker_id, broker_epoch=broker_epoch)
        return request(broker.bootstrap, body, version).error_code

    assert ask(other, other.node_id, -1) == ErrorCode.NOT_CONTROLLER
    assert ask(controller, 99, -1) == ErrorCode.BROKER_NOT_AVAILABLE
    assert ask(controller, other.node_id, 1) == ErrorCode.STALE_BROKER_EPOCH
    # v0 and v1 carry no broker epoch (v0 not even a client id in its header).
    assert ask(controller, 99, -1, version=0) == ErrorCode.BROKER_NOT_AVAILABLE
    assert ask(controller, 99, -1, version=1) == ErrorCode.BROKER_NOT_AVAILABLE
