"""A run's history: every event the clients and the harness saw, one JSON
object per line, written as it happens so that a run that dies still
leaves what it saw.

Every event has ``t`` (seconds since the run started, from the monotonic
clock, shared by all threads) and ``type``. The types and their fields:

=============  ===============================================================
``meta``       scenario, seed, topic, partitions, anything else of the run
``send``       producer, value (``"<producer>-<seq>"``), partition
``ack``        producer, value, partition, offset
``fail``       producer, value, partition, error, retriable, definite (the
               write certainly did not happen)
``poll``       consumer, mode (``assign`` or ``group``), poll (its poll
               number), partition, offset, value
``client_error``  client, error, retriable, fatal, truncation (the client
               says the log went below what it had read), message
``leader``     partition, leader, epoch, isr: a change seen in Metadata
``fault_start``  id, kind, broker, partitions (those the target led)
``fault_note``  id, what the fault found as it was injected (e.g. how
               long a SIGTERM took to end the broker, its exit code)
``fault_end``  id, and what healing found (e.g. the seconds a restart took)
``harness``    what went wrong in the harness itself (e.g. a heal that did
               not finish within its deadline)
``final``      partition, log_start, hw, records: [[offset, value], ...]
``replica``    partition, broker, log_end, batches below the final high
               watermark as [[base offset, last offset, sha1], ...], error
=============  ===============================================================

The checker reads nothing else, so a synthetic history of these events is
all its tests need.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Self


def value_of(producer: str, seq: int) -> str:
    return f"{producer}-{seq}"


def parse_value(value: str) -> tuple[str, int] | None:
    """(producer, seq) of a workload value; None for anything else."""
    producer, _, seq = value.rpartition("-")
    return (producer, int(seq)) if producer and seq.isdigit() else None


class History:
    """Append-only, thread-safe; ``now()`` is the clock every event uses."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Line-buffered, so a crash keeps every line; open for the run, closed by close().
        self._file = open(self.path, "w", encoding="utf-8", buffering=1)  # noqa: SIM115
        self._lock = threading.Lock()
        self._t0 = time.monotonic()
        self.counts: Counter[str] = Counter()  # events of each type so far, for waits on progress

    def now(self) -> float:
        return time.monotonic() - self._t0

    def record(self, type_: str, **fields) -> dict:
        event = {"t": round(self.now(), 4), "type": type_, **fields}
        line = json.dumps(event, separators=(",", ":"))
        with self._lock:
            if not self._file.closed:
                self._file.write(line + "\n")
                self.counts[type_] += 1
        return event

    def __len__(self) -> int:
        return sum(self.counts.values())

    def close(self) -> None:
        with self._lock:
            self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_history(path: str | Path) -> list[dict]:
    """The events of a history file; a torn last line (the writer died) is dropped."""
    return list(_events(Path(path).read_text(encoding="utf-8").splitlines()))


def _events(lines: Iterable[str]) -> Iterator[dict]:
    for line in lines:
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            continue
