"""Tables: one per workload, brokers as rows, with the ratio of pybroker to
each peer on the workload's headline figure and to the physical baseline.
A broker's flags (lost messages, ignored limits, failures) follow its
table and mark its row."""

from __future__ import annotations

from dataclasses import asdict

from .cluster import NAME as CLUSTER

MIB = 1024 * 1024


def _num(v, digits=0):
    if v is None:
        return "–"
    return f"{v:,.{digits}f}"


def _mib(v):
    return "–" if not v else f"{v / MIB:,.0f} MiB"


def _ms(v):
    return "–" if v is None else f"{v:.2f}"


def _s(v):
    return "–" if v is None else f"{v:.2f}"


# workload prefix -> (columns, headline key, higher is better, what the ratio means)
THROUGHPUT = [
    ("msg_s", "msg/s", _num),
    ("mb_s", "MB/s", lambda v: _num(v, 1)),
    ("cpu_s", "broker CPU s", _s),
    ("peak_rss", "peak RSS", _mib),
]
SPECS = {
    "produce": (THROUGHPUT, "mb_s", True),
    "consume": (THROUGHPUT + [("join_s", "group join s", _s)], "mb_s", True),
    "txn": (
        [
            ("msg_s", "msg/s", _num),
            ("vs_plain", "× plain acks=all", lambda v: "–" if v is None else f"{v:.2f}×"),
            ("commit_p50", "commit p50 ms", _ms),
            ("commit_p99", "commit p99 ms", _ms),
            ("cpu_s", "broker CPU s", _s),
            ("peak_rss", "peak RSS", _mib),
        ],
        "msg_s",
        True,
    ),
    "fetch": (
        [
            ("msg_s", "records/s", _num),
            ("mb_s", "MB/s", lambda v: _num(v, 1)),
            ("fetch_mb", "MB per Fetch", lambda v: _num(v, 2)),
            ("cpu_s", "broker CPU s per pass", _s),
            ("peak_rss", "peak RSS", _mib),
        ],
        "mb_s",
        True,
    ),
    "latency": (
        [
            ("p50", "p50 ms", _ms),
            ("p99", "p99 ms", _ms),
            ("p999", "p99.9 ms", _ms),
            ("cpu_s", "broker CPU s", _s),
            ("peak_rss", "peak RSS", _mib),
        ],
        "p99",
        False,
    ),
    "partitions": (
        [
            ("create_s", "create s", _s),
            ("produce_msg_s", "produce msg/s", _num),
            ("consume_msg_s", "consume msg/s", _num),
            ("join_s", "group join s", _s),
            ("cpu_s", "broker CPU s", _s),
            ("peak_rss", "peak RSS", _mib),
        ],
        "produce_msg_s",
        True,
    ),
    "connections": (
        [
            ("req_s", "requests/s", _num),
            ("msg_s", "msg/s", _num),
            ("p50", "p50 ms", _ms),
            ("p99", "p99 ms", _ms),
            ("cpu_s", "broker CPU s", _s),
            ("peak_rss", "peak RSS", _mib),
        ],
        "req_s",
        True,
    ),
    "startup": (
        [
            ("partitions", "partitions", _num),
            ("answer_s", "answers after s", _s),
            ("ready_s", "all partitions after s", _s),
            ("idle_rss", "RSS after start", _mib),
        ],
        "ready_s",
        False,
    ),
    "memory": (
        [
            ("start_s", "start s", _s),
            ("idle_rss", "idle RSS", _mib),
            ("load_rss", "peak RSS under load", _mib),
            ("rss_after", "RSS after the workloads", _mib),
        ],
        "load_rss",
        False,
    ),
}

ABOUT = {
    "produce": "{producers} librdkafka producer processes at once, 1 topic × 6 partitions, linger.ms=5, no compression; "
    "median of {repeats} run(s); MB/s counts value bytes acknowledged.",
    "txn": "Transactional produce: {producers} librdkafka producer processes at once, each with its own "
    "transactional id, 1 KiB messages to 1 topic × 6 partitions, a transaction per N messages (the case's number), "
    "linger.ms=5; msg/s counts committed messages, compared with the same broker's plain acks=all produce of this "
    "run; commit ms is commit_transaction's time (the transaction's last messages flushed, then EndTxn), p50 the "
    "median and p99 the worst of the producers'. Median of {repeats} run(s).",
    "consume": "One group consumer (librdkafka defaults: up to 1 MiB per partition per fetch) reads the acks=1 "
    "topic above from the beginning; timed from the first message to the last, after the group join.",
    "fetch": "The broker's side of consuming, without a client library's per-message work: one connection sends "
    "Fetch requests back to back (up to 1 MiB per partition, 50 MiB per response: librdkafka's and the Java "
    "consumer's defaults) for all 6 partitions of the 1 KiB acks=1 topic, from offset 0 to the end; the record "
    "batches are counted from their headers and checked for gaps, not decoded. Median of {repeats} passes; MB/s "
    "counts response bytes, as the loopback baseline counts bytes.",
    "latency": "One producer paced at the given rate (1 KiB, linger.ms=1 as in the OpenMessaging Benchmark's Kafka driver), one consumer assigned to every partition; "
    "producer send time (in the value) to consumer receipt, {latency_seconds:g} s per case. Lower is better: the "
    "ratio is the peer's p99 over pybroker's.",
    "partitions": "A {wide_partitions}-partition topic: {producers} producers × {wide_count} × 1 KiB messages each to a "
    "random partition (acks=1), then one group consumer reads all of it.",
    "connections": "{storm_connections} connections at once, each producing a 10-record batch of 100 B values (acks=1) "
    "to its own partition of the wide topic, back to back, for {storm_seconds:g} s.",
    "startup": "{startup_topics} topics × {startup_partitions_each} partitions, one record each, graceful stop, restart: "
    "seconds until ApiVersions is answered and until Metadata shows every partition. Lower is better.",
    "memory": "Resident memory of the broker process: right after start, the peak while any workload ran, and after them.",
}


def _kind(workload: str) -> str:
    return workload.split("-", 1)[0]


def _ratio(py, peer, higher_better: bool):
    if not py or not peer:
        return "–"
    return f"{(py / peer if higher_better else peer / py):.2f}×"


def render(results: dict, physical: dict, meta: dict, brokers: list[str]) -> str:
    plan = meta["plan"]
    m = meta["machine"]
    lines = [
        "# pybroker benchmarks",
        "",
        (
            f"Generated by `{meta.get('command') or 'python -m bench'}` on {meta['date']} in {meta['seconds'] / 60:.1f} min. "
            "Every broker ran alone, one after the other, on the same machine, started fresh on a loopback port."
        ),
        "",
        f"- Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB memory, Linux {m['kernel']}, Python {m['python']}",
    ]
    if "load" in m:
        lines.append(f"- Load average (1 min) when the run started: {m['load']:.2f}")
    for name, version in meta["versions"].items():
        lines.append(f"- {name}: {version}")
    if plan.quick:
        lines += ["", "**Quick mode: a smoke run with small counts. These figures measure nothing.**"]
    lines.append("")
    lines += replication_summary(results, plan, physical)
    py = "pybroker" if "pybroker" in brokers else brokers[0]
    order = list(results)
    for workload in order:
        kind = _kind(workload)
        if kind not in SPECS:
            continue
        columns, headline, higher = SPECS[kind]
        rows = results[workload]
        lines += [f"## {workload}", "", ABOUT[kind].format(**asdict(plan)), ""]
        header = ["broker", *(h for _, h, _ in columns), f"{py} / this"]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        notes = []
        for name in brokers:
            figures = rows.get(name)
            if figures is None:
                continue
            flags = figures.get("flags") or []
            mark = " ⚠" if flags else ""
            cells = [name + mark] + [fmt(figures.get(key)) for key, _, fmt in columns]
            ratio = "" if name == py else _ratio(rows.get(py, {}).get(headline), figures.get(headline), higher)
            lines.append("| " + " | ".join(cells + [ratio]) + " |")
            notes += [f"- ⚠ {name}: {flag}" for flag in flags]
            notes += [f"- note, {name}: {note}" for note in figures.get("notes") or []]
        base = _baseline_ratio(workload, rows.get(py, {}), physical)
        if base:
            lines += ["", base]
        if notes:
            lines += [""] + notes
        lines.append("")
    lines += [
        "## baseline",
        "",
        "The machine with no broker in the way, measured in the same run (see bench/baseline.py).",
        "",
        "| what | MB/s |",
        "|---|---|",
        f"| loopback TCP, 1 KiB writes | {_num(physical.get('loopback_1024'), 1)} |",
        f"| loopback TCP, 64 KiB writes | {_num(physical.get('loopback_65536'), 1)} |",
        f"| loopback TCP, 1 MiB writes | {_num(physical.get('loopback_1048576'), 1)} |",
        f"| file, sequential 1 MiB writes (page cache) | {_num(physical.get('write_cached'), 1)} |",
        f"| file, sequential 1 MiB writes + fsync | {_num(physical.get('write_fsync'), 1)} |",
        f"| files, three writers at once, each fsyncing every 1 MiB write | {_num(physical.get('fsync_writers_3'), 1)} |",
        f"| file, sequential 1 MiB reads (page cache) | {_num(physical.get('read_cached'), 1)} |",
        "",
        (
            f"The three fsyncing writers spent {_num(physical.get('fsync_cpu_ms_per_mb'), 2)} ms of CPU (user and "
            "system, the fsync's writeback included) per MB they wrote."
        ),
        "",
    ]
    return "\n".join(lines)


def _summary_rows(rate: int) -> list[tuple]:
    """(case, broker, produce workload, consume workload, latency workload)"""
    k = f"{rate // 1000}k"
    return [
        ("(a) single node, acks=1", "pybroker", "produce-1k-acks1", "consume-1k", f"latency-{k}-acks1"),
        ("single node, acks=all", "pybroker", "produce-1k-acksall", None, f"latency-{k}-acksall"),
        ("(b) cluster RF 3, acks=1", CLUSTER, "produce-1k-acks1", "consume-1k", f"latency-{k}-acks1"),
        (
            "(c) cluster RF 3, acks=all, min.insync.replicas=2",
            CLUSTER,
            "produce-1k-isr2-acksall",
            "consume-1k-isr2",
            f"latency-{k}-isr2-acksall",
        ),
        (
            "(d) as (c), write.caching=true",
            CLUSTER,
            "produce-1k-isr2-cached-acksall",
            "consume-1k-isr2-cached",
            f"latency-{k}-isr2-cached-acksall",
        ),
    ]


def _cell(figures: dict | None, key: str, fmt) -> str:
    if figures is None:
        return "–"
    flags = figures.get("flags") or []
    if any(f.startswith("refused") for f in flags):
        return "refused"
    if any(f.startswith("failed") for f in flags):
        return "failed"
    if any(n.startswith("n/a") for n in figures.get("notes") or []):
        return "n/a"
    value = figures.get(key)
    return fmt(value) + (" ⚠" if flags and value is not None else "")


def replication_summary(results: dict, plan, physical: dict | None = None) -> list[str]:
    """Replication's figures in one table (python -m bench --cluster): the
    single node beside the three-broker cluster, from the workload tables
    below, the issue's goals checked against them, and the ceiling the
    machine's fsynced writes put on (c). Nothing when the cluster did not
    run the replication workloads."""
    if CLUSTER not in results.get("produce-1k-isr2-acksall", {}):
        return []
    rate = plan.replication_latency_rates[0]
    rows = _summary_rows(rate)

    def get(workload, broker):
        return results.get(workload, {}).get(broker) if workload else None

    base = (get("produce-1k-acks1", "pybroker") or {}).get("msg_s")
    lines = [
        "## replication",
        "",
        (
            "Replication's figures from the tables below: 1 KiB messages, 6 partitions; produce as in produce-*, "
            "consume as in consume-* (the group consumer reads the case's topic), end-to-end latency as in "
            f"latency-* at {rate:,} msg/s. The cluster is three brokers on this one machine, every partition with "
            "three replicas; acks=all waits for every in-sync replica, and unless write.caching=true the high "
            "watermark counts only what leader and followers have fsynced (the durable high watermark)."
        ),
        "",
        f"| case | produce msg/s | produce MB/s | produce / (a) | consume msg/s | e2e p50 ms at {rate // 1000}k/s | e2e p99 ms at {rate // 1000}k/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for case, broker, produce, consume, latency in rows:
        p, c, l = get(produce, broker), get(consume, broker), get(latency, broker)
        ratio = (p or {}).get("msg_s")
        lines.append(
            "| "
            + " | ".join(
                [
                    case,
                    _cell(p, "msg_s", _num),
                    _cell(p, "mb_s", lambda v: _num(v, 1)),
                    f"{ratio / base:.2f}×" if ratio and base else "–",
                    _cell(c, "msg_s", _num) if consume else "–",
                    _cell(l, "p50", _ms),
                    _cell(l, "p99", _ms),
                ]
            )
            + " |"
        )
    lines.append("")
    lines += [f"- {goal}" for goal in _goals(results, rows, base, rate)]
    ceiling = _fsync_ceiling(get(rows[3][2], rows[3][1]), physical or {}, base)
    if ceiling:
        lines.append(f"- {ceiling}")
    for case, broker, *workloads in rows:
        for w in workloads:
            for flag in (get(w, broker) or {}).get("flags") or []:
                lines.append(f"- ⚠ {case}, {w}: {flag}")
    lines.append("")
    return lines


def _fsync_ceiling(durable: dict | None, physical: dict, base: float | None) -> str:
    """What the baseline's three fsyncing writers allow (c): its three
    replicas each write every value byte and fsync it before it counts."""
    writers_mb_s = physical.get("fsync_writers_3")
    if not durable or durable.get("flags") or not durable.get("mb_s") or not writers_mb_s:
        return ""
    written = 3 * durable["mb_s"]
    most = writers_mb_s * 1e6 / 3 / 1024  # 1 KiB values, three copies; record headers not counted
    of_a = f", {most / base:.2f}× (a)," if base else ""
    text = (
        f"The disk's ceiling for (c): its three replicas wrote {written:,.0f} MB/s of values, each fsynced before it "
        f"counted. With no broker running, three processes fsyncing every 1 MiB write manage {writers_mb_s:,.0f} MB/s "
        f"on this machine (baseline), so (c) can produce at most about {most:,.0f} msg/s here{of_a} before any broker "
        f"work; (c) reached {written / writers_mb_s:.0%} of that."
    )
    cpu = physical.get("fsync_cpu_ms_per_mb")
    if cpu and base:
        needed = 3 * 0.5 * base * 1024 / 1e6  # MB/s of values the three replicas write at 0.5 × (a)
        text += (
            f" Those writers spent {cpu:.2f} ms of CPU per MB written and fsynced, so 0.5 × (a) ({needed:,.0f} MB/s "
            f"across the three replicas) needs {needed * cpu / 1000:.2f} cores for that alone, beside the brokers and "
            "the producers."
        )
    return text


def _goals(results: dict, rows: list[tuple], base, rate: int) -> list[str]:
    def fig(row: int, column: int, key: str):
        _, broker, *workloads = rows[row]
        figures = results.get(workloads[column], {}).get(broker) or {}
        return None if figures.get("flags") else figures.get(key)

    out = []
    replicated = fig(3, 0, "msg_s")
    if replicated and base:
        ratio = replicated / base
        verdict = "met" if ratio >= 0.5 else "not met"
        out.append(f"Goal, (c) ≥ 0.5 × (a) produce throughput: {ratio:.2f}×, {verdict}.")
    else:
        out.append("Goal, (c) ≥ 0.5 × (a) produce throughput: not measured (see the flags).")
    for row, what in ((1, "single node acks=all"), (3, "cluster acks=all (c)")):
        p99 = fig(row, 2, "p99")
        if p99 is None:
            out.append(f"Goal, p99 end-to-end ≤ 10 ms at {rate:,} msg/s, {what}: not measured.")
        else:
            verdict = "met" if p99 <= 10 else "not met"
            out.append(f"Goal, p99 end-to-end ≤ 10 ms at {rate:,} msg/s, {what}: {p99:.2f} ms, {verdict}.")
    durable, cached = fig(3, 0, "msg_s"), fig(4, 0, "msg_s")
    d99, c99 = fig(3, 2, "p99"), fig(4, 2, "p99")
    if durable and cached:
        latency = f"; p99 {d99:.2f} ms durable against {c99:.2f} ms cached" if d99 and c99 else ""
        out.append(
            f"The durable high watermark's cost: (c) produces at {durable / cached:.2f}× the rate of (d){latency}."
        )
    return out


def _baseline_ratio(workload: str, figures: dict, physical: dict) -> str:
    mb = figures.get("mb_s")
    if not mb:
        return ""
    if workload.startswith("produce"):
        net = physical.get("loopback_65536")
        disk = physical.get("write_cached")
        return (
            f"pybroker / baseline: {mb / net:.2f}× loopback TCP at 64 KiB writes, "
            f"{mb / disk:.2f}× sequential file writes."
        )
    if workload.startswith(("consume", "fetch")):
        net = physical.get("loopback_1048576")
        return f"pybroker / baseline: {mb / net:.2f}× loopback TCP at 1 MiB writes (the fetch size)."
    return ""


def failures(results: dict) -> list[str]:
    """Workloads that did not run at all, on any broker."""
    return [
        f"{workload} / {name}: {flag}"
        for workload, rows in results.items()
        for name, figures in rows.items()
        for flag in figures.get("flags") or []
        if flag.startswith("failed:")
    ]


def flagged(results: dict, brokers: list[str]) -> list[str]:
    """Every flag raised on the given brokers."""
    return [
        f"{workload} / {name}: {flag}"
        for workload, rows in results.items()
        for name, figures in rows.items()
        if name in brokers
        for flag in figures.get("flags") or []
    ]
