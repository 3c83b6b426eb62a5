"""The brokers under test: how to start each fresh on a loopback port, how
to read its CPU time and memory from /proc, and how to stop it by PID.

Every broker runs as one process whose PID we started (noida-db's console
script is a Python wrapper that forks the real binary, so the binary is run
directly: the figures must be the broker's own, not a wrapper's).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .peers import Peers

REPO = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class BrokerKind:
    """One broker implementation: a name for the tables and how to run it."""

    name: str
    version: str
    persistent: bool  # keeps data across a restart (start-up scenario)
    command: object  # (port, data_dir) -> argv
    env: dict = field(default_factory=dict)
    cwd: Path | None = None


def pybroker_kind(src: Path | None = None) -> BrokerKind:
    root = Path(src).resolve() if src else REPO
    env = {"PYTHONPATH": str(root)}
    version = _pybroker_version(root)

    def command(port: int, data_dir: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "pybroker",
            "--log-level",
            "WARNING",
            "--override",
            f"listeners=PLAINTEXT://127.0.0.1:{port}",
            "--override",
            f"log.dirs={data_dir}",
            "--override",
            "num.partitions=6",
        ]

    label = "pybroker" if src is None else f"pybroker@{root.name}"
    return BrokerKind(label, version, True, command, env, cwd=root)


def _pybroker_version(root: Path) -> str:
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
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


class BrokerProcess:
    """A running broker. Started fresh on a free port; stopped by its PID."""

    def __init__(self, kind: BrokerKind, data_dir: Path, port: int | None = None):
        self.kind = kind
        self.data_dir = data_dir
        self.port = port or free_port()
        self.log_path = data_dir.parent / f"{data_dir.name}.log"
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60) -> float:
        """Start and wait until the port accepts connections and answers
        ApiVersions; returns the seconds that took."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.kind.env}
        self.started_at = time.monotonic()
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(
                self.kind.command(self.port, self.data_dir),
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.kind.cwd or self.data_dir,
            )
        from .rawclient import api_versions_ok

        deadline = self.started_at + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind.name} exited with {self.proc.returncode}; see {self.log_path}")
            if api_versions_ok(self.bootstrap, timeout=1.0):
                return time.monotonic() - self.started_at
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"{self.kind.name} did not answer within {timeout}s; see {self.log_path}")

    def stop(self, timeout: float = 30) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    # -- figures from /proc ----------------------------------------------------

    def cpu_seconds(self) -> float:
        """User + system CPU time of the broker process (all its threads)."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def rss_bytes(self) -> int:
        return _status_kib(self.pid, "VmRSS") * 1024

    def peak_rss_bytes(self) -> int:
        return _status_kib(self.pid, "VmHWM") * 1024

    def reset_peak_rss(self) -> None:
        """Start a new peak-RSS window (Linux: writing 5 to clear_refs resets
        VmHWM to the current RSS); without permission the peak stays the
        process's lifetime peak, which only overstates."""
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass

    def __enter__(self) -> BrokerProcess:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _status_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0
