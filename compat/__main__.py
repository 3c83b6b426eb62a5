"""python -m compat [--client NAME ...] [--scenario NAME ...] [--timeout S]

Starts a fresh broker, runs every client × scenario (each bounded by a time
limit), and writes MATRIX.md and matrix.json beside this file (or into
--output DIR). Logs (the broker's, and each failing cell's stderr) go to
compat/out/.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pybroker.process import BrokerProcess

from .broker import child_broker, create_topic
from .clients import CLIENTS, HERE, Client, install
from .matrix import write_matrix
from .scenarios import SCENARIOS, Scenario

ROOT = HERE.parent
OUT = HERE / "out"


def run_program(client: Client, bootstrap: str, scenario: str, topic: str, timeout: float) -> tuple[dict, str]:
    """Run one cell; return its verdict and the program's stderr."""
    args = [*client.command, "--bootstrap", bootstrap, "--scenario", scenario, "--topic", topic]
    proc = subprocess.Popen(
        args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the program's own process group, started above
        out, err = proc.communicate()
        return {"result": "fail", "detail": f"timed out after {timeout:g} s"}, err
    for line in reversed(out.splitlines()):
        if line.startswith("{"):
            try:
                verdict = json.loads(line)
            except ValueError:
                continue
            if verdict.get("result") in ("pass", "fail", "n/a"):
                return verdict, err
    first = next((ln for ln in (err or out).splitlines() if ln.strip()), "no output")
    return {"result": "fail", "detail": f"no verdict (exit {proc.returncode}): {first}"}, err


def topic_name(client: Client, scenario: Scenario) -> str:
    if scenario.topic:
        return scenario.topic
    return re.sub(r"[^a-zA-Z0-9._-]", "-", f"{client.folder}-{scenario.name}")


def run_client(
    client: Client, broker: BrokerProcess, scenarios: list[Scenario], timeout: float, created: set
) -> tuple[str, list]:
    why = install(client)
    version = "?"
    if why is None:
        verdict, err = run_program(client, broker.bootstrap, "version", "none", 60)
        if verdict["result"] == "pass":
            version = verdict["detail"]
        else:
            why = f"cannot run: {verdict['detail']}"
    cells = []
    for scenario in scenarios:
        if why is not None:
            cells.append({"scenario": scenario.name, "result": "n/a", "detail": f"client not available: {why}"})
            print(f"  {scenario.name:16} n/a   client not available: {why}", flush=True)
            continue
        if scenario.only and scenario.only != client.name:
            cells.append({"scenario": scenario.name, "result": "n/a", "detail": f"a {scenario.only} flow"})
            continue
        topic = topic_name(client, scenario)
        if scenario.create and topic not in created:
            create_topic(broker.bootstrap, topic, scenario.partitions, scenario.configs)
            created.add(topic)
        started = time.monotonic()
        verdict, err = run_program(client, broker.bootstrap, scenario.name, topic, timeout)
        seconds = round(time.monotonic() - started, 1)
        if not broker.alive():
            verdict = {"result": "fail", "detail": f"the broker died; see {broker.log_path}"}
            broker.start()
        if verdict["result"] == "fail":
            (OUT / f"{topic}.stderr.txt").write_text(err or "")
        cell = {"scenario": scenario.name, "result": verdict["result"], "detail": verdict.get("detail", "")}
        cells.append({**cell, "seconds": seconds})
        print(f"  {scenario.name:16} {verdict['result']:5} {seconds:5}s {cell['detail'][:100]}", flush=True)
    return version, cells


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m compat", description=__doc__.splitlines()[2])
    parser.add_argument("--client", action="append", help="only these clients (repeatable)")
    parser.add_argument("--scenario", action="append", help="only these scenarios (repeatable)")
    parser.add_argument("--timeout", type=float, default=60, help="seconds per cell (default 60)")
    parser.add_argument(
        "--output", type=Path, default=HERE, help="write MATRIX.md and matrix.json here (default: compat/, committed)"
    )
    args = parser.parse_args()
    clients = [c for c in CLIENTS if not args.client or c.name in args.client or c.folder in args.client]
    scenarios = [s for s in SCENARIOS if not args.scenario or s.name in args.scenario]
    OUT.mkdir(exist_ok=True)
    for old in OUT.glob("*.stderr.txt"):
        old.unlink()
    data = Path(tempfile.mkdtemp(prefix="pybroker-compat-"))
    broker = child_broker(data / "data", OUT / "broker.log")
    broker.start()
    print(f"broker on {broker.bootstrap}, log in {broker.log_path}", flush=True)
    results = []
    created: set[str] = set()
    try:
        for client in clients:
            print(f"{client.name}:", flush=True)
            version, cells = run_client(client, broker, scenarios, args.timeout, created)
            results.append({"client": client.name, "version": version, "cells": cells})
    finally:
        broker.stop()
        shutil.rmtree(data, ignore_errors=True)
    args.output.mkdir(parents=True, exist_ok=True)
    write_matrix(results, scenarios, args.output / "MATRIX.md", args.output / "matrix.json")
    failed = sum(c["result"] == "fail" for r in results for c in r["cells"])
    print(f"wrote {args.output / 'MATRIX.md'}: {failed} failing cell(s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
