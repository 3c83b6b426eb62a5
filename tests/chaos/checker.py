"""The checker: Jepsen's Kafka anomalies, counted over a history (see
``history`` for the events). Pure: no broker, no client, no clock.

Each anomaly must be 0 for a run to pass:

``lost``
    an acknowledged write whose value is not in the final log of its
    partition. (An ack without an offset, which librdkafka gives for a
    retried batch it takes as persisted, is checked for this alone.)
``inconsistent-offsets``
    two different values at one (partition, offset), across what producers
    were told (acks), what consumers read (polls) and the final log.
``duplicate``
    a value at more than one offset of the final log.
``phantom-read``
    a consumer read a value at an offset where the final log holds another
    value, or nothing (an offset at or past the final high watermark: the
    read was of something later truncated). Offsets below the final log
    start are unknown and not counted.
``nonmonotonic-poll``
    an ``assign()`` consumer (it never seeks nor rebalances, so its position
    only moves forward) read an offset of a partition not above the one it
    read before there.
``skipping-poll``
    that consumer went from offset a to offset b > a + 1 of a partition
    while the final log holds a record strictly between them. Kafka's
    offsets have holes only where records were removed (compaction) or are
    control records; neither happens here, so any offset the final log
    holds between two consecutive reads must have been read. (Were holes
    possible, this is still the right rule: a hole is absent from the final
    log too, and is allowed.)
``order``
    an idempotent producer's writes to one partition out of send order: two
    of its acknowledged values whose offsets do not increase with the
    sequence, or two of its values in the final log in the wrong order.
``replicas-differ``
    a partition whose replicas' files do not hold the same batches below
    the final high watermark (a replica short of it, a different batch, or
    files that could not be read as Kafka's format).
``truncation``
    a client said the log went below what it had read (librdkafka's log
    truncation error, an offset out of range for an ``assign()`` reader that
    never went past the high watermark).
``failed-write-visible``
    a write the client called definitely failed is in the final log.
``client-error`` (only when asked for: ``strict_errors``)
    a send that failed with an error that is not retriable, or a fatal client
    error; a controlled shutdown should cause none.

Availability is reported, not judged: the longest gap between consecutive
acknowledgements, overall and per partition, and around each fault the
longest gap that overlaps the fault's window. A fault's failover time to
the first ack is the end of the longest gap on a partition the target led
that overlaps the fault, minus the fault's start (acks whose responses
were already on their way when the fault hit do not count as "after" it);
its failover time to a new leader is the first ``leader`` event between
its start and its heal naming another live leader. Per kind of fault, the
report gives the median and the maximum of those longest gaps, over all
partitions and on the partitions the target led.
"""

from __future__ import annotations

import itertools
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from .history import parse_value

ANOMALIES = (
    "lost",
    "inconsistent-offsets",
    "duplicate",
    "phantom-read",
    "nonmonotonic-poll",
    "skipping-poll",
    "order",
    "replicas-differ",
    "truncation",
    "failed-write-visible",
)
STRICT = "client-error"
EXAMPLES = 5  # per anomaly, in the report


@dataclass
class Gap:
    start: float
    end: float
    partition: int | None = None

    @property
    def length(self) -> float:
        return self.end - self.start

    def __str__(self) -> str:
        where = "" if self.partition is None else f" on partition {self.partition}"
        return f"{self.length:.2f} s ({self.start:.2f}..{self.end:.2f}){where}"


@dataclass
class FaultReport:
    id: int
    kind: str
    broker: int | None
    start: float
    end: float | None
    partitions: list[int]
    longest_gap: Gap | None = None  # every partition's acks together
    partition_gaps: dict[int, Gap] = field(default_factory=dict)
    failover_ack: dict[int, float] = field(default_factory=dict)
    failover_leader: dict[int, float] = field(default_factory=dict)
    details: dict = field(default_factory=dict)


@dataclass
class Report:
    counts: dict[str, int]
    examples: dict[str, list[str]]
    sends: int = 0
    acks: int = 0
    # Acks that came without an offset (librdkafka reports some retried
    # batches as persisted with the offset unknown): checked for loss only.
    acks_without_offset: int = 0
    failures: int = 0
    unknown: int = 0  # sent, neither acked nor failed when the run ended
    polls: int = 0
    final_records: int = 0
    client_errors: Counter = field(default_factory=Counter)
    non_retriable: int = 0
    longest_gap: Gap | None = None
    partition_gaps: dict[int, Gap] = field(default_factory=dict)
    faults: list[FaultReport] = field(default_factory=list)

    @property
    def anomalies(self) -> dict[str, int]:
        return {k: v for k, v in self.counts.items() if v}

    @property
    def ok(self) -> bool:
        return not self.anomalies

    def format(self) -> str:
        lines = ["anomalies:"]
        for name, count in self.counts.items():
            lines.append(f"  {name:<22} {count}")
            lines += [f"      e.g. {e}" for e in self.examples.get(name, [])[:EXAMPLES]]
        lines.append(
            f"sends {self.sends}, acks {self.acks} ({self.acks_without_offset} without an offset), "
            f"failed {self.failures}, unknown {self.unknown}, "
            f"polled records {self.polls}, final log records {self.final_records}"
        )
        lines.append(f"non-retriable client errors {self.non_retriable}")
        if self.client_errors:
            shown = ", ".join(f"{k} x{v}" for k, v in self.client_errors.most_common(8))
            lines.append(f"client errors: {shown}")
        lines.append(f"longest gap between acks: {self.longest_gap or '-'}")
        for p, gap in sorted(self.partition_gaps.items()):
            lines.append(f"  partition {p}: {gap}")
        for f in self.faults:
            end = "not ended" if f.end is None else f"{f.end:.2f}"
            lines.append(
                f"fault {f.id} {f.kind} broker {f.broker} at {f.start:.2f}..{end}, led {f.partitions}"
                + (f" {f.details}" if f.details else "")
            )
            lines.append(f"  longest ack gap overlapping it: {f.longest_gap or '-'}")
            for p in sorted(set(f.failover_ack) | set(f.failover_leader)):
                ack = f.failover_ack.get(p)
                lead = f.failover_leader.get(p)
                lines.append(
                    f"  partition {p}: new leader after {'-' if lead is None else f'{lead:.2f} s'}, "
                    f"first ack after {'-' if ack is None else f'{ack:.2f} s'}"
                )
        lines += self.by_kind()
        lines.append("PASS" if self.ok else "FAIL: " + ", ".join(f"{k}={v}" for k, v in self.anomalies.items()))
        return "\n".join(lines)

    def by_kind(self) -> list[str]:
        """Per fault kind, the median and the maximum over its faults of the
        longest ack gap overlapping each: over all partitions together, and
        on the partitions the target led (the longest of theirs)."""
        gaps, led = defaultdict(list), defaultdict(list)
        for f in self.faults:
            if f.longest_gap is not None:
                gaps[f.kind].append(f.longest_gap.length)
            theirs = [f.partition_gaps[p].length for p in f.partitions if p in f.partition_gaps]
            if theirs:
                led[f.kind].append(max(theirs))
        lines = []
        for kind in sorted(gaps.keys() | led.keys()):
            line = f"{kind} x{sum(1 for f in self.faults if f.kind == kind)}: "
            line += ", ".join(
                f"{what} median {statistics.median(values):.2f} s, max {max(values):.2f} s"
                for what, values in (("ack gap", gaps[kind]), ("ack gap where it led", led[kind]))
                if values
            )
            lines.append(line)
        return lines


class _Found:
    """Counts and the first examples of each anomaly."""

    def __init__(self, names):
        self.counts = dict.fromkeys(names, 0)
        self.examples: dict[str, list[str]] = defaultdict(list)

    def add(self, name: str, example: str) -> None:
        self.counts[name] += 1
        if len(self.examples[name]) < EXAMPLES:
            self.examples[name].append(example)


def check(events: list[dict], strict_errors: bool = False) -> Report:
    by_type: dict[str, list[dict]] = defaultdict(list)
    for e in events:
        by_type[e["type"]].append(e)
    found = _Found(ANOMALIES + ((STRICT,) if strict_errors else ()))
    final = {e["partition"]: e for e in by_type["final"]}
    final_at = {p: {o: v for o, v in e["records"]} for p, e in final.items()}

    _lost(by_type["ack"], final_at, found)
    _inconsistent(by_type["ack"], by_type["poll"], final_at, found)
    _duplicates(final_at, found)
    _phantoms(by_type["poll"], final, final_at, found)
    _polls_in_order(by_type["poll"], final_at, found)
    _producer_order(by_type["ack"], final_at, found)
    _replicas(by_type["replica"], final, found)
    _client_errors(by_type["client_error"], by_type["fail"], final_at, found, strict_errors)

    report = Report(found.counts, dict(found.examples))
    report.sends = len(by_type["send"])
    report.acks = len({e["value"] for e in by_type["ack"]})
    report.acks_without_offset = len({e["value"] for e in by_type["ack"] if e["offset"] is None})
    report.failures = len(by_type["fail"])
    report.unknown = len({e["value"] for e in by_type["send"]} - {e["value"] for e in by_type["ack"] + by_type["fail"]})
    report.polls = len(by_type["poll"])
    report.final_records = sum(len(r) for r in final_at.values())
    report.client_errors = Counter(e["error"] for e in by_type["client_error"] + by_type["fail"])
    report.non_retriable = sum(1 for e in by_type["fail"] if not e.get("retriable")) + sum(
        1 for e in by_type["client_error"] if e.get("fatal")
    )
    _availability(report, by_type["ack"], by_type["fault_start"], by_type["fault_end"], by_type["leader"], events)
    return report


# -- writes --------------------------------------------------------------------------


def _lost(acks, final_at, found: _Found) -> None:
    present = {(p, v) for p, records in final_at.items() for v in records.values()}
    seen = set()
    for a in acks:
        key = (a["partition"], a["value"])
        if key in present or key in seen:
            continue
        seen.add(key)
        if a["partition"] not in final_at:
            found.add("lost", f"{a['value']} acked at {a['partition']}/{a['offset']} (t={a['t']}), no final read")
        else:
            now = final_at[a["partition"]].get(a["offset"]) if a["offset"] is not None else "(no offset acked)"
            found.add(
                "lost",
                f"{a['value']} acked at {a['partition']}/{a['offset']} (t={a['t']}); the final log has {now!r} there",
            )


def _inconsistent(acks, polls, final_at, found: _Found) -> None:
    values: dict[tuple[int, int], dict[str, str]] = defaultdict(dict)  # (p, o) -> {value: who saw it}
    for p, records in final_at.items():
        for o, v in records.items():
            values[(p, o)].setdefault(v, "final log")
    for a in acks:
        if a["offset"] is not None:  # None: the client was told "written" without the offset
            values[(a["partition"], a["offset"])].setdefault(a["value"], f"ack to {a['producer']} t={a['t']}")
    for e in polls:
        values[(e["partition"], e["offset"])].setdefault(e["value"], f"poll by {e['consumer']} t={e['t']}")
    for (p, o), seen in sorted(values.items()):
        if len(seen) > 1:
            found.add("inconsistent-offsets", f"{p}/{o}: " + ", ".join(f"{v!r} ({who})" for v, who in seen.items()))


def _duplicates(final_at, found: _Found) -> None:
    where: dict[str, list[str]] = defaultdict(list)
    for p, records in sorted(final_at.items()):
        for o, v in sorted(records.items()):
            where[v].append(f"{p}/{o}")
    for v, places in where.items():
        if len(places) > 1:
            found.add("duplicate", f"{v!r} at {', '.join(places)}")


def _producer_order(acks, final_at, found: _Found) -> None:
    pairs = set()
    # What the producers were told: per (producer, partition), offsets by sequence.
    told: dict[tuple[str, int], dict[int, int]] = defaultdict(dict)
    for a in acks:
        parsed = parse_value(a["value"])
        if parsed and a["offset"] is not None:
            told[(parsed[0], a["partition"])].setdefault(parsed[1], a["offset"])
    # What the final log holds: the same, from the records.
    held: dict[tuple[str, int], dict[int, int]] = defaultdict(dict)
    for p, records in final_at.items():
        for o, v in records.items():
            parsed = parse_value(v)
            if parsed:
                held[(parsed[0], p)].setdefault(parsed[1], o)
    for source, table in (("acks", told), ("final log", held)):
        for (producer, p), by_seq in table.items():
            seqs = sorted(by_seq)
            for a, b in itertools.pairwise(seqs):
                if by_seq[b] <= by_seq[a] and (producer, a, b) not in pairs:
                    pairs.add((producer, a, b))
                    found.add(
                        "order",
                        f"{producer} in partition {p} ({source}): seq {a} at offset {by_seq[a]}, "
                        f"seq {b} at offset {by_seq[b]}",
                    )


# -- reads ---------------------------------------------------------------------------


def _phantoms(polls, final, final_at, found: _Found) -> None:
    seen = set()
    for e in polls:
        p, o, v = e["partition"], e["offset"], e["value"]
        if (p, o, v) in seen or p not in final or o < final[p]["log_start"]:
            continue
        seen.add((p, o, v))
        now = final_at[p].get(o)
        if now != v:
            found.add(
                "phantom-read",
                f"{e['consumer']} read {v!r} at {p}/{o} (t={e['t']}); the final log has {now!r} "
                f"(high watermark {final[p]['hw']})",
            )


def _polls_in_order(polls, final_at, found: _Found) -> None:
    last: dict[tuple[str, int], dict] = {}
    for e in polls:
        if e.get("mode") != "assign":
            continue  # a group member rewinds to the committed offset on a rebalance, rightly
        key = (e["consumer"], e["partition"])
        before = last.get(key)
        last[key] = e
        if before is None:
            continue
        a, b = before["offset"], e["offset"]
        where = f"{e['consumer']} on partition {e['partition']}: offset {a} (poll {before['poll']}, t={before['t']})"
        if b <= a:
            found.add("nonmonotonic-poll", f"{where} then {b} (poll {e['poll']}, t={e['t']})")
        elif b > a + 1:
            records = final_at.get(e["partition"], {})
            skipped = [o for o in range(a + 1, b) if o in records]
            if skipped:
                found.add(
                    "skipping-poll",
                    f"{where} then {b} (poll {e['poll']}, t={e['t']}), skipping {len(skipped)} "
                    f"record(s) of the final log from {skipped[0]}",
                )


# -- replicas and clients ------------------------------------------------------------


def _replicas(replicas, final, found: _Found) -> None:
    by_partition: dict[int, list[dict]] = defaultdict(list)
    for r in replicas:
        by_partition[r["partition"]].append(r)
    for p, reps in sorted(by_partition.items()):
        hw = final[p]["hw"] if p in final else None
        problems = []
        for r in reps:
            if r.get("error"):
                problems.append(f"broker {r['broker']}: {r['error']}")
            elif hw is not None and r["log_end"] < hw:
                problems.append(f"broker {r['broker']}'s log ends at {r['log_end']}, below the high watermark {hw}")
        readable = [r for r in reps if not r.get("error")]
        if readable:
            ref = readable[0]
            mine = [tuple(b) for b in ref["batches"]]
            for r in readable[1:]:
                theirs = [tuple(b) for b in r["batches"]]
                if theirs != mine:
                    i = next((i for i, (x, y) in enumerate(zip(mine, theirs)) if x != y), min(len(mine), len(theirs)))
                    a = mine[i] if i < len(mine) else None
                    b = theirs[i] if i < len(theirs) else None
                    problems.append(f"batch {i}: broker {ref['broker']} has {a}, broker {r['broker']} has {b}")
        if problems:
            found.add("replicas-differ", f"partition {p} below {hw}: " + "; ".join(problems))


def _client_errors(errors, fails, final_at, found: _Found, strict: bool) -> None:
    for e in errors:
        if e.get("truncation"):
            found.add("truncation", f"{e['client']} t={e['t']}: {e['error']} {e.get('message', '')}".rstrip())
    present = {v for records in final_at.values() for v in records.values()}
    for f in fails:
        if f.get("definite") and f["value"] in present:
            found.add("failed-write-visible", f"{f['value']} failed with {f['error']} (t={f['t']}) but is in the log")
    if strict:
        for f in fails:
            if not f.get("retriable"):
                found.add(STRICT, f"{f['producer']} {f['value']}: {f['error']} (t={f['t']})")
        for e in errors:
            if e.get("fatal"):
                found.add(STRICT, f"{e['client']} fatal: {e['error']} (t={e['t']})")


# -- availability --------------------------------------------------------------------


def _gaps(times: list[float], partition: int | None = None) -> list[Gap]:
    times = sorted(times)
    return [Gap(a, b, partition) for a, b in itertools.pairwise(times)]


def _longest(gaps: list[Gap]) -> Gap | None:
    return max(gaps, key=lambda g: g.length, default=None)


def _availability(report: Report, acks, starts, ends, leaders, events) -> None:
    first_ack: dict[str, float] = {}
    for a in acks:  # a value acked twice (both reports) counts once, at its first
        first_ack.setdefault(a["value"], a["t"])
    times = sorted(first_ack.values())
    per_partition: dict[int, list[float]] = defaultdict(list)
    seen = set()
    for a in acks:
        if a["value"] not in seen:
            seen.add(a["value"])
            per_partition[a["partition"]].append(a["t"])
    all_gaps = _gaps(times)
    partition_gaps = {p: _gaps(ts, p) for p, ts in per_partition.items()}
    report.longest_gap = _longest(all_gaps)
    report.partition_gaps = {p: g for p, gaps in partition_gaps.items() if (g := _longest(gaps))}
    ended = {e["id"]: e for e in ends}
    last_t = max((e["t"] for e in events), default=0.0)
    for s in starts:
        end_event = ended.get(s["id"])
        end = end_event["t"] if end_event else None
        window_end = end if end is not None else last_t

        def overlapping(gaps, start=s["t"], end=window_end):
            return [g for g in gaps if g.end > start and g.start < end]

        details = {k: v for k, v in (end_event or {}).items() if k not in ("t", "type", "id")}
        f = FaultReport(
            s["id"], s["kind"], s.get("broker"), s["t"], end, list(s.get("partitions") or []), details=details
        )
        f.longest_gap = _longest(overlapping(all_gaps))
        for p, gaps in partition_gaps.items():
            if g := _longest(overlapping(gaps)):
                f.partition_gaps[p] = g
        for p in f.partitions:
            g = f.partition_gaps.get(p)
            if g is not None and g.end > s["t"]:
                f.failover_ack[p] = g.end - s["t"]
            moved = next(
                (
                    e
                    for e in leaders
                    # Within the fault: a leader that moves only after the heal did not fail over.
                    if e["partition"] == p
                    and s["t"] <= e["t"] <= window_end
                    and e["leader"] not in (-1, s.get("broker"))
                ),
                None,
            )
            if moved is not None:
                f.failover_leader[p] = moved["t"] - s["t"]
        report.faults.append(f)
