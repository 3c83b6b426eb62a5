"""A fresh pybroker in a child process, and topic creation through our own codec.

The runner does not lean on any client under test to set things up: topics
are created with a CreateTopics request encoded by ``protocol/``.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from protocol.framing import FrameDecoder, decode_response, encode_request
from protocol.messages.create_topics_request import CreatableTopic, CreatableTopicConfig, CreateTopicsRequest

SERVING = re.compile(r"serving on 127\.0\.0\.1:(\d+)")

BROKER_PROPS = {
    "auto.create.topics.enable": "false",  # so that the error scenario has a topic that cannot appear
    "group.initial.rebalance.delay.ms": "0",  # as in Kafka's own dev/test setups; saves 3 s per join
}


class ChildBroker:
    def __init__(self, data_dir: Path, log_path: Path):
        self.data_dir, self.log_path = data_dir, log_path
        self.proc: subprocess.Popen | None = None
        self.port = 0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> None:
        args = [sys.executable, "-m", "pybroker", "--override", "listeners=PLAINTEXT://127.0.0.1:0"]
        args += ["--override", f"log.dirs={self.data_dir}"]
        for key, value in BROKER_PROPS.items():
            args += ["--override", f"{key}={value}"]
        self.log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = SERVING.search(self.log_path.read_text())
            if match:
                self.port = int(match.group(1))
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {self.proc.returncode}; see {self.log_path}")
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"broker did not start in {timeout} s; see {self.log_path}")

    def stop(self, timeout: float = 15) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def create_topic(bootstrap: str, name: str, partitions: int = 1, configs: dict | None = None) -> None:
    """Create a topic with CreateTopics v5; raise on any error code."""
    version = 5
    topic = CreatableTopic(
        name=name,
        num_partitions=partitions,
        replication_factor=1,
        configs=[CreatableTopicConfig(name=k, value=v) for k, v in (configs or {}).items()],
    )
    request = CreateTopicsRequest(topics=[topic], timeout_ms=10000)
    host, port = bootstrap.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=15) as sock:
        sock.sendall(encode_request(request, version, correlation_id=1, client_id="compat-runner"))
        frames = FrameDecoder(max_frame_size=1 << 20)
        while (frame := frames.next_frame()) is None:
            data = sock.recv(65536)
            if not data:
                raise RuntimeError("broker closed the connection during CreateTopics")
            frames.feed(data)
    _, response = decode_response(CreateTopicsRequest.API_KEY, version, frame)
    for result in response.topics:
        if result.error_code:
            raise RuntimeError(f"CreateTopics {name}: error {result.error_code} {result.error_message}")
