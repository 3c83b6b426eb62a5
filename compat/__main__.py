"""python -m compat [--client NAME ...] [--scenario NAME ...] [--setup single|cluster ...] [--mode NAME ...] [--timeout S]

Runs every client × scenario (each bounded by a time limit) against each
setup: a fresh single broker, and a fresh local cluster (ZooKeeper and
three brokers; each client bootstrapped from one broker only), then a few
scenarios in each security mode (security.py) over the brokers' secured
listeners, and writes MATRIX.md and matrix.json beside this file (or into
--output DIR). Logs (the brokers', and each failing cell's stderr) go to
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

from pybroker.protocol.errors import ProtocolError

from .broker import CLUSTER_BROKERS, Cluster, SingleNode
from .clients import CLIENTS, HERE, Client, install
from .matrix import write_matrix
from .scenarios import BY_NAME, SCENARIOS, Scenario
from .security import MODES, NOT_RUN, Mode, Secured, broker_lacks
from .security import SCENARIOS as SECURITY_SCENARIOS

ROOT = HERE.parent
OUT = HERE / "out"
SETUPS = ("single", "cluster")


def run_program(
    client: Client, bootstrap: str, scenario: str, topic: str, timeout: float, security: Path | None = None
) -> tuple[dict, str]:
    """Run one cell; return its verdict and the program's stderr."""
    args = [*client.command, "--bootstrap", bootstrap, "--scenario", scenario, "--topic", topic]
    if security is not None:
        args += ["--security", str(security)]
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
    client: Client, index: int, target, scenarios: list[Scenario], modes: list[Mode], timeout: float, created: set
) -> tuple[str, list, list]:
    """Every scenario of one client against one target, then its security cells; the client's version and both
    lists of cells."""
    why = install(client)
    version = "?"
    if why is None:
        verdict, _ = run_program(client, target.bootstrap(index), "version", "none", 60)
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
        cells.append(run_cell(client, index, target, scenario, topic_name(client, scenario), timeout, created))
    secured = []
    for mode in modes:
        lacks = broker_lacks(mode, target.secured.supported)
        for scenario in (s for s in scenarios if s.name in SECURITY_SCENARIOS):
            label = f"{mode.name} {scenario.name}"
            if why is not None or lacks:
                result, detail = (NOT_RUN, lacks) if lacks else ("n/a", f"client not available: {why}")
                secured.append({"mode": mode.name, "scenario": scenario.name, "result": result, "detail": detail})
                print(f"  {label:40} {result:7} {detail}", flush=True)
                continue
            topic = f"{topic_name(client, scenario)}-{mode.slug}"
            cell = run_cell(client, index, target, scenario, topic, timeout, created, mode, label)
            secured.append({"mode": mode.name, **cell})
    return version, cells, secured


def run_cell(
    client: Client, index: int, target, scenario: Scenario, topic: str, timeout: float, created: set,
    mode: Mode | None = None, label: str | None = None,
) -> dict:
    """One scenario program run (over the mode's listener, if any); its cell."""
    if scenario.create and topic not in created:
        try:
            target.create_topic(topic, scenario.partitions, scenario.configs)
        except (OSError, RuntimeError, ProtocolError) as exc:
            # A broker that stopped answering (or refused): this cell fails, the others still run.
            detail = f"the runner could not create {topic}: {exc!r}"
            print(f"  {label or scenario.name:16} fail  {detail[:100]}", flush=True)
            return {"scenario": scenario.name, "result": "fail", "detail": detail}
        created.add(topic)
    bootstrap = target.bootstrap(index, mode.protocol) if mode else target.bootstrap(index)
    security = target.secured.files[mode.name] if mode else None
    started = time.monotonic()
    verdict, err = run_program(client, bootstrap, scenario.name, topic, timeout, security)
    seconds = round(time.monotonic() - started, 1)
    died = target.recover()
    if died:
        verdict = {"result": "fail", "detail": died}
    elif scenario.name == "metadata" and verdict["result"] == "pass":
        verdict = check_broker_count(verdict, target.brokers)
    if verdict["result"] == "fail":
        (OUT / f"{target.setup}-{topic}.stderr.txt").write_text(err or "")
    cell = {"scenario": scenario.name, "result": verdict["result"], "detail": verdict.get("detail", "")}
    print(f"  {label or scenario.name:16} {verdict['result']:5} {seconds:5}s {cell['detail'][:100]}", flush=True)
    return {**cell, "seconds": seconds}


def check_broker_count(verdict: dict, brokers: int) -> dict:
    """The metadata scenarios report how many brokers the client learnt of: on a cluster, every one."""
    found = re.search(r"(\d+) broker", verdict.get("detail", ""))
    if found and int(found.group(1)) != brokers:
        return {
            "result": "fail",
            "detail": f"the client saw {found.group(1)} broker(s) of {brokers}: {verdict['detail']}",
        }
    return verdict


def run_setup(target, clients: list[Client], scenarios: list[Scenario], modes: list[Mode], timeout: float) -> dict:
    """Start the target, run every client on it, stop it; the setup's part of matrix.json."""
    started = time.monotonic()
    about = {"setup": target.setup, "brokers": target.brokers}
    about["modes"] = [{"mode": m.name, "summary": m.summary} for m in modes]
    try:
        print(f"== {target.setup}: {target.start()}", flush=True)
    except Exception as exc:  # noqa: BLE001 - every cell of the setup then fails with the reason
        why = f"the {target.setup} did not start: {exc}".splitlines()[0]
        print(f"== {why}", flush=True)
        cells = [{"scenario": s.name, "result": "fail", "detail": why} for s in scenarios]
        supported = target.secured.supported if target.secured else ()
        secured = [
            {"mode": m.name, "scenario": s.name, "result": NOT_RUN if broker_lacks(m, supported) else "fail",
             "detail": broker_lacks(m, supported) or why}
            for m in modes for s in scenarios if s.name in SECURITY_SCENARIOS
        ]
        results = [{"client": c.name, "version": "?", "cells": cells, "security": secured} for c in clients]
        return {**about, "seconds": 0, "clients": results}
    results = []
    created: set[str] = set()
    try:
        for index, client in enumerate(clients):
            print(f"{client.name}:", flush=True)
            version, cells, secured = run_client(client, index, target, scenarios, modes, timeout, created)
            results.append({"client": client.name, "version": version, "cells": cells, "security": secured})
    finally:
        target.stop()
    seconds = round(time.monotonic() - started, 1)
    print(f"== {target.setup}: {seconds} s", flush=True)
    return {**about, "seconds": seconds, "clients": results}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m compat", description=__doc__.splitlines()[2])
    parser.add_argument("--client", action="append", help="only these clients (repeatable)")
    parser.add_argument("--scenario", action="append", help="only these scenarios (repeatable)")
    parser.add_argument(
        "--setup", action="append", choices=SETUPS, help="only these setups (repeatable; default: single and cluster)"
    )
    parser.add_argument(
        "--mode", action="append", choices=[m.name for m in MODES] + ["none"],
        help="only these security modes (repeatable; default: every one; none: no security cells)",
    )
    parser.add_argument("--timeout", type=float, default=60, help="seconds per cell (default 60)")
    parser.add_argument(
        "--output", type=Path, default=HERE, help="write MATRIX.md and matrix.json here (default: compat/, committed)"
    )
    args = parser.parse_args()
    clients = [c for c in CLIENTS if not args.client or c.name in args.client or c.folder in args.client]
    scenarios = [s for s in SCENARIOS if not args.scenario or s.name in args.scenario]
    modes = [m for m in MODES if not args.mode or m.name in args.mode]
    OUT.mkdir(exist_ok=True)
    for old in OUT.glob("*.stderr.txt"):
        old.unlink()
    data = Path(tempfile.mkdtemp(prefix="pybroker-compat-"))
    setups = []
    try:
        secured = Secured(data / "security", modes) if modes else None
        for setup in args.setup or SETUPS:
            if setup == "single":
                target = SingleNode(data, OUT, secured)
            else:
                target = Cluster(data, OUT, CLUSTER_BROKERS, secured)
            setups.append(run_setup(target, clients, scenarios, modes, args.timeout))
    finally:
        shutil.rmtree(data, ignore_errors=True)
    args.output.mkdir(parents=True, exist_ok=True)
    security_rows = [(m, BY_NAME[s]) for m in modes for s in SECURITY_SCENARIOS if BY_NAME[s] in scenarios]
    write_matrix(setups, scenarios, security_rows, args.output / "MATRIX.md", args.output / "matrix.json")
    failed = sum(
        c["result"] == "fail" for s in setups for r in s["clients"] for c in r["cells"] + r.get("security", [])
    )
    print(f"wrote {args.output / 'MATRIX.md'}: {failed} failing cell(s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
