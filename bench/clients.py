"""Running load-generator processes together: start them all, wait until
every one is connected, release them at once, collect their JSON results.
Every process is bounded in time and stopped by its PID if it overruns."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

from .brokers import REPO


class ClientFailed(Exception):
    pass


def loadgen_argv(cmd: str, **options) -> list[str]:
    argv = [sys.executable, "-m", "bench.loadgen", cmd]
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is not False and value is not None:
            argv += [flag, str(value)]
    return argv


def run_together(argvs: list[list[str]], log_path: Path, timeout: float, before_go=None) -> list[dict]:
    """Start every argv, wait for all to print "ready", call ``before_go``,
    tell them to go, and return each one's JSON result in order."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    deadline = time.monotonic() + timeout
    procs = []
    with open(log_path, "ab") as log:
        try:
            for argv in argvs:
                procs.append(
                    subprocess.Popen(
                        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, cwd=REPO, env=env, bufsize=0
                    )
                )
            for proc in procs:
                line = _readline(proc, deadline)
                if line.strip() != b"ready":
                    raise ClientFailed(f"{argv_name(proc.args)} said {line!r} instead of ready; see {log_path}")
            if before_go is not None:
                before_go()
            for proc in procs:
                proc.stdin.write(b"go\n")
                proc.stdin.flush()
            results = []
            for proc in procs:
                line = _readline(proc, deadline)
                if not line:
                    raise ClientFailed(f"{argv_name(proc.args)} ended without a result; see {log_path}")
                results.append(json.loads(line))
            for proc in procs:
                proc.wait(max(1.0, deadline - time.monotonic()))
            return results
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)


def argv_name(argv) -> str:
    return " ".join(str(a) for a in argv[2:4])


def _readline(proc: subprocess.Popen, deadline: float) -> bytes:
    buf = b""
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise ClientFailed(f"{argv_name(proc.args)} timed out")
        ready, _, _ = select.select([proc.stdout], [], [], min(left, 1.0))
        if ready:
            ch = proc.stdout.read(1)
            if not ch:
                return buf
            buf += ch
    return buf
