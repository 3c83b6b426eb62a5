"""Records of one partition from an offset or a time, at most a number of
them: the console's message browser. Fetches from the partition's
leader until ``limit`` records were read or the log's end is reached."""

from __future__ import annotations

from .client import AdminError, Client
from .consume import Fetcher
from .offsets import EARLIEST, LATEST, list_offsets, topic_leaders
from .records import record_json

READ_UNCOMMITTED = 0
MAX_ROUNDS = 50


def read_messages(
    client: Client, topic: str, partition: int, *, offset: int | None = None, timestamp: int | None = None,
    limit: int = 50,
) -> dict:
    """From ``offset``, or the first record at or after ``timestamp``
    (ms), or else the last ``limit`` records of the partition."""
    leaders = topic_leaders(client, topic, [partition])
    tp = (topic, partition)
    earliest = list_offsets(client, leaders, EARLIEST)[tp]
    latest = list_offsets(client, leaders, LATEST)[tp]
    if offset is not None:
        start = offset
    elif timestamp is not None:
        found = list_offsets(client, leaders, timestamp)[tp]
        start = latest if found < 0 else found
    else:
        start = max(earliest, latest - limit)
    start = min(max(start, earliest), latest)
    fetcher = Fetcher(client, READ_UNCOMMITTED)
    fetcher.assign(leaders, {tp: start})
    records: list[dict] = []
    rounds = 0
    while len(records) < limit and fetcher.positions[tp] < latest:
        rounds += 1
        if rounds > MAX_ROUNDS:
            raise AdminError("REQUEST_TIMED_OUT", f"{topic}-{partition}: no progress reading from offset {start}")
        polled = fetcher.poll()
        for _, _, record, timestamp_type in polled:
            if len(records) < limit:
                records.append(record_json(topic, partition, record, timestamp_type))
        fetcher.advance([])
    return {"topic": topic, "partition": partition, "start": start, "earliest": earliest, "latest": latest,
            "messages": records}
