"""What the broker-side cluster tests share: brokers in cluster mode run
in-process (``running_broker`` with ``zookeeper.connect``), requests sent
raw (``Wire``), and polling a condition with a deadline."""

from __future__ import annotations

import contextlib
import itertools
import time
from pathlib import Path

from pybroker.protocol.messages.metadata_request import MetadataRequest, MetadataRequestTopic
from pybroker.protocol.registry import ApiKey
from pybroker.testing import running_broker

from ..broker.wire import Wire

_correlation = itertools.count(1)


def cluster_props(zk_connect: str, node_id: int, **props) -> dict[str, str]:
    base = {
        "zookeeper.connect": zk_connect,
        "broker.id": str(node_id),
        "zookeeper.session.timeout.ms": "6000",
        "offsets.topic.num.partitions": "3",
        "group.initial.rebalance.delay.ms": "0",
    }
    base.update({k.replace("_", "."): str(v) for k, v in props.items()})
    return base


@contextlib.contextmanager
def cluster_broker(zk_connect: str, node_id: int, data: Path, props: dict | None = None):
    """A broker of the cluster at ``zk_connect``, its data under ``data``."""
    settings = cluster_props(zk_connect, node_id)
    settings.update(props or {})
    with running_broker(settings, data_dir=data / f"broker{node_id}") as broker:
        yield broker


def request(bootstrap: str, body, version: int, timeout: float = 15):
    """Send one request, return its response."""
    w = Wire(bootstrap, timeout)
    try:
        w.send(body, version, next(_correlation))
        return w.receive(body.API_KEY, version)[1]
    finally:
        w.close()


def metadata(bootstrap: str, topics: list[str] | None = None, version: int = 12, auto_create: bool = False):
    body = MetadataRequest(
        topics=None if topics is None else [MetadataRequestTopic(name=t) for t in topics],
        allow_auto_topic_creation=auto_create,
    )
    return request(bootstrap, body, version)


def partitions_view(response, topic: str) -> list[tuple]:
    """(index, leader, epoch, replicas, isr, offline, error) per partition of ``topic``."""
    for t in response.topics:
        if t.name == topic:
            return sorted(
                (
                    p.partition_index,
                    p.leader_id,
                    p.leader_epoch,
                    list(p.replica_nodes),
                    list(p.isr_nodes),
                    list(p.offline_replicas),
                    p.error_code,
                )
                for p in t.partitions
            )
    return []


def wait_for(condition, timeout: float = 20, what: str = "the condition", every: float = 0.05):
    """Poll ``condition()`` until it returns something true; that value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


__all__ = ["ApiKey", "cluster_broker", "metadata", "partitions_view", "request", "wait_for"]
