"""A transactional copier, as Kafka's system tests run one
(TransactionalMessageCopier): a process that reads its input partitions
at read_committed from the offsets its group committed, and writes each
record to the same partition of the output topic, a batch per
transaction, with the batch's input offsets committed in the same
transaction (send_offsets_to_transaction). An abortable error aborts and
rewinds to the committed offsets; a fenced producer exits (a newer copier
with the same transactional id took over). It exits 0 once its committed
offsets reach ``--until`` (the input's end offsets), printing one JSON
line per transaction.

    python -m tests.chaos.txn_copier --bootstrap B --input I --output O \\
        --partitions 0,1 --until 6667,6667 --txn-id copier-0 --group copy
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

TIMEOUT_S = 60
EXIT_FENCED = 3


def main(argv: list[str] | None = None) -> int:
    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

    parser = argparse.ArgumentParser()
    for name in ("--bootstrap", "--input", "--output", "--partitions", "--until", "--txn-id", "--group"):
        parser.add_argument(name, required=True)
    parser.add_argument("--max-per-txn", type=int, default=100)
    parser.add_argument("--pause-ms", type=int, default=0, help="between transactions, to spread the copy in time")
    args = parser.parse_args(argv)
    partitions = [int(p) for p in args.partitions.split(",")]
    until = dict(zip(partitions, (int(u) for u in args.until.split(",")), strict=True))
    consumer = Consumer({
        "bootstrap.servers": args.bootstrap, "group.id": args.group, "isolation.level": "read_committed",
        "enable.auto.commit": False, "auto.offset.reset": "earliest",
    })
    debug = {"debug": os.environ["TXN_COPIER_DEBUG"]} if os.environ.get("TXN_COPIER_DEBUG") else {}
    producer = Producer({
        "bootstrap.servers": args.bootstrap, "transactional.id": args.txn_id, "transaction.timeout.ms": 20000,
        **debug,
    })
    producer.init_transactions(TIMEOUT_S)

    def committed() -> dict[int, int]:
        tps = consumer.committed([TopicPartition(args.input, p) for p in partitions], timeout=TIMEOUT_S)
        return {tp.partition: max(tp.offset, 0) for tp in tps}

    start = committed()
    consumer.assign([TopicPartition(args.input, p, start[p]) for p in partitions])
    done = start
    copied = 0
    while any(done[p] < until[p] for p in partitions):
        messages = consumer.consume(num_messages=args.max_per_txn, timeout=1.0)
        data = [m for m in messages if m.error() is None]
        if not data:
            continue
        producer.begin_transaction()
        for m in data:
            producer.produce(args.output, key=m.key(), value=m.value(), partition=m.partition())
        # Only partitions read from have a position (the others' is -1001).
        positions = [tp for tp in consumer.position([TopicPartition(args.input, p) for p in partitions])
                     if tp.offset >= 0]
        try:
            meta = consumer.consumer_group_metadata()
            _retrying(lambda: producer.send_offsets_to_transaction(positions, meta, TIMEOUT_S))  # noqa: B023
            _retrying(lambda: producer.commit_transaction(TIMEOUT_S))
        except KafkaException as exc:
            error = exc.args[0]
            if error.fatal() or not error.txn_requires_abort():
                print(json.dumps({"fatal": str(error)}), flush=True)
                return EXIT_FENCED if error.fatal() else 1
            producer.abort_transaction(TIMEOUT_S)
            done = committed()
            for p in partitions:
                consumer.seek(TopicPartition(args.input, p, done[p]))
            print(json.dumps({"aborted": str(error)}), flush=True)
            continue
        done = {**done, **{tp.partition: tp.offset for tp in positions}}
        copied += len(data)
        print(json.dumps({"copied": copied, "positions": done}), flush=True)
        if args.pause_ms:
            time.sleep(args.pause_ms / 1000)
    producer.flush(TIMEOUT_S)
    consumer.close()
    return 0


def _retrying(call, attempts: int = 10):
    """librdkafka's rule: a retriable error of these calls may be retried
    as is; an abortable or fatal one is raised."""
    from confluent_kafka import KafkaException

    for attempt in range(attempts):
        try:
            return call()
        except KafkaException as exc:
            error = exc.args[0]
            if error.fatal() or error.txn_requires_abort() or not error.retriable() or attempt == attempts - 1:
                raise


if __name__ == "__main__":
    sys.exit(main())
