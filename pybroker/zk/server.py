"""ZooKeeper in a child process: for the tests, ``pybroker cluster`` and the
benchmark. Standalone, bound to 127.0.0.1, its data and log under one
directory, started by exec'ing java (a wrapping shell would leave the JVM
behind when killed) and stopped by the PID recorded at start, never by name.
Ready once ``srvr`` answers with a ``Mode:`` line. No trio here.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

from pybroker.process import terminate_with_parent

# Where Debian's and Ubuntu's ``zookeeper`` package puts it; the jar's
# manifest names its dependencies. Without an SLF4J binding it logs nothing.
DEBIAN_JAR = Path("/usr/share/java/zookeeper.jar")
DEBIAN_SLF4J = Path("/usr/share/java/slf4j-simple.jar")
JAR_VARIABLE = "PYBROKER_ZOOKEEPER_JAR"
MAIN_CLASS = "org.apache.zookeeper.server.ZooKeeperServerMain"


class ZooKeeperNotFound(RuntimeError):
    pass


def find_zookeeper(jar: str | os.PathLike | None = None) -> str:
    """The Java classpath of ZooKeeper's server. ``jar`` (or the
    environment variable PYBROKER_ZOOKEEPER_JAR) is ZooKeeper's jar or a
    folder of jars (a release's ``lib/``); by default Debian's."""
    find_java()
    given = jar if jar is not None else os.environ.get(JAR_VARIABLE)
    path = Path(given) if given else DEBIAN_JAR
    if path.is_dir() and any(path.glob("*.jar")):
        return str(path / "*")
    if not path.is_file():
        raise ZooKeeperNotFound(
            f"ZooKeeper not found at {path}: install it (Debian/Ubuntu: `apt-get install zookeeper`) "
            f"or give the path of its jar or lib folder ({JAR_VARIABLE}=...)"
        )
    parts = [path]
    for binding in (path.parent / "slf4j-simple.jar", DEBIAN_SLF4J):
        if binding.is_file():
            parts.append(binding)
            break
    return os.pathsep.join(map(str, parts))


def find_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise ZooKeeperNotFound(
            "ZooKeeper needs Java, and there is no `java` on PATH; on Debian or Ubuntu, "
            "`apt-get install zookeeper` brings both"
        )
    return java


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def four_letter_word(port: int, word: str, timeout: float = 1.0) -> str:
    """ZooKeeper's answer to a four-letter command; '' when it does not answer."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(word.encode())
            chunks = []
            while chunk := sock.recv(4096):
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")
    except OSError:
        return ""


def _task_state(task: Path) -> str:
    """A thread's state letter from /proc ('T': stopped); '' if it has gone."""
    try:
        # The state follows the command name, which is in parentheses.
        return (task / "stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return ""


class ZooKeeperServer:
    def __init__(
        self,
        data_dir: str | os.PathLike,
        port: int = 0,
        tick_time_ms: int = 500,
        min_session_timeout_ms: int = 1000,
        max_session_timeout_ms: int = 60000,
        classpath: str | None = None,
    ):
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.tick_time_ms = tick_time_ms
        self.min_session_timeout_ms = min_session_timeout_ms
        self.max_session_timeout_ms = max_session_timeout_ms
        self.classpath = classpath
        self.proc: subprocess.Popen | None = None

    @property
    def connect(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("ZooKeeper was not started")
        return self.proc.pid

    @property
    def log_path(self) -> Path:
        return self.data_dir / "zookeeper.log"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "zoo.cfg"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def config(self) -> str:
        settings = {
            "tickTime": self.tick_time_ms,
            "initLimit": 10,
            "syncLimit": 5,
            "dataDir": self.data_dir / "data",
            "clientPort": self.port,
            "clientPortAddress": "127.0.0.1",
            "admin.enableServer": "false",
            # `srvr` tells readiness; `ruok` is off by default since 3.5; `dump`
            # lists the sessions that hold ephemerals (tests watch one expire).
            "4lw.commands.whitelist": "srvr,ruok,stat,mntr,conf,dump",
            "minSessionTimeout": self.min_session_timeout_ms,
            "maxSessionTimeout": self.max_session_timeout_ms,
        }
        return "".join(f"{key}={value}\n" for key, value in settings.items())

    def start(self) -> None:
        """Starts the process; ``wait_ready`` waits until it serves."""
        if self.alive():
            raise RuntimeError(f"ZooKeeper is already running (PID {self.proc.pid})")
        if self.classpath is None:
            self.classpath = find_zookeeper()
        (self.data_dir / "data").mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config())
        java = find_java()
        # Appended, so that a restart keeps what the previous run said as it died.
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [java, "-Xmx256m", "-cp", self.classpath, MAIN_CLASS, str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.data_dir,
                # A launcher killed with -9 must not leave ZooKeeper behind.
                # Runs before exec and only calls prctl: safe beside other threads.
                preexec_fn=terminate_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
            )

    def wait_ready(self, timeout: float = 60) -> float:
        """Waits until ZooKeeper serves; returns the seconds since ``start``."""
        if self.proc is None:
            raise RuntimeError("ZooKeeper was not started")
        started = time.monotonic()
        deadline = started + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"ZooKeeper exited with {self.proc.returncode}; the end of {self.log_path}:\n{self.log_tail()}"
                )
            if "Mode:" in four_letter_word(self.port, "srvr", timeout=0.5):
                return time.monotonic() - started
            time.sleep(0.05)  # between probes, bounded by the deadline
        raise TimeoutError(
            f"ZooKeeper did not answer `srvr` within {timeout} s; the end of its log:\n{self.log_tail()}"
        )

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout``; returns the exit code."""
        if self.alive():
            # send_signal, not os.kill: it will not signal a PID already reaped and reused.
            self.proc.send_signal(signal.SIGTERM)
            self.proc.send_signal(signal.SIGCONT)  # a paused process acts on SIGTERM once continued
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return None if self.proc is None else self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: ZooKeeper crashes (its data stays: it syncs each transaction)."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def pause(self, timeout: float = 10) -> None:
        """SIGSTOP: the process is there but answers nothing. Returns once
        the kernel reports it stopped (the signal reaches its threads
        after ``kill`` returns)."""
        if not self.alive():
            return
        self.proc.send_signal(signal.SIGSTOP)
        tasks = Path(f"/proc/{self.proc.pid}/task")
        deadline = time.monotonic() + timeout
        while tasks.exists() and time.monotonic() < deadline:
            if all(_task_state(task) in ("T", "") for task in tasks.iterdir()):
                return
            time.sleep(0.005)  # between looks at the kernel's tables, bounded by the deadline

    def resume(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGCONT)

    def restart(self, kill: bool = False, timeout: float = 60) -> float:
        """Down and up again on the same port and data: sessions younger than
        their timeout survive it."""
        self.kill() if kill else self.stop()
        self.start()
        return self.wait_ready(timeout)

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> Self:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.kill()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
