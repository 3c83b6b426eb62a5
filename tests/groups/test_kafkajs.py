"""KafkaJS 2.2.4's "Getting started" consumer against pybroker.

compat/kafkajs/getting-started-consumer.js is the consumer of KafkaJS's
getting-started page (``new Kafka({clientId, brokers})``,
``consumer.subscribe({topic, fromBeginning: true})``,
``consumer.run({eachMessage})``), printing each message as a JSON line and
exiting once it has seen the expected count. Its group joins, syncs,
heartbeats, fetches and commits as KafkaJS does by default (JoinGroup v5,
RoundRobinAssigner, OffsetCommit on each batch and on disconnect).

Messages are produced with a Python client first. A first run must print
every one of them exactly once; a second run of the same group, after more
messages were produced, must continue exactly after what the first
committed. KafkaJS is installed from compat/kafkajs/package-lock.json by
.ci/run (``npm ci``); without node or npm these tests fail, they are not
skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pybroker.testing import running_broker

from ..broker.clients import Confluent
from ..broker.workload import unique_topic

COMPAT = Path(__file__).parents[2] / "compat" / "kafkajs"
SCRIPT = COMPAT / "getting-started-consumer.js"
KAFKAJS_VERSION = "2.2.4"
PARTITIONS = 3
RUN_TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def kafkajs():
    """The node binary, once KafkaJS is known to be installed as pinned."""
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "node and npm are needed (Debian: apt-get install nodejs npm; .ci/run installs them)"
    installed = COMPAT / "node_modules" / "kafkajs" / "package.json"
    assert installed.exists(), f"KafkaJS is not installed: run (cd {COMPAT} && npm ci --no-audit --no-fund)"
    version = json.loads(installed.read_text())["version"]
    assert version == KAFKAJS_VERSION, f"compat/kafkajs has KafkaJS {version}, not {KAFKAJS_VERSION}: run npm ci"
    return node


@pytest.fixture(scope="module")
def broker():
    props = {"group.initial.rebalance.delay.ms": "0", "offsets.topic.num.partitions": "4"}
    with running_broker(props) as b:
        yield b


def produce(bootstrap: str, topic: str, start: int, count: int) -> dict[tuple[int, int], tuple[str, str]]:
    """(partition, offset) -> (key, value) for ``count`` messages numbered from ``start``."""
    from confluent_kafka import Producer

    delivered: dict[tuple[int, int], tuple[str, str]] = {}
    errors = []

    def report(err, msg):
        if err is not None:
            errors.append(err)
        else:
            delivered[(msg.partition(), msg.offset())] = (msg.key().decode(), msg.value().decode())

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for i in range(start, start + count):
        producer.produce(
            topic, key=f"k{i % 7}", value=f"kafkajs message {i} ✓", partition=i % PARTITIONS, on_delivery=report
        )
    assert producer.flush(30) == 0
    assert not errors, errors[:3]
    return delivered


def run_consumer(node: str, bootstrap: str, topic: str, group: str, expected: int) -> list[dict]:
    env = dict(
        os.environ, BROKERS=bootstrap, TOPIC=topic, GROUP=group, EXPECTED=str(expected), TIMEOUT_MS=str(RUN_TIMEOUT_MS)
    )
    result = subprocess.run(
        [node, str(SCRIPT)],
        check=False,
        cwd=COMPAT,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_MS / 1000 + 30,
    )
    assert result.returncode == 0, f"exit {result.returncode}:\n{result.stderr[-4000:]}"
    return [json.loads(line) for line in result.stdout.splitlines()]


def received(lines: list[dict], topic: str) -> dict[tuple[int, int], tuple[str, str]]:
    out: dict[tuple[int, int], tuple[str, str]] = {}
    for line in lines:
        assert line["topic"] == topic, line
        where = (line["partition"], int(line["offset"]))
        assert where not in out, f"partition {where[0]} offset {where[1]} was printed twice"
        out[where] = (line["key"], line["value"])
    return out


def test_getting_started_consumer_reads_each_message_once_and_resumes(kafkajs, broker):
    bootstrap = broker.bootstrap_servers
    topic, group = unique_topic("kafkajs"), unique_topic("kafkajs-group")
    Confluent(bootstrap).create_topic(topic, PARTITIONS)

    first = produce(bootstrap, topic, 0, 60)
    got = received(run_consumer(kafkajs, bootstrap, topic, group, len(first)), topic)
    assert got == first

    # Same group again: it must start at the offsets the first run
    # committed, so it prints exactly the new messages.
    second = produce(bootstrap, topic, 60, 30)
    assert not set(second) & set(first)
    got = received(run_consumer(kafkajs, bootstrap, topic, group, len(second)), topic)
    assert got == second
