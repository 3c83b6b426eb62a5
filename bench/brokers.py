"""The brokers under test: how to run each on a loopback port, and how to
read its CPU time and memory from /proc (starting, waiting until it answers
and stopping it by PID are pybroker.process's, shared with the tests).

Every broker runs as one process whose PID we started (noida-db's console
script is a Python wrapper that forks the real binary, so the binary is run
directly: the figures must be the broker's own, not a wrapper's). The one
exception is ``pybroker-cluster`` (bench.cluster): three pybroker processes
and ZooKeeper, whose figures are the three brokers' summed.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from pybroker.process import BrokerProcess as _Process
from pybroker.process import pybroker_command

from .peers import Peers

REPO = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class BrokerKind:
    """One broker implementation: a name for the tables and how to run it."""

    name: str
    version: str
    persistent: bool  # keeps data across a restart (start-up scenario)
    command: object  # (port, data_dir) -> argv
    env: dict = field(default_factory=dict)
    cwd: Path | None = None
    brokers: int = 1  # more: a cluster (bench.cluster), its clients bootstrapped with every broker
    replication_factor: int = 1  # of the workloads' topics; -1: the broker's default
    not_applicable: dict = field(default_factory=dict)  # workload kind -> why it is not run
    note: str = ""  # on every table this broker appears in
    metrics_url: str | None = None  # its Prometheus endpoint (bench.metrics), scraped during the run


def pybroker_kind(src: Path | None = None, name: str | None = None, props: dict | None = None) -> BrokerKind:
    root = Path(src).resolve() if src else REPO
    env = {"PYTHONPATH": str(root)}
    version = pybroker_version(root)

    command = pybroker_command({"num.partitions": "6", **(props or {})}, log_level="WARNING")
    label = name or ("pybroker" if src is None else f"pybroker@{root.name}")
    return BrokerKind(label, version, True, command, env, cwd=root)


def pybroker_version(root: Path) -> str:
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            check=False,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        rev = ""
    return f"0.1.0 ({rev})" if rev else "0.1.0"


def tansu_kind(peers: Peers) -> BrokerKind:
    def command(port: int, data_dir: Path) -> list[str]:
        url = f"tcp://127.0.0.1:{port}"
        return [
            str(peers.tansu),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]

    return BrokerKind("tansu", peers.tansu_version, False, command)


def noida_kind(peers: Peers) -> BrokerKind:
    def command(port: int, data_dir: Path) -> list[str]:
        return [
            str(peers.noida),
            "start",
            "--data-dir",
            str(data_dir),
            "--host",
            "127.0.0.1",
            "--only",
            "kafka",
            "--kafka-port",
            str(port),
        ]

    return BrokerKind("noida-db", peers.noida_version, True, command)


class BrokerProcess(_Process):
    """A running broker, started fresh on a free port, with its CPU time and
    memory as the benchmark reads them."""

    def __init__(self, kind: BrokerKind, data_dir: Path, port: int = 0):
        super().__init__(kind.command, data_dir, port=port, env=kind.env, cwd=kind.cwd or data_dir, name=kind.name)
        self.kind = kind

    # -- figures from /proc ----------------------------------------------------

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def rss_bytes(self) -> int:
        return status_kib(self.pid, "VmRSS") * 1024

    def peak_rss_bytes(self) -> int:
        return status_kib(self.pid, "VmHWM") * 1024

    def reset_peak_rss(self) -> None:
        reset_peak_rss(self.pid)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def reset_peak_rss(pid: int) -> None:
    """Start a new peak-RSS window (Linux: writing 5 to clear_refs resets
    VmHWM to the current RSS); without permission the peak stays the
    process's lifetime peak, which only overstates."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def status_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0
