"""pybroker beside Tansu and noida-db: the same workloads, the same load
generator, the same machine, the same run.

    python -m bench [--quick] [--brokers pybroker,tansu,noida-db,pybroker-cluster,pybroker-metrics]
                    [--workloads produce,consume,...,replication]
                    [--pybroker-src DIR] [--output FILE] [--dir DIR]
    python -m bench --cluster [--quick]

Each broker starts fresh on a free loopback port with an empty data
directory, goes through every workload (bench.workloads), and is stopped
by its PID; then the physical baseline is measured. One table per workload
is printed and written to ``bench/RESULTS.md`` (``--quick``: a smoke run
with small counts, written beside its data unless ``--output`` says
otherwise). ``--pybroker-src`` adds another pybroker source tree as one
more broker, for before/after comparisons of a change. ``pybroker-cluster``
(bench.cluster, not run unless asked for) is three pybroker brokers and
ZooKeeper measured as one broker. ``pybroker-metrics`` (bench.metrics, not
run unless asked for) is pybroker with its Prometheus endpoint on, scraped
during the run and checked against what the load generator acknowledged:
the metrics' cost, beside plain pybroker.

``--cluster`` is replication's run: the single node beside the cluster,
produce, consume and latency plus the ``replication`` workloads (topics
with min.insync.replicas=2, with and without write.caching=true, acks=all;
bench.workloads.REPLICATION_CASES), summed up in one table at the top
(report.replication_summary); a full one writes ``bench/RESULTS-cluster.md``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from . import baseline, report
from .brokers import REPO, BrokerProcess, noida_kind, pybroker_kind, tansu_kind
from .cluster import NAME as CLUSTER
from .cluster import ClusterBrokers, cluster_kind
from .metrics import NAME as WITH_METRICS
from .metrics import Scraper, metrics_kind
from .peers import PeersUnavailable, ensure_peers
from .workloads import FULL, PRODUCE_CASES, QUICK, REPLICATION_CASES, Run, startup

DEFAULT_BROKERS = ("pybroker", "tansu", "noida-db")
ALL_BROKERS = (*DEFAULT_BROKERS, CLUSTER, WITH_METRICS)


WORKLOADS = ("produce", "consume", "latency", "partitions", "connections", "startup")
# Asked for by name only (or by --cluster): not part of the default run.
EXTRA_WORKLOADS = ("replication", "transactions")
CLUSTER_PRESET = {
    "brokers": ("pybroker", CLUSTER),
    "workloads": ("produce", "consume", "latency", "replication", "transactions"),
}
TXN_SIZES = (100, 1000)  # messages per transaction


def run_broker(kind, plan, workdir: Path, results: dict, progress, groups=WORKLOADS) -> None:
    name = kind.name
    data = workdir / f"{name}-data"
    broker = ClusterBrokers(kind, data) if kind.brokers > 1 else BrokerProcess(kind, data)
    notes = [kind.note] if kind.note else []

    def record(workload: str, fn, *args, why: str | None = None) -> None:
        why = why or kind.not_applicable.get(workload.split("-", 1)[0])
        if why:
            results.setdefault(workload, {})[name] = {"flags": [], "notes": [*notes, f"n/a: {why}"]}
            return
        progress(f"{name}: {workload}")
        t = time.monotonic()
        try:
            figures = fn(*args)
        except Exception as exc:  # one failed workload must not hide the others
            traceback.print_exc()
            figures = {"flags": [f"failed: {type(exc).__name__}: {exc}"]}
        figures["wall_s"] = time.monotonic() - t
        figures["notes"] = notes + figures.get("notes", [])
        results.setdefault(workload, {})[name] = figures

    scraper = None
    try:
        start_s = broker.start()
        idle = broker.rss_bytes()
        results.setdefault("memory", {})[name] = {"start_s": start_s, "idle_rss": idle, "flags": [], "notes": notes}
        if kind.metrics_url:
            scraper = Scraper(kind.metrics_url).start()
        run = Run(broker, plan, workdir)
        # The consume workload reads what the produce workload wrote.
        if "produce" in groups or "consume" in groups:
            for label, size, acks in PRODUCE_CASES:
                record(f"produce-{label}-acks{acks}", run.produce, label, size, acks)
        if "consume" in groups:
            for label in ("1k", "100b"):
                record(f"consume-{label}", run.consume, label)
            record("fetch-1k", run.fetch, "1k")
        if "latency" in groups:
            for rate, acks in plan.latency_cases:
                record(f"latency-{rate // 1000}k-acks{acks}", run.latency, rate, acks)
        if "replication" in groups:
            single = None if kind.brokers > 1 else "one broker holds one replica, below min.insync.replicas=2"
            for d in REPLICATION_CASES:
                record(f"produce-1k-{d.name}-acksall", run.produce, "1k", 1024, "all", d, why=single)
                record(f"consume-1k-{d.name}", run.consume, f"1k-{d.name}", why=single)
            for rate in plan.replication_latency_rates:
                for d in REPLICATION_CASES:
                    record(f"latency-{rate // 1000}k-{d.name}-acksall", run.latency, rate, "all", d, why=single)
        if "transactions" in groups:
            for per_txn in TXN_SIZES:
                record(f"txn-{per_txn}", run.transactions, per_txn)
                plain = results.get("produce-1k-acksall", {}).get(name, {}).get("msg_s")
                figures = results.get(f"txn-{per_txn}", {}).get(name, {})
                if plain and figures.get("msg_s"):
                    figures["vs_plain"] = figures["msg_s"] / plain
        if "partitions" in groups:
            record(f"partitions-{plan.wide_partitions}", run.wide)
        if "connections" in groups:
            record(f"connections-{plan.storm_connections}", run.storm)
        peaks = [w[name]["peak_rss"] for w in results.values() if name in w and w[name].get("peak_rss")]
        results["memory"][name]["load_rss"] = max(peaks) if peaks else None
        results["memory"][name]["rss_after"] = broker.rss_bytes()
        if scraper is not None:
            results["memory"][name]["notes"] = [*notes, scraper.stop()]
            scraper = None
    except Exception as exc:
        traceback.print_exc()
        results.setdefault("memory", {}).setdefault(name, {"flags": []})["flags"].append(f"failed: {exc}")
    finally:
        if scraper is not None:
            scraper.stop()
        broker.stop()
    if "startup" not in groups:
        pass
    elif "startup" in kind.not_applicable:
        record(f"startup-{plan.startup_topics * plan.startup_partitions_each}", None)
    elif kind.persistent:
        # Its own fresh broker: the start-up time is about the partitions on
        # disk, not what the workloads above left behind.
        shutil.rmtree(data, ignore_errors=True)
        fresh = BrokerProcess(kind, workdir / f"{name}-startup")
        try:
            fresh.start()
            record(f"startup-{plan.startup_topics * plan.startup_partitions_each}", startup, fresh, plan, workdir)
        except Exception as exc:
            results.setdefault("startup", {})[name] = {"flags": [f"failed: {exc}"]}
        finally:
            fresh.stop()
            shutil.rmtree(fresh.data_dir, ignore_errors=True)
    else:
        key = f"startup-{plan.startup_topics * plan.startup_partitions_each}"
        results.setdefault(key, {})[name] = {"flags": ["n/a: memory-only storage keeps nothing across a restart"]}
    shutil.rmtree(data, ignore_errors=True)


def machine() -> dict:
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(mem / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        # Other work on the machine shows in every figure: said, not hidden.
        "load": os.getloadavg()[0],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small counts: a smoke run, not a measurement")
    ap.add_argument(
        "--cluster",
        action="store_true",
        help="replication's run: --brokers "
        + ",".join(CLUSTER_PRESET["brokers"])
        + " --workloads "
        + ",".join(CLUSTER_PRESET["workloads"])
        + "; a full one writes bench/RESULTS-cluster.md",
    )
    ap.add_argument("--brokers", help="comma-separated, from: " + ", ".join(ALL_BROKERS))
    ap.add_argument("--pybroker-src", action="append", default=[], help="another pybroker source tree to measure")
    ap.add_argument("--output", help="where to write the Markdown tables")
    ap.add_argument("--dir", help="working directory for data and logs (default: a new temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the working directory")
    ap.add_argument(
        "--workloads",
        help="comma-separated, from: "
        + ", ".join(WORKLOADS + EXTRA_WORKLOADS)
        + " (consume also runs produce; replication needs a cluster); default: all but "
        + ", ".join(EXTRA_WORKLOADS)
        + "; only a full run writes bench/RESULTS.md",
    )
    args = ap.parse_args(argv)
    plan = QUICK if args.quick else FULL
    preset = CLUSTER_PRESET if args.cluster else {"brokers": DEFAULT_BROKERS, "workloads": WORKLOADS}
    wanted = [b.strip() for b in (args.brokers or ",".join(preset["brokers"])).split(",") if b.strip()]
    unknown = set(wanted) - set(ALL_BROKERS)
    if unknown:
        ap.error(f"unknown brokers {sorted(unknown)}")
    groups = [w.strip() for w in (args.workloads or ",".join(preset["workloads"])).split(",") if w.strip()]
    if set(groups) - set(WORKLOADS + EXTRA_WORKLOADS):
        ap.error(f"unknown workloads {sorted(set(groups) - set(WORKLOADS + EXTRA_WORKLOADS))}")
    command = " ".join(
        ["python -m bench"]
        + (["--quick"] if args.quick else [])
        + (["--cluster"] if args.cluster else [])
        + ([f"--brokers {args.brokers}"] if args.brokers else [])
        + ([f"--workloads {args.workloads}"] if args.workloads else [])
    )

    kinds = []
    versions = {}
    if "pybroker" in wanted:
        kinds.append(pybroker_kind())
    kinds += [pybroker_kind(Path(src)) for src in args.pybroker_src]
    if WITH_METRICS in wanted:
        kinds.append(metrics_kind(pybroker_kind))
    if CLUSTER in wanted:
        kinds.append(cluster_kind())
    if {"tansu", "noida-db"} & set(wanted):
        try:
            peers = ensure_peers()
        except PeersUnavailable as exc:
            print(f"peers unavailable: {exc}", file=sys.stderr)
            return 2
        if "tansu" in wanted:
            kinds.append(tansu_kind(peers))
        if "noida-db" in wanted:
            kinds.append(noida_kind(peers))
    import confluent_kafka

    for kind in kinds:
        versions[kind.name] = kind.version
    versions["load generator"] = (
        f"confluent-kafka {confluent_kafka.version()[0]} (librdkafka {confluent_kafka.libversion()[0]})"
    )

    machine_before = machine()
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="pybroker-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    def progress(msg: str) -> None:
        print(f"[{time.monotonic() - started:7.1f}s] {msg}", file=sys.stderr, flush=True)

    results: dict = {}
    try:
        for kind in kinds:
            run_broker(kind, plan, base, results, progress, groups)
        progress("baseline")
        physical = baseline.measure(base, plan.quick)
    finally:
        if not args.keep:
            for child in base.glob("*-data"):
                shutil.rmtree(child, ignore_errors=True)

    meta = {
        "date": datetime.date.today().isoformat(),
        "machine": machine_before,
        "versions": versions,
        "plan": plan,
        "seconds": time.monotonic() - started,
        "command": command,
    }
    text = report.render(results, physical, meta, [k.name for k in kinds])
    print(text)
    if args.output:
        out = Path(args.output)
    elif plan.quick:
        out = base / "RESULTS-quick.md"
    elif args.cluster and not (args.brokers or args.workloads):
        out = REPO / "bench" / "RESULTS-cluster.md"
    elif set(groups) != set(WORKLOADS):
        out = base / "RESULTS-partial.md"
    else:
        out = REPO / "bench" / "RESULTS.md"
    out.write_text(text)
    print(f"written to {out}", file=sys.stderr)
    for problem in report.failures(results):
        print(f"did not run: {problem}", file=sys.stderr)
    # Peers' flags are their results; any flag on pybroker (a lost message,
    # a workload that did not run) fails the run.
    ours = report.flagged(results, [k.name for k in kinds if k.name.startswith("pybroker")])
    for problem in ours:
        print(f"pybroker problem: {problem}", file=sys.stderr)
    return 1 if ours else 0


if __name__ == "__main__":
    sys.exit(main())
