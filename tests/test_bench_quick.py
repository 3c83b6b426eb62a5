"""The benchmark harness, in --quick mode, as a smoke test: it installs the
peers, runs every workload against all three brokers and writes its
tables. Speed is never asserted here; what must hold is that every workload
ran, and that pybroker was flagged for nothing (no lost, duplicated or
unaccounted message, no workload that failed) — the harness's exit code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORKLOADS = [
    "memory",
    "produce-1k-acks1",
    "produce-1k-acksall",
    "produce-100b-acks1",
    "produce-100b-acksall",
    "consume-1k",
    "consume-100b",
    "latency-1k-acks1",
    "latency-10k-acks1",
    "partitions-1000",
    "connections-200",
    "startup-1000",
]


def test_quick_benchmark_runs_every_workload_on_every_broker(tmp_path):
    out = tmp_path / "RESULTS.md"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--dir", str(tmp_path / "work"), "--output", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    text = out.read_text()
    sections = {}
    for block in text.split("\n## ")[1:]:
        title, _, body = block.partition("\n")
        sections[title.strip()] = body
    for workload in WORKLOADS:
        assert workload in sections, f"no table for {workload}"
        rows = [line for line in sections[workload].splitlines() if line.startswith("| ")]
        names = {row.split("|")[1].strip().rstrip(" ⚠") for row in rows[1:]}
        assert {"pybroker", "tansu", "noida-db"} <= names, (workload, names)
        py = next(row for row in rows if row.split("|")[1].strip().startswith("pybroker"))
        assert "⚠" not in py, sections[workload]
    assert "loopback TCP, 1 MiB writes" in sections["baseline"]


def test_quick_benchmark_runs_produce_consume_and_replication_on_a_cluster(tmp_path):
    """pybroker-cluster: three brokers and ZooKeeper (bench.cluster), the
    load generator bootstrapped with all three, the raw Fetch client asking
    each partition of its leader, and the replication workloads (topics
    with min.insync.replicas=2, acks=all) measured, not refused; its exit
    code says no message was lost and every high watermark, asked of its
    leader, agreed."""
    text = run_quick(tmp_path, "bench", "--brokers", "pybroker-cluster", "--workloads", "produce,consume,replication")
    measured = ["produce-1k-acks1", "produce-100b-acksall", "consume-1k", "fetch-1k"]
    measured += ["produce-1k-isr2-acksall", "consume-1k-isr2-cached", "latency-10k-isr2-acksall"]
    for workload in ["memory", *measured]:
        section = section_of(text, workload)
        rows = [line for line in section.splitlines() if line.startswith("| ")]
        assert [row.split("|")[1].strip() for row in rows[1:]] == ["pybroker-cluster"], section
        assert "summed" in section, section
        assert "n/a" not in section, section
        # Measured: the first figure is a number, not "–".
        assert rows[1].split("|")[2].strip()[0].isdigit(), section
    summary = section_of(text, "replication")
    for case in ("(c) cluster RF 3, acks=all, min.insync.replicas=2", "(d) as (c), write.caching=true"):
        row = next(line for line in summary.splitlines() if line.startswith(f"| {case} |"))
        assert row.split("|")[2].strip()[0].isdigit(), summary
    # What the machine's fsynced writes allow (c), from the baseline's three writers.
    assert "The disk's ceiling for (c)" in summary, summary
    assert "three writers at once, each fsyncing every 1 MiB write" in section_of(text, "baseline")


def test_quick_tls_benchmark_measures_every_listener(tmp_path):
    """bench.tls: one broker with PLAINTEXT, SSL and SASL_SSL listeners,
    every case on each (the raw fetch on the first two); its exit code says
    every message was acknowledged and read back once."""
    text = run_quick(tmp_path, "bench.tls")
    for case in ("produce-1k-acks1", "produce-1k-acksall", "consume-1k", "fetch-1k"):
        section = section_of(text, case)
        rows = [line.split("|") for line in section.splitlines() if line.startswith("| ")][1:]
        listeners = ["PLAINTEXT", "SSL"] + ([] if case == "fetch-1k" else ["SASL_SSL"])
        assert [row[1].strip() for row in rows] == listeners, section
        for row in rows:
            assert row[2].strip()[0].isdigit() and row[3].strip()[0].isdigit(), section
        assert all(row[6].strip().endswith("×") for row in rows[1:]), section


def run_quick(tmp_path, module: str, *args: str) -> str:
    """``python -m <module> --quick``: its exit code must be 0; returns the Markdown it wrote."""
    out = tmp_path / "RESULTS.md"
    proc = subprocess.run(
        [sys.executable, "-m", module, "--quick", *args, "--dir", str(tmp_path / "work"), "--output", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out.read_text()


def section_of(text: str, title: str) -> str:
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
