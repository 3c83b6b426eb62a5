"""``pybroker produce``: records from arguments or stdin lines, as Kafka's
console producer (``--property parse.key=true --property key.separator=:``)
and kcat (``-K:``) take them.

Records go to their partition's leader in one Produce per leader. A record
with a key goes where Kafka's Java client puts it (murmur2), one without a
key round-robin, ``--partition`` wins over both. Lines from stdin are sent
in batches of up to ``BATCH_RECORDS``, and at once when they arrive slowly
(a person typing), so an interactive session sees each line land.
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from itertools import count

from pybroker.protocol.compression import Compression
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.produce_request import PartitionProduceData, ProduceRequest, TopicProduceData
from pybroker.protocol.records import NewRecord, build_batch

from .client import AdminError, Client, check
from .records import parse_pairs, partition_for_key

BATCH_RECORDS = 500
LINGER_S = 0.1
RETRIABLE = {ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.LEADER_NOT_AVAILABLE, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
             ErrorCode.REQUEST_TIMED_OUT, ErrorCode.NOT_ENOUGH_REPLICAS}
ACKS = {"0": 0, "1": 1, "-1": -1, "all": -1}


def properties(items: list[str]) -> dict[str, str]:
    try:
        return dict(parse_pairs(items, "property"))
    except ValueError as exc:
        raise AdminError("INVALID_CONFIG", str(exc)) from None


class Producer:
    def __init__(self, client: Client, topic: str, acks: int, compression: Compression, partition: int | None):
        self.client = client
        self.topic = topic
        self.acks = acks
        self.compression = compression
        self.partition = partition
        self.leaders = client.partitions(topic, auto_create=True)
        if partition is not None and partition not in self.leaders:
            raise AdminError("UNKNOWN_TOPIC_OR_PARTITION", f"topic '{topic}' has no partition {partition}")
        self._round_robin = count()
        self.sent = 0

    def route(self, key: bytes | None) -> int:
        if self.partition is not None:
            return self.partition
        if key is not None:
            return partition_for_key(key, len(self.leaders))
        return next(self._round_robin) % len(self.leaders)

    def send(self, records: list[NewRecord]) -> None:
        """Write ``records``, retrying what a leader change refused."""
        pending: dict[int, list[NewRecord]] = defaultdict(list)
        for record in records:
            pending[self.route(record.key)].append(record)
        deadline = time.monotonic() + self.client.timeout
        while pending:
            failed = self._send_once(pending)
            if not failed:
                break
            if time.monotonic() > deadline:
                code, message, partition = next(iter(failed.values()))
                check(code, message, subject=f"{self.topic}-{partition}")
            time.sleep(0.1)  # a retry pause, not synchronisation
            self.leaders = self.client.partitions(self.topic, auto_create=True)
            pending = {p: pending[p] for p in failed}
        self.sent += len(records)

    def _send_once(self, pending: dict[int, list[NewRecord]]) -> dict:
        by_leader: dict[int, list[int]] = defaultdict(list)
        for partition in pending:
            by_leader[self.leaders[partition]].append(partition)
        failed = {}
        for leader, partitions in by_leader.items():
            body = ProduceRequest(
                transactional_id=None,
                acks=self.acks,
                timeout_ms=int(self.client.timeout * 1000),
                topic_data=[TopicProduceData(name=self.topic, partition_data=[
                    PartitionProduceData(index=p, records=build_batch(pending[p], compression=self.compression))
                    for p in partitions
                ])],
            )
            response, _ = self.client.broker(leader).call(body, 3, 11, expect_response=self.acks != 0)
            if response is None:
                continue
            for topic in response.responses:
                for p in topic.partition_responses:
                    if not p.error_code:
                        continue
                    message = getattr(p, "error_message", None)
                    if p.error_code not in RETRIABLE:
                        check(p.error_code, message, subject=f"{self.topic}-{p.index}")
                    failed[p.index] = (p.error_code, message, p.index)
        return failed


def _lines():
    """stdin lines without their line ends, as bytes."""
    for line in sys.stdin.buffer:
        yield line.rstrip(b"\r\n") if line.endswith(b"\n") else line


def run_command(client: Client, args) -> int:
    props = properties(args.property)
    separator = args.kcat_separator
    if separator is None and props.get("parse.key", "false").lower() == "true":
        separator = props.get("key.separator", "\t")
    try:
        headers = [(k, v.encode()) for k, v in parse_pairs(args.header, "header")]
    except ValueError as exc:
        raise AdminError("INVALID_RECORD", str(exc)) from None
    producer = Producer(client, args.topic, ACKS[args.acks], Compression[args.compression_type.upper()],
                        args.partition)
    sep = None if separator is None else separator.encode()
    lines = (v.encode() for v in args.values) if args.values else _lines()
    batch: list[NewRecord] = []
    last_send = 0.0
    for number, line in enumerate(lines, 1):
        key, value = None, line
        if sep is not None:
            key, found, value = line.partition(sep)
            if not found:
                raise AdminError("INVALID_RECORD", f"no key separator '{separator}' in line {number}")
        batch.append(NewRecord(key, value, headers, int(time.time() * 1000)))
        if len(batch) >= BATCH_RECORDS or time.monotonic() - last_send > LINGER_S:
            producer.send(batch)
            batch, last_send = [], time.monotonic()
    if batch:
        producer.send(batch)
    return 0
