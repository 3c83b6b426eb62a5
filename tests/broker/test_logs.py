"""The broker's log, as the person running it reads it: a start-up banner
saying what runs where and what recovery found, one line per rebalance,
JSON lines with ``--log-format json``. The broker runs as ``pybroker``
would be run, a process stopped and killed by its PID."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Producer

from pybroker.process import free_port


class BrokerProcess:
    def __init__(self, data: Path, log_path: Path, *extra: str):
        self.port = free_port()
        self.log_path = log_path
        # Lines of an earlier run of the same log are not this one's.
        self.skip = len(log_path.read_text().splitlines()) if log_path.exists() else 0
        args = ["--override", f"listeners=PLAINTEXT://127.0.0.1:{self.port}", "--override", f"log.dirs={data}"]
        with open(log_path, "a") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "pybroker", *args, *extra], stdout=log, stderr=log)
        self.bootstrap = f"127.0.0.1:{self.port}"

    def wait_for_line(self, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.log_path.read_text().splitlines()[self.skip :]:
                if text in line:
                    return line
            assert self.proc.poll() is None, self.log_path.read_text()
            time.sleep(0.05)  # polling the log file for the line, bounded by the deadline
        raise AssertionError(f"{text!r} not logged:\n{self.log_path.read_text()}")

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        self.proc.wait(30)


def produce(bootstrap: str, topic: str, n: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    for i in range(n):
        producer.produce(topic, f"m{i}".encode())
    assert producer.flush(30) == 0


def test_banner_names_version_node_listeners_and_dirs(tmp_path):
    broker = BrokerProcess(tmp_path / "data", tmp_path / "broker.log")
    try:
        line = broker.wait_for_line(" serving on ")
    finally:
        broker.stop()
    assert "pybroker 0.1.0, node 1 of cluster " in line and "(single node)" in line
    assert f"advertised as PLAINTEXT://127.0.0.1:{broker.port}" in line
    assert str(tmp_path / "data") in line and "no partitions yet" in line


def test_recovery_after_kill_9_and_a_torn_write_is_reported(tmp_path):
    data, log_path = tmp_path / "data", tmp_path / "broker.log"
    topic = f"torn-{uuid.uuid4().hex[:8]}"
    broker = BrokerProcess(data, log_path)
    try:
        broker.wait_for_line(" serving on ")
        produce(broker.bootstrap, topic, 20)
    finally:
        broker.stop(signal.SIGKILL)
    (segment,) = (data / f"{topic}-0").glob("*.log")
    with open(segment, "ab") as f:
        f.write(b"\x00\x00\x00\x00\x00\x00\x00\x14\x00\x00\x01\x00torn")  # half a batch header
    broker = BrokerProcess(data, log_path)
    try:
        line = broker.wait_for_line(" serving on ")
    finally:
        broker.stop()
    assert "after an unclean shutdown of " in line and "segments scanned" in line
    assert "16 bytes of torn writes cut in 1 partitions" in line


def test_a_rebalance_is_one_info_line(tmp_path):
    broker = BrokerProcess(tmp_path / "data", tmp_path / "broker.log", "--dev")
    topic, group = f"reb-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    try:
        broker.wait_for_line(" serving on ")
        produce(broker.bootstrap, topic, 1)
        consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "auto.offset.reset": "earliest"})
        try:
            consumer.subscribe([topic])
            deadline = time.monotonic() + 30
            message = None
            while time.monotonic() < deadline and (message is None or message.error()):
                message = consumer.poll(0.2)
            assert message is not None and not message.error()
        finally:
            consumer.close()
        line = broker.wait_for_line(f"[GroupId {group}] rebalanced: generation 1 with 1 members, protocol range")
        assert " INFO " in line
        broker.wait_for_line(f"created topic {topic} with 1 partitions")
    finally:
        broker.stop()


def test_json_log_format(tmp_path):
    broker = BrokerProcess(tmp_path / "data", tmp_path / "broker.log", "--log-format", "json")
    try:
        line = broker.wait_for_line(" serving on ")
    finally:
        broker.stop()
    entries = [json.loads(text) for text in (tmp_path / "broker.log").read_text().splitlines() if text.strip()]
    assert entries and all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    (banner,) = [e for e in entries if " serving on " in e["message"]]
    assert banner["level"] == "INFO" and banner["time"].endswith("Z")
    assert json.loads(line)["message"] == banner["message"]


def test_debug_request_log_names_api_version_client_and_latency(tmp_path):
    broker = BrokerProcess(tmp_path / "data", tmp_path / "broker.log", "--log-level", "DEBUG")
    try:
        broker.wait_for_line(" serving on ")
        producer = Producer({"bootstrap.servers": broker.bootstrap, "client.id": "request-log-test"})
        producer.produce("request-log", b"x")
        assert producer.flush(30) == 0
        line = broker.wait_for_line("Produce v")
    finally:
        broker.stop()
    assert " DEBUG pybroker.requests: Produce v" in line and "client 'request-log-test'" in line
    assert line.endswith(" ms")


def test_a_start_up_error_is_one_line_naming_the_listener(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "pybroker", "--override", "listeners=PLAINTEXT://no-such-host.invalid:9092",
         "--override", f"log.dirs={tmp_path}"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith(
        "pybroker: cannot listen on PLAINTEXT://no-such-host.invalid:9092: "
    )
