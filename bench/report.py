"""Tables: one per workload, brokers as rows, with the ratio of pybroker to
each peer on the workload's headline figure and to the physical baseline.
A broker's flags (lost messages, ignored limits, failures) follow its
table and mark its row."""

from __future__ import annotations

from dataclasses import asdict

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
        f"Generated by `python -m bench{' --quick' if plan.quick else ''}` on {meta['date']} in {meta['seconds'] / 60:.1f} min. "
        "Every broker ran alone, one after the other, on the same machine, started fresh on a loopback port.",
        "",
        f"- Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB memory, Linux {m['kernel']}, Python {m['python']}",
    ]
    for name, version in meta["versions"].items():
        lines.append(f"- {name}: {version}")
    if plan.quick:
        lines += ["", "**Quick mode: a smoke run with small counts. These figures measure nothing.**"]
    lines.append("")
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
        f"| file, sequential 1 MiB reads (page cache) | {_num(physical.get('read_cached'), 1)} |",
        "",
    ]
    return "\n".join(lines)


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
