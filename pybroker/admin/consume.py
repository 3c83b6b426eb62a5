"""``pybroker consume``: print a topic's records, as Kafka's console
consumer (``--from-beginning``, ``--max-messages``, ``--property
print.key=true``) with kcat's extras (``--offset``, ``--timestamp``, JSON
lines).

Without ``--group`` the partitions are assigned directly (all of them, or
``--partition``), starting where ``--offset``/``--from-beginning``/
``--timestamp`` say (default: the end, as Kafka's tool). With ``--group``
the command is a member of that consumer group (``membership``): it starts
at the group's committed offsets (else at the start given, or the end),
commits every few seconds and on exit, and leaves the group.

Fetch goes to every leader at once (one request per leader, sent before
any answer is read); the loop runs until ``--max-messages`` records were
printed, ``--timeout-ms`` passed without one, or Ctrl-C.
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.fetch_request import FetchPartition, FetchRequest, FetchTopic
from pybroker.protocol.record_batch import split_batches
from pybroker.protocol.registry import ApiKey

from .client import AdminError, Client, check
from .membership import GroupMember
from .offsets import EARLIEST, LATEST, list_offsets, topic_leaders
from .produce import properties
from .records import record_json, text

MAX_WAIT_MS = 500
PARTITION_MAX_BYTES = 1 << 20
FETCH_MAX_BYTES = 50 << 20
COMMIT_INTERVAL_S = 5.0
REFRESH = {ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, ErrorCode.LEADER_NOT_AVAILABLE,
           ErrorCode.FENCED_LEADER_EPOCH, ErrorCode.UNKNOWN_LEADER_EPOCH, ErrorCode.OFFSET_NOT_AVAILABLE}


class Formatter:
    """Kafka's DefaultMessageFormatter for ``--format text``; JSON lines otherwise."""

    def __init__(self, fmt: str, props: dict[str, str]):
        self.json = fmt == "json"
        flag = {k: props.get(f"print.{k}", "false").lower() == "true"
                for k in ("timestamp", "partition", "offset", "headers", "key")}
        self.flags = flag
        self.print_value = props.get("print.value", "true").lower() == "true"
        self.separator = props.get("key.separator", "\t")
        self.line_end = props.get("line.separator", "\n")

    def __call__(self, topic: str, partition: int, record, timestamp_type: int) -> str:
        if self.json:
            return json.dumps(record_json(topic, partition, record, timestamp_type)) + "\n"
        fields = []
        if self.flags["timestamp"]:
            kind = "LogAppendTime" if timestamp_type else "CreateTime"
            fields.append(f"{kind}:{record.timestamp}")
        if self.flags["partition"]:
            fields.append(f"Partition:{partition}")
        if self.flags["offset"]:
            fields.append(f"Offset:{record.offset}")
        if self.flags["headers"]:
            fields.append(",".join(f"{k}:{text(v)}" for k, v in record.headers) or "NO_HEADERS")
        if self.flags["key"]:
            fields.append(text(record.key))
        if self.print_value:
            fields.append(text(record.value))
        return self.separator.join(fields) + self.line_end


class Fetcher:
    """Positions of the assigned partitions, moved by Fetch."""

    def __init__(self, client: Client, isolation: int):
        self.client = client
        self.isolation = isolation
        self.positions: dict[tuple[str, int], int] = {}
        self.leaders: dict[tuple[str, int], int] = {}
        # Where the last poll's batches end, per partition: the position
        # once all its records were handed out (``advance``).
        self.ends: dict[tuple[str, int], int] = {}

    def assign(self, leaders: dict[tuple[str, int], int], positions: dict[tuple[str, int], int]) -> None:
        self.leaders, self.positions = dict(leaders), dict(positions)

    def refresh_leaders(self) -> None:
        for topic in {t for t, _ in self.positions}:
            for (t, p), leader in topic_leaders(self.client, topic).items():
                if (t, p) in self.positions:
                    self.leaders[t, p] = leader

    def poll(self):
        """(topic, partition, record, timestamp type) of what one round of
        fetches returned, in offset order per partition. Positions move
        only by ``advance``."""
        self.ends = {}
        by_leader: dict[int, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        for (topic, partition), leader in self.leaders.items():
            by_leader[leader][topic].append(partition)
        sent = []
        for leader, topics in by_leader.items():
            body = FetchRequest(
                replica_id=-1, max_wait_ms=MAX_WAIT_MS, min_bytes=1, max_bytes=FETCH_MAX_BYTES,
                isolation_level=self.isolation, session_id=0, session_epoch=-1,
                topics=[FetchTopic(topic=t, partitions=[
                    FetchPartition(partition=p, fetch_offset=self.positions[t, p], log_start_offset=-1,
                                   partition_max_bytes=PARTITION_MAX_BYTES)
                    for p in sorted(ps)]) for t, ps in topics.items()],
            )
            conn = self.client.broker(leader)
            sent.append((conn, conn.send(body, 4, 12)))
        refresh = False
        out = []
        for conn, version in sent:
            response = conn.receive(ApiKey.FETCH, version)
            check(getattr(response, "error_code", 0), subject="fetch")
            for t in response.responses:
                for p in t.partitions:
                    if p.error_code in REFRESH:
                        refresh = True
                    elif p.error_code == ErrorCode.OFFSET_OUT_OF_RANGE:
                        self._reset((t.topic, p.partition_index))
                    else:
                        check(p.error_code, subject=f"{t.topic}-{p.partition_index}")
                        out.extend(self._records(t.topic, p))
        if refresh:
            self.refresh_leaders()
        return out

    def _reset(self, tp: tuple[str, int]) -> None:
        # A position outside the log (retention or truncation moved it):
        # start again at the log start, as auto.offset.reset=earliest.
        self.positions[tp] = list_offsets(self.client, {tp: self.leaders[tp]}, EARLIEST)[tp]

    def _records(self, topic: str, data):
        tp = (topic, data.partition_index)
        position = self.positions[tp]
        aborted = sorted((a.first_offset, a.producer_id) for a in (data.aborted_transactions or []))
        aborting: set[int] = set()
        batches, _ = split_batches(data.records or b"")
        for batch in batches:
            while aborted and aborted[0][0] <= batch.last_offset:
                aborting.add(aborted.pop(0)[1])
            if batch.is_control:
                aborting.discard(batch.producer_id)
            elif not (batch.is_transactional and batch.producer_id in aborting):
                for record in batch.records():
                    if record.offset >= position:
                        yield topic, data.partition_index, record, batch.timestamp_type
            self.ends[tp] = batch.next_offset

    def advance(self, unprinted) -> None:
        """Move each partition past its fetched batches, except those with
        records in ``unprinted`` (the caller moved them record by record)."""
        held = {(t, p) for t, p, _, _ in unprinted}
        for tp, end in self.ends.items():
            if tp not in held:
                self.positions[tp] = max(self.positions[tp], end)


def _start_positions(client: Client, args, leaders) -> dict[tuple[str, int], int]:
    if args.timestamp is not None:
        found = list_offsets(client, leaders, args.timestamp)
        latest = list_offsets(client, leaders, LATEST)
        return {tp: o if o >= 0 else latest[tp] for tp, o in found.items()}
    where = "earliest" if args.from_beginning else (args.offset or "latest")
    if where in ("earliest", "latest"):
        return list_offsets(client, leaders, EARLIEST if where == "earliest" else LATEST)
    try:
        offset = int(where)
    except ValueError:
        raise AdminError("INVALID_REQUEST", f"--offset must be earliest, latest or a number, not '{where}'") from None
    if offset < 0:  # kcat's -o -N: N before the end
        latest = list_offsets(client, leaders, LATEST)
        earliest = list_offsets(client, leaders, EARLIEST)
        return {tp: max(earliest[tp], latest[tp] + offset) for tp in leaders}
    return {tp: offset for tp in leaders}


def _assign_group(client: Client, args, member: GroupMember, fetcher: Fetcher) -> None:
    assigned = member.join()
    leaders = {}
    for topic in {t for t, _ in assigned}:
        leaders.update(topic_leaders(client, topic, [p for t, p in assigned if t == topic]))
    committed = member.committed()
    start = _start_positions(client, args, {tp: lead for tp, lead in leaders.items() if tp not in committed})
    fetcher.assign(leaders, {**start, **committed})


def run_command(client: Client, args) -> int:
    formatter = Formatter(args.format, properties(args.property))
    fetcher = Fetcher(client, 1 if args.isolation_level == "read_committed" else 0)
    member = None
    if args.group:
        if args.partition:
            raise AdminError("INVALID_REQUEST", "--partition cannot be combined with --group (the group assigns)")
        client.partitions(args.topic)  # a missing topic is an error, not an empty assignment
        member = GroupMember(client, args.group, [args.topic])
        _assign_group(client, args, member, fetcher)
    else:
        leaders = topic_leaders(client, args.topic, args.partition)
        fetcher.assign(leaders, _start_positions(client, args, leaders))
    printed = 0
    last_record = last_commit = time.monotonic()
    try:
        while args.max_messages is None or printed < args.max_messages:
            records = fetcher.poll()
            unprinted = []
            for i, (topic, partition, record, ts_type) in enumerate(records):
                sys.stdout.write(formatter(topic, partition, record, ts_type))
                fetcher.positions[topic, partition] = record.offset + 1
                printed += 1
                last_record = time.monotonic()
                if args.max_messages is not None and printed >= args.max_messages:
                    unprinted = records[i + 1 :]
                    break
            fetcher.advance(unprinted)
            sys.stdout.flush()
            if args.timeout_ms is not None and time.monotonic() - last_record > args.timeout_ms / 1000:
                break
            if member is not None:
                if time.monotonic() - last_commit > COMMIT_INTERVAL_S:
                    member.commit(fetcher.positions)
                    last_commit = time.monotonic()
                if member.heartbeat():
                    member.commit(fetcher.positions)
                    _assign_group(client, args, member, fetcher)
    except KeyboardInterrupt:
        client.close()  # a request may have been cut in half
    finally:
        if member is not None and member.member_id:
            try:
                member.commit(fetcher.positions)
            finally:
                member.leave()
    print(f"Processed a total of {printed} messages", file=sys.stderr)
    return 0
