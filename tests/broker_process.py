"""A broker in a child process, for tests that restart or kill it.

The process listens on a free loopback port (it binds port 0 and the test
reads the bound port from its startup log line), is stopped by the PID we
recorded, and every wait is bounded by a deadline.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

SERVING = re.compile(r"serving on 127\.0\.0\.1:(\d+)")


class BrokerProcess:
    def __init__(self, data_dir: Path, overrides: dict[str, str] | None = None, port: int = 0):
        self.data_dir = Path(data_dir)
        self.overrides = dict(overrides or {})
        self.port = port
        self.proc: subprocess.Popen | None = None
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-broker.log"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> BrokerProcess:
        args = [sys.executable, "-m", "pybroker", "--override", f"listeners=PLAINTEXT://127.0.0.1:{self.port}"]
        args += ["--override", f"log.dirs={self.data_dir}"]
        for key, value in self.overrides.items():
            args += ["--override", f"{key}={value}"]
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_path.read_text()
            found = SERVING.findall(text)
            if found and self.proc.poll() is None and text.count("serving on") > getattr(self, "_starts", 0):
                self._starts = text.count("serving on")
                self.port = int(found[-1])
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {self.proc.returncode}:\n{text[-3000:]}")
            time.sleep(0.02)  # polling the log file for the ready line, bounded by the deadline
        self.kill()
        raise TimeoutError("broker did not start")

    def stop(self, timeout: float = 30) -> int:
        """Graceful stop (SIGTERM), waiting for the process to exit."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        """Crash: SIGKILL, no chance to flush or checkpoint."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def restart(self, kill: bool = False) -> BrokerProcess:
        self.kill() if kill else self.stop()
        return self.start()

    def log_text(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""
