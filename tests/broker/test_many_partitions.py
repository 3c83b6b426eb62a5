"""Thousands of partitions: each holds one descriptor (its active segment's
log file), not three, and all of them come back after a restart."""

from __future__ import annotations

import os

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from tests.broker.wire import Wire
from pybroker.protocol.messages.list_offsets_request import ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic
from pybroker.protocol.registry import ApiKey

PARTITIONS = 2000


def _open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _create(bootstrap: str, name: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)], operation_timeout=60)[name].result(120)


def _latest(bootstrap: str, name: str, partitions: int) -> dict[int, int]:
    w = Wire(bootstrap, timeout=60)
    try:
        req = ListOffsetsRequest(
            replica_id=-1,
            topics=[ListOffsetsTopic(name=name, partitions=[ListOffsetsPartition(partition_index=p, timestamp=-1) for p in range(partitions)])],
        )
        w.send(req, 7, 1)
        _, resp = w.receive(ApiKey.LIST_OFFSETS, 7)
        return {p.partition_index: p.offset for t in resp.topics for p in t.partitions if not p.error_code}
    finally:
        w.close()


def test_descriptors_per_partition_and_restart(broker_process):
    broker = broker_process({"log.index.interval.bytes": "100"})
    before = _open_files(broker.proc.pid)
    _create(broker.bootstrap, "wide", PARTITIONS)
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 20})
    # Two batches per partition, so that every index gets an entry written.
    for round_ in range(2):
        for part in range(PARTITIONS):
            p.produce("wide", b"v" * 200, partition=part)
        assert p.flush(60) == 0
    opened = _open_files(broker.proc.pid) - before
    # One per partition (the active segment's .log), plus a few for
    # connections and checkpoints; holding indexes open would be 3 each.
    assert PARTITIONS <= opened < PARTITIONS + 100, opened
    broker.stop()
    broker.start(timeout=120)
    assert _latest(broker.bootstrap, "wide", PARTITIONS) == {part: 2 for part in range(PARTITIONS)}


def test_create_topics_reports_a_storage_failure_and_leaves_nothing(broker_process):
    broker = broker_process()
    # A plain file where partition 3's directory must go: its log cannot be made.
    (broker.data_dir / "blocked-3").write_bytes(b"")
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    future = admin.create_topics([NewTopic("blocked", 5, 1)], operation_timeout=30)["blocked"]
    try:
        future.result(60)
        raise AssertionError("creating over a broken log directory succeeded")
    except Exception as exc:  # confluent_kafka.KafkaException
        assert exc.args[0].code() == 56, exc  # KAFKA_STORAGE_ERROR
    assert "blocked" not in admin.list_topics(timeout=30).topics
    assert not [p for p in broker.data_dir.iterdir() if p.is_dir() and p.name.startswith("blocked-")]
    # The same connection and broker carry on; with the obstacle gone the topic can be made.
    (broker.data_dir / "blocked-3").unlink()
    admin.create_topics([NewTopic("blocked", 5, 1)], operation_timeout=30)["blocked"].result(60)
    assert len(admin.list_topics(timeout=30).topics["blocked"].partitions) == 5
