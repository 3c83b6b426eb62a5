"""One group consumer in a child process, for tests that stop or kill it.

    python tests/groups/consumer_worker.py '{"client": "confluent-kafka",
        "bootstrap": "127.0.0.1:9092", "topic": "t", "group": "g", ...}'

It subscribes to one topic with manual commits, and for every batch it
gets: reports the messages, processes them (nothing to do), commits the
next offset of each partition synchronously, and reports the commit once
the broker acknowledged it. Assignments and revocations are reported from
the client's rebalance callbacks. Every report is one JSON line on stdout,
flushed at once, so a SIGKILL loses nothing already reported:

    {"ev": "ready"}
    {"ev": "assign", "p": [0, 3], "t": ...}      (incremental for cooperative)
    {"ev": "revoke", "p": [0, 3], "t": ...}      ("lost" too: same meaning)
    {"ev": "msgs", "d": [[partition, offset, value], ...], "t": ...}
    {"ev": "committing", "c": {"0": next_offset, ...}, "t": ...}   (sent next)
    {"ev": "commit", "c": {"0": next_offset, ...}, "t": ...}       (acknowledged)
    {"ev": "commit_failed", "err": "...", "t": ...}
    {"ev": "error", "err": "...", "t": ...}      (the client reported an error; it carries on)
    {"ev": "closed", "t": ...}

"t" is time.monotonic(), one clock for every process on the machine.
A line "stop" on stdin (or stdin closing) closes the consumer gracefully:
a dynamic member leaves the group; a static one (group.instance.id) does not.

Options besides the four above: session_ms, heartbeat_ms, max_poll_ms,
strategy (confluent-kafka's partition.assignment.strategy), instance_id, debug
(the client's own logging, to stderr), group_protocol (confluent-kafka's
group.protocol: "consumer" for KIP-848, where the session, heartbeat and
assignor are the broker's to choose).
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time

stopping = threading.Event()


def emit(**event) -> None:
    event["t"] = time.monotonic()
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def watch_stdin() -> None:
    for line in sys.stdin:
        if line.strip() == "stop":
            break
    stopping.set()


def report_batch(rows: list[list]) -> dict[str, int]:
    """Report delivered [partition, offset, value] rows and the offsets about
    to be committed; returns those offsets."""
    emit(ev="msgs", d=rows)
    nxt: dict[int, int] = {}
    for p, o, _ in rows:
        nxt[p] = max(nxt.get(p, 0), o + 1)
    emit(ev="committing", c=nxt)
    return nxt


def run_confluent(cfg: dict) -> None:
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    conf = {
        "bootstrap.servers": cfg["bootstrap"],
        "group.id": cfg["group"],
        "client.id": cfg.get("name", "worker"),
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "max.poll.interval.ms": cfg.get("max_poll_ms", 20000),
        "topic.metadata.refresh.interval.ms": 2000,
    }
    if isinstance(cfg.get("debug"), str):
        conf["debug"] = cfg["debug"]  # librdkafka's debug contexts, e.g. "cgrp"
    if cfg.get("group_protocol") == "consumer":
        conf["group.protocol"] = "consumer"
    else:
        conf["session.timeout.ms"] = cfg.get("session_ms", 6000)
        conf["heartbeat.interval.ms"] = cfg.get("heartbeat_ms", 500)
        conf["partition.assignment.strategy"] = cfg.get("strategy", "range,roundrobin")
    if cfg.get("instance_id"):
        conf["group.instance.id"] = cfg["instance_id"]
    consumer = Consumer(conf)

    def on_assign(_, parts):
        emit(ev="assign", p=sorted(tp.partition for tp in parts))

    def on_revoke(_, parts):
        emit(ev="revoke", p=sorted(tp.partition for tp in parts))

    def on_lost(_, parts):
        emit(ev="lost", p=sorted(tp.partition for tp in parts))

    consumer.subscribe([cfg["topic"]], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
    emit(ev="ready")
    try:
        while not stopping.is_set():
            rows = []
            for msg in consumer.consume(num_messages=500, timeout=0.2):
                if msg.error() is not None:
                    emit(ev="error", err=str(msg.error()))
                    continue
                rows.append([msg.partition(), msg.offset(), msg.value().decode()])
            if not rows:
                continue
            nxt = report_batch(rows)
            try:
                consumer.commit(
                    offsets=[TopicPartition(cfg["topic"], p, o) for p, o in nxt.items()], asynchronous=False
                )
            except KafkaException as exc:
                emit(ev="commit_failed", err=str(exc))
            else:
                emit(ev="commit", c=nxt)
    finally:
        consumer.close()
    emit(ev="closed")


def run_kafka_python(cfg: dict) -> None:
    from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError
    from kafka.structs import OffsetAndMetadata

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            emit(ev="revoke", p=sorted(tp.partition for tp in revoked))

        def on_partitions_assigned(self, assigned):
            emit(ev="assign", p=sorted(tp.partition for tp in assigned))

    consumer = KafkaConsumer(
        bootstrap_servers=cfg["bootstrap"],
        group_id=cfg["group"],
        client_id=cfg.get("name", "worker"),
        group_instance_id=cfg.get("instance_id"),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=cfg.get("session_ms", 6000),
        heartbeat_interval_ms=cfg.get("heartbeat_ms", 500),
        max_poll_interval_ms=cfg.get("max_poll_ms", 20000),
        metadata_max_age_ms=2000,
    )
    consumer.subscribe(topics=[cfg["topic"]], listener=Listener())
    emit(ev="ready")
    try:
        while not stopping.is_set():
            rows = []
            try:
                batch = consumer.poll(timeout_ms=200)
            except KafkaError as exc:  # e.g. the broker is restarting: a real application carries on
                emit(ev="error", err=repr(exc))
                continue
            for tp, records in batch.items():
                rows += [[tp.partition, r.offset, r.value.decode()] for r in records]
            if not rows:
                continue
            nxt = report_batch(rows)
            try:
                consumer.commit(
                    offsets={TopicPartition(cfg["topic"], p): OffsetAndMetadata(o, "", -1) for p, o in nxt.items()}
                )
            except KafkaError as exc:
                emit(ev="commit_failed", err=repr(exc))
            else:
                emit(ev="commit", c=nxt)
    finally:
        consumer.close()
    emit(ev="closed")


async def run_aiokafka(cfg: dict) -> None:
    from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
    from aiokafka.errors import KafkaError

    # Processing and committing a batch, and giving partitions up, exclude
    # each other: aiokafka rebalances in a background task, so a batch
    # fetched just before a revocation is processed after it, and must then
    # be dropped (its partitions are someone else's). getmany itself stays
    # outside the lock: during a rebalance it waits for the new assignment.
    lock = asyncio.Lock()
    owned: set[int] = set()

    class Listener(ConsumerRebalanceListener):
        async def on_partitions_revoked(self, revoked):
            async with lock:
                owned.difference_update(tp.partition for tp in revoked)
                emit(ev="revoke", p=sorted(tp.partition for tp in revoked))

        async def on_partitions_assigned(self, assigned):
            owned.update(tp.partition for tp in assigned)
            emit(ev="assign", p=sorted(tp.partition for tp in assigned))

    consumer = AIOKafkaConsumer(
        bootstrap_servers=cfg["bootstrap"],
        group_id=cfg["group"],
        client_id=cfg.get("name", "worker"),
        group_instance_id=cfg.get("instance_id"),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=cfg.get("session_ms", 6000),
        heartbeat_interval_ms=cfg.get("heartbeat_ms", 500),
        max_poll_interval_ms=cfg.get("max_poll_ms", 20000),
        metadata_max_age_ms=2000,
    )
    consumer.subscribe(topics=[cfg["topic"]], listener=Listener())
    await consumer.start()
    emit(ev="ready")
    try:
        while not stopping.is_set():
            try:
                batch = await consumer.getmany(timeout_ms=200)
            except KafkaError as exc:  # e.g. the broker is restarting: a real application carries on
                emit(ev="error", err=repr(exc))
                continue
            async with lock:
                rows = []
                for tp, records in batch.items():
                    if tp.partition in owned:
                        rows += [[tp.partition, r.offset, r.value.decode()] for r in records]
                if not rows:
                    continue
                nxt = report_batch(rows)
                try:
                    await consumer.commit({TopicPartition(cfg["topic"], p): o for p, o in nxt.items()})
                except KafkaError as exc:
                    emit(ev="commit_failed", err=repr(exc))
                else:
                    emit(ev="commit", c=nxt)
    finally:
        await consumer.stop()
    emit(ev="closed")


def main() -> None:
    cfg = json.loads(sys.argv[1])
    if cfg.get("debug"):
        import logging

        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    threading.Thread(target=watch_stdin, daemon=True).start()
    client = cfg["client"]
    if client == "confluent-kafka":
        run_confluent(cfg)
    elif client == "kafka-python":
        run_kafka_python(cfg)
    elif client == "aiokafka":
        asyncio.run(run_aiokafka(cfg))
    else:
        raise SystemExit(f"unknown client {client!r}")


if __name__ == "__main__":
    main()
