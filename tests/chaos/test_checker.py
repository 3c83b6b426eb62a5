"""The checker on small synthetic histories: a clean one reports nothing,
and each history built with exactly one anomaly reports that one only."""

from __future__ import annotations

import copy

import pytest

from .checker import ANOMALIES, STRICT, check
from .history import History, read_history

RECORDS = 6  # per partition


def clean() -> list[dict]:
    """Two producers writing alternately to two partitions, all acked,
    all read in order by an assign() consumer, replicas identical."""
    events: list[dict] = [{"t": 0.0, "type": "meta", "topic": "t", "partitions": 2}]
    t = 0.0
    logs: dict[int, list[str]] = {0: [], 1: []}
    seqs = {"a": 0, "b": 0}
    for i in range(2 * RECORDS):
        producer = "ab"[i % 2]
        p = (i // 2) % 2
        value = f"{producer}-{seqs[producer]}"
        seqs[producer] += 1
        t += 0.1
        events.append({"t": t, "type": "send", "producer": producer, "value": value, "partition": p})
        offset = len(logs[p])
        logs[p].append(value)
        events.append(
            {"t": t + 0.05, "type": "ack", "producer": producer, "value": value, "partition": p, "offset": offset}
        )
    for poll, (p, values) in enumerate(sorted(logs.items())):
        for o, v in enumerate(values):
            events.append(
                {
                    "t": t + 1 + poll,
                    "type": "poll",
                    "consumer": "c",
                    "mode": "assign",
                    "poll": poll,
                    "partition": p,
                    "offset": o,
                    "value": v,
                }
            )
    for p, values in logs.items():
        events.append(
            {
                "t": t + 5,
                "type": "final",
                "partition": p,
                "log_start": 0,
                "hw": len(values),
                "records": list(enumerate(values)),
            }
        )
        for broker in (1, 2, 3):
            events.append(
                {
                    "t": t + 6,
                    "type": "replica",
                    "partition": p,
                    "broker": broker,
                    "log_end": len(values),
                    "batches": [[o, o, f"sha-{p}-{o}"] for o in range(len(values))],
                    "error": None,
                }
            )
    return [{**e, "records": [list(r) for r in e["records"]]} if e["type"] == "final" else e for e in events]


def only(report, name: str, count: int | None = None) -> None:
    assert set(report.anomalies) == {name}, report.format()
    if count is not None:
        assert report.counts[name] == count, report.format()


def final_of(events, p):
    return next(e for e in events if e["type"] == "final" and e["partition"] == p)


def test_a_clean_history_has_no_anomaly():
    report = check(clean(), strict_errors=True)
    assert report.ok, report.format()
    assert set(report.counts) == set(ANOMALIES) | {STRICT}
    assert report.acks == report.sends == 2 * RECORDS
    assert report.polls == report.final_records == 2 * RECORDS
    assert report.unknown == 0


def test_lost_acknowledged_write():
    events = clean()
    # The last record of partition 1 vanished from the final log (and its replicas agree).
    final = final_of(events, 1)
    final["records"].pop()
    final["hw"] -= 1
    events = [e for e in events if not (e["type"] == "poll" and e["partition"] == 1 and e["offset"] == final["hw"])]
    for e in events:
        if e["type"] == "replica" and e["partition"] == 1:
            e["batches"].pop()
            e["log_end"] -= 1
    only(check(events), "lost", 1)


def test_an_ack_without_an_offset_is_checked_for_loss_only():
    events = clean()
    ack = next(e for e in events if e["type"] == "ack" and e["value"] == "a-2")
    ack["offset"] = None
    report = check(events)
    assert report.ok and report.acks_without_offset == 1, report.format()
    final = final_of(events, ack["partition"])
    final["records"] = [r for r in final["records"] if r[1] != "a-2"]
    assert "lost" in check(events).anomalies


def test_two_values_at_one_offset():
    events = clean()
    # An ack names an offset the final log gives another value of the same
    # producer (the value itself is present, at its own offset, so nothing is lost).
    ack = next(e for e in events if e["type"] == "ack" and e["partition"] == 0 and e["offset"] == 2)
    other = next(e for e in events if e["type"] == "ack" and e["partition"] == 0 and e["offset"] == 0)
    extra = {**other, "offset": 2, "t": other["t"] + 0.01}
    events.insert(events.index(ack) + 1, extra)
    only(check(events), "inconsistent-offsets", 1)


def test_duplicate_value_in_the_final_log():
    events = clean()
    final = final_of(events, 0)
    value = final["records"][1][1]
    final["records"].append([final["hw"], value])
    final["hw"] += 1
    for e in events:
        if e["type"] == "replica" and e["partition"] == 0:
            e["batches"].append([final["hw"] - 1, final["hw"] - 1, "sha-dup"])
            e["log_end"] += 1
    only(check(events), "duplicate", 1)


def test_phantom_read():
    events = clean()
    # The consumer read one more record past what is finally there: a read
    # of something later truncated away.
    final = final_of(events, 0)
    events.append(
        {
            "t": 99,
            "type": "poll",
            "consumer": "g",
            "mode": "group",
            "poll": 9,
            "partition": 0,
            "offset": final["hw"],
            "value": "z-0",
        }
    )
    only(check(events), "phantom-read", 1)


def test_nonmonotonic_poll():
    events = clean()
    # The assign() consumer reads offset 2 of partition 0 again, after offset 5.
    again = next(e for e in events if e["type"] == "poll" and e["partition"] == 0 and e["offset"] == 2)
    last = max(i for i, e in enumerate(events) if e["type"] == "poll" and e["partition"] == 0)
    events.insert(last + 1, {**again, "poll": 7, "t": 50})
    only(check(events), "nonmonotonic-poll", 1)


def test_a_group_consumer_may_read_again():
    events = clean()
    again = next(e for e in events if e["type"] == "poll" and e["partition"] == 0 and e["offset"] == 2)
    events.append({**again, "consumer": "g", "mode": "group", "poll": 7, "t": 50})
    events.append({**again, "consumer": "g", "mode": "group", "poll": 8, "t": 51})
    assert check(events).ok


def test_skipping_poll():
    events = clean()
    events = [e for e in events if not (e["type"] == "poll" and e["partition"] == 1 and e["offset"] in (2, 3))]
    only(check(events), "skipping-poll", 1)


def test_a_skip_over_offsets_the_final_log_does_not_hold_is_allowed():
    events = clean()
    # Offsets 2 and 3 of partition 1 are holes in every view (e.g. control records).
    final = final_of(events, 1)
    holes = {2, 3}
    final["records"] = [r for r in final["records"] if r[0] not in holes]
    drop = {
        v for e in events if e["type"] == "ack" and e["partition"] == 1 and e["offset"] in holes for v in [e["value"]]
    }
    events = [
        e
        for e in events
        if not (e["type"] in ("poll", "ack", "send") and e.get("partition") == 1 and e.get("value") in drop)
    ]
    assert check(events).ok, check(events).format()


def test_producer_order_differs_from_offset_order():
    events = clean()
    # Producer a's seq 0 and seq 2 (both to partition 0) swapped places in the log, acks and polls alike.
    swap = {}
    for e in events:
        if e.get("partition") == 0 and e.get("value") in ("a-0", "a-2") and e["type"] in ("ack", "poll"):
            swap.setdefault(e["value"], []).append(e)
    offset = {v: next(e for e in es if e["type"] == "ack")["offset"] for v, es in swap.items()}
    for v, es in swap.items():
        other = "a-2" if v == "a-0" else "a-0"
        for e in es:
            e["offset"] = offset[other]
    final = final_of(events, 0)
    final["records"] = [[o, "a-2" if v == "a-0" else "a-0" if v == "a-2" else v] for o, v in final["records"]]
    # The consumer read partition 0 in offset order, as it is now.
    polls = sorted((e for e in events if e["type"] == "poll" and e["partition"] == 0), key=lambda e: e["offset"])
    events = [e for e in events if not (e["type"] == "poll" and e["partition"] == 0)] + polls
    report = check(events)
    only(report, "order")
    # Both views say it; the pair is counted once.
    assert report.counts["order"] == 1, report.format()


def test_replicas_differ_below_the_high_watermark():
    events = clean()
    replica = next(e for e in events if e["type"] == "replica" and e["partition"] == 1 and e["broker"] == 3)
    replica["batches"][3][2] = "other-bytes"
    only(check(events), "replicas-differ", 1)


def test_a_replica_short_of_the_high_watermark():
    events = clean()
    replica = next(e for e in events if e["type"] == "replica" and e["partition"] == 0 and e["broker"] == 2)
    replica["batches"].pop()
    replica["log_end"] -= 1
    only(check(events), "replicas-differ", 1)


def test_client_reported_truncation():
    events = clean()
    events.append(
        {
            "t": 30,
            "type": "client_error",
            "client": "c",
            "error": "_LOG_TRUNCATION",
            "retriable": False,
            "fatal": False,
            "truncation": True,
            "message": "partition 0 truncated",
        }
    )
    only(check(events), "truncation", 1)


def test_a_definitely_failed_write_in_the_log():
    events = clean()
    ack = next(e for e in events if e["type"] == "ack" and e["value"] == "b-3")
    events.remove(ack)
    events.append(
        {
            "t": ack["t"],
            "type": "fail",
            "producer": "b",
            "value": "b-3",
            "partition": ack["partition"],
            "error": "MSG_SIZE_TOO_LARGE",
            "retriable": False,
            "definite": True,
        }
    )
    report = check(events)
    only(report, "failed-write-visible", 1)
    assert report.non_retriable == 1
    strict = check(events, strict_errors=True)
    assert strict.anomalies == {"failed-write-visible": 1, STRICT: 1}, strict.format()


def test_an_indefinite_failure_in_the_log_is_fine_but_strict_counts_it_if_not_retriable():
    events = clean()
    ack = next(e for e in events if e["type"] == "ack" and e["value"] == "a-1")
    events.remove(ack)
    fail = {**ack, "type": "fail", "error": "_MSG_TIMED_OUT", "retriable": True, "definite": False}
    del fail["offset"]
    events.append(fail)
    assert check(events, strict_errors=True).ok
    fail["retriable"] = False
    only(check(events, strict_errors=True), STRICT, 1)


def test_availability_gaps_and_failover_times():
    events = clean()
    acks = [e for e in events if e["type"] == "ack"]
    # A fault at t=0.42 on the leader of partition 1; every ack after it comes 0.5 s later.
    events.append({"t": 0.42, "type": "fault_start", "id": 1, "kind": "kill-leader", "broker": 2, "partitions": [1]})
    events.append({"t": 0.6, "type": "leader", "partition": 1, "leader": 3, "epoch": 2, "isr": [1, 3]})
    events.append({"t": 1.0, "type": "fault_end", "id": 1, "restarted": True})
    for a in acks:
        if a["t"] > 0.42:
            a["t"] += 0.5
    events.sort(key=lambda e: e["t"])
    report = check(events)
    assert report.ok
    gap = report.longest_gap
    # The last ack before the fault was at 0.35, the first after it at 0.45 + 0.5.
    assert gap is not None and (gap.start, gap.end) == (pytest.approx(0.35), pytest.approx(0.95))
    fault = report.faults[0]
    assert fault.longest_gap.length == pytest.approx(0.6)
    assert fault.failover_leader == {1: pytest.approx(0.18)}
    assert fault.failover_ack == {1: pytest.approx(0.95 - 0.42)}
    assert fault.details == {"restarted": True}
    assert "fault 1 kill-leader broker 2" in report.format()


def test_history_file_round_trip(tmp_path):
    path = tmp_path / "h.jsonl"
    with History(path) as h:
        for e in clean():
            h.record(e["type"], **{k: v for k, v in e.items() if k not in ("t", "type")})
    with open(path, "a") as f:
        f.write('{"t": 1, "type": "ack", "produ')  # the writer died mid-line
    events = read_history(path)
    assert len(events) == len(clean())
    assert check(copy.deepcopy(events)).ok
