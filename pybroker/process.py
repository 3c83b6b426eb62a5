"""A broker in a child process: for tests that kill or restart it, the
compatibility matrix, and the benchmark (which runs other brokers too).

The child listens on a loopback port chosen here and kept across restarts,
so clients and proxies pointed at it find it again. It counts as ready once
it answers ApiVersions, which every Kafka broker must, rather than on a log
line only pybroker writes. It is stopped by the PID recorded at start, never
by name. No trio here: the benchmark imports this beside other brokers.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Self

from pybroker.protocol.errors import ProtocolError
from pybroker.protocol.framing import FrameDecoder, decode_response, encode_request
from pybroker.protocol.messages.api_versions_request import ApiVersionsRequest

Command = Callable[[int, Path], list[str]]  # (port, data dir) -> argv


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(bootstrap: str, body, version: int, timeout: float = 15, client_id: str = "pybroker-process"):
    """One request on a connection of its own; returns the response body."""
    host, port = bootstrap.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(encode_request(body, version, correlation_id=1, client_id=client_id))
        frames = FrameDecoder(max_frame_size=1 << 20)
        while (frame := frames.next_frame()) is None:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError(f"{bootstrap} closed the connection before answering")
            frames.feed(data)
    return decode_response(body.API_KEY, version, frame)[1]


def terminate_with_parent() -> None:
    """In the child before exec: SIGTERM when the thread that started it dies (prctl PR_SET_PDEATHSIG)."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def answers_api_versions(bootstrap: str, timeout: float = 1.0) -> bool:
    try:
        request(bootstrap, ApiVersionsRequest(), 0, timeout)
        return True
    except (OSError, ProtocolError):
        return False


def pybroker_command(props: Mapping[str, str] | None = None, log_level: str | None = None) -> Command:
    """argv for ``python -m pybroker`` with Kafka properties on top of the listener and data dir."""

    def command(port: int, data_dir: Path) -> list[str]:
        args = [sys.executable, "-m", "pybroker"] + (["--log-level", log_level] if log_level else [])
        settings = {"listeners": f"PLAINTEXT://127.0.0.1:{port}", "log.dirs": str(data_dir), **(props or {})}
        for key, value in settings.items():
            args += ["--override", f"{key}={value}"]
        return args

    return command


class BrokerProcess:
    def __init__(
        self,
        command: Command,
        data_dir: Path,
        log_path: Path | None = None,
        port: int = 0,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        name: str = "broker",
        own_session: bool = False,
    ):
        self.command, self.env, self.cwd, self.name = command, env, cwd, name
        # A process of its own session does not get the terminal's Ctrl-C:
        # whoever started it stops it, in the order it chooses (and, on
        # Linux, it gets SIGTERM if that thread dies without doing so).
        self.own_session = own_session
        self.data_dir = Path(data_dir)
        self.log_path = Path(log_path) if log_path else self.data_dir.parent / f"{self.data_dir.name}.log"
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0
        self.paused = False

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60) -> float:
        """Start and wait until it answers ApiVersions; returns the seconds that took."""
        self.spawn()
        return self.wait_ready(timeout)

    def spawn(self) -> None:
        """Start the process without waiting for it: several can then come up at once."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.started_at = time.monotonic()
        # Appended, so that a restart keeps what the previous run said as it died.
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(self.port, self.data_dir),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=None if self.env is None else {**os.environ, **self.env},
                cwd=self.cwd,
                start_new_session=self.own_session,
                # Runs before exec and only calls prctl: safe beside other threads.
                preexec_fn=terminate_with_parent if self.own_session and sys.platform == "linux" else None,  # noqa: PLW1509
            )

    def wait_ready(self, timeout: float = 60) -> float:
        """Wait until the spawned process answers ApiVersions; returns the seconds since it was spawned."""
        deadline = self.started_at + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}")
            if answers_api_versions(self.bootstrap):
                return time.monotonic() - self.started_at
            time.sleep(0.02)  # between connection attempts, bounded by the deadline
        self.kill()
        raise TimeoutError(f"{self.name} did not answer ApiVersions within {timeout} s; see {self.log_path}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM, and SIGKILL if it has not exited within ``timeout``; returns the exit code."""
        if self.alive():
            self.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return None if self.proc is None else self.proc.returncode

    def terminate(self) -> None:
        """SIGTERM without waiting: several brokers can then shut down at once."""
        if self.alive():
            self.resume()  # a stopped process would not act on SIGTERM
            # send_signal, not os.kill: it will not signal a PID already reaped and reused.
            self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """A crash: SIGKILL, no chance to flush or checkpoint."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)  # acts on a stopped process too
            self.proc.wait(30)
        self.paused = False

    def pause(self) -> None:
        """SIGSTOP: the process keeps its sockets and sessions but does nothing, like a long GC pause."""
        if self.alive():
            self.proc.send_signal(signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        if self.paused and self.alive():
            self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def restart(self, kill: bool = False) -> float:
        self.kill() if kill else self.stop()
        return self.start()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def pybroker_process(data_dir: Path, props: Mapping[str, str] | None = None, **kwargs) -> BrokerProcess:
    return BrokerProcess(pybroker_command(props), data_dir, name="pybroker", **kwargs)
