"""``pybroker consume --group`` and ``pybroker groups`` against one broker,
with confluent-kafka as the other member of the ecosystem: its commits show
as lag, its live membership blocks a reset."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
import time

from confluent_kafka import Consumer, TopicPartition
from kafka import KafkaProducer

from pybroker.admin.membership import range_assignment
from pybroker.local_cluster import wait_for

from .conftest import cli, unique


def _topic_with(run, bs, bootstrap, partitions, per_partition):
    topic = unique("grp")
    assert run("topics", "create", "--topic", topic, "--partitions", str(partitions), *bs).code == 0
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for p in range(partitions):
        for i in range(per_partition):
            producer.send(topic, value=f"p{p}-{i}".encode(), partition=p, timestamp_ms=1_000 * (i + 1))
    producer.flush()
    producer.close()
    return topic


def _lag(run, bs, group):
    (report,) = run("groups", "describe", "--group", group, "--json", *bs).json()
    return report, {(o["topic"], o["partition"]): (o["current_offset"], o["log_end_offset"], o["lag"])
                    for o in report["offsets"]}


def test_cli_group_member_commits_and_resumes(broker, run):
    bs = ("--bootstrap-server", broker.bootstrap_servers)
    topic = _topic_with(run, bs, broker.bootstrap_servers, 2, 5)
    group = unique("cli-group")
    first = cli("consume", "--topic", topic, "--group", group, "--from-beginning", "--max-messages", "4", *bs)
    assert first.code == 0, first.err
    assert len(first.out.split()) == 4
    report, lag = _lag(run, bs, group)
    assert report["state"] == "Empty" and report["members"] == []
    assert sum(current for current, _, _ in lag.values()) == 4
    assert sum(lag_ for _, _, lag_ in lag.values()) == 6

    rest = run("consume", "--topic", topic, "--group", group, "--timeout-ms", "1000", *bs)
    assert sorted(first.out.split() + rest.out.split()) == sorted(f"p{p}-{i}" for p in range(2) for i in range(5))
    assert {v for v in _lag(run, bs, group)[1].values()} == {(5, 5, 0)}
    assert group in run("groups", "list", *bs).out.split()
    assert group in [g["group"] for g in run("groups", "list", "--json", *bs).json()]


def test_lag_membership_and_reset_with_confluent_kafka(broker, run):
    bs = ("--bootstrap-server", broker.bootstrap_servers)
    topic = _topic_with(run, bs, broker.bootstrap_servers, 2, 10)
    group = unique("ck-group")
    consumer = Consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": group, "client.id": "ck-client",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 20
        while len(consumer.assignment()) < 2 and time.monotonic() < deadline:
            consumer.poll(0.2)
        consumer.commit(offsets=[TopicPartition(topic, 0, 3), TopicPartition(topic, 1, 7)], asynchronous=False)

        report, lag = _lag(run, bs, group)
        assert report["state"] == "Stable"
        assert [(m["client_id"], sorted(m["assignment"])) for m in report["members"]] == [
            ("ck-client", [f"{topic}-0", f"{topic}-1"])]
        assert lag == {(topic, 0): (3, 10, 7), (topic, 1): (7, 10, 3)}
        table = run("groups", "describe", "--group", group, *bs).out
        assert "CURRENT-OFFSET  LOG-END-OFFSET  LAG" in table and "ck-client" in table

        refused = cli("groups", "reset-offsets", "--group", group, "--all-topics", "--to-earliest", "--execute", *bs)
        assert refused.code == 1
        assert refused.err == (f"pybroker: NON_EMPTY_GROUP: Assignments can only be reset if the group '{group}' "
                               "is inactive, but the current state is Stable.\n")
        not_deleted = run("groups", "delete", "--group", group, *bs)
        assert not_deleted.code == 1 and not_deleted.err.startswith("pybroker: NON_EMPTY_GROUP: ")
    finally:
        consumer.close()

    def plan(*args):
        result = run("groups", "reset-offsets", "--group", group, "--json", *args, *bs)
        assert result.code == 0, result.err
        return {o["partition"]: o["new_offset"] for o in result.json()["offsets"]}

    assert plan("--all-topics", "--to-earliest") == {0: 0, 1: 0}
    assert _lag(run, bs, group)[1][topic, 0][0] == 3  # without --execute nothing moved
    assert plan("--topic", topic, "--to-latest") == {0: 10, 1: 10}
    assert plan("--topic", f"{topic}:1", "--shift-by", "-2") == {1: 5}
    assert plan("--topic", topic, "--shift-by", "5") == {0: 8, 1: 10}  # clamped to the end
    assert plan("--topic", topic, "--to-offset", "4") == {0: 4, 1: 4}
    assert plan("--topic", topic, "--to-datetime", "1970-01-01T00:00:05.500+00:00") == {0: 5, 1: 5}
    dry = cli("groups", "reset-offsets", "--group", group, "--topic", topic, "--to-earliest", *bs)
    assert "dry run" in dry.out and "NEW-OFFSET" in dry.out

    assert plan("--topic", f"{topic}:0", "--to-offset", "2", "--execute") == {0: 2}
    assert _lag(run, bs, group)[1] == {(topic, 0): (2, 10, 8), (topic, 1): (7, 10, 3)}
    verify = Consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": group})
    try:
        assert [tp.offset for tp in verify.committed([TopicPartition(topic, 0)], timeout=10)] == [2]
    finally:
        verify.close()

    deleted = run("groups", "delete", "--group", group, *bs)
    assert (deleted.code, deleted.out) == (0, f"Deletion of requested consumer groups ('{group}') was successful.\n")
    assert group not in run("groups", "list", *bs).out.split()


def test_reset_usage_errors(broker):
    bs = ("--bootstrap-server", broker.bootstrap_servers)
    no_target = cli("groups", "reset-offsets", "--group", "g", "--all-topics", *bs)
    assert no_target.code == 2
    two = cli("groups", "reset-offsets", "--group", "g", "--all-topics", "--to-earliest", "--to-latest", *bs)
    assert two.code == 2 and "not allowed with" in two.err


def test_range_assignment_is_kafkas():
    plan = range_assignment({"b": ["t", "u"], "a": ["t"], "c": ["t", "u"]}, {"t": 7, "u": 2, "v": 4})
    assert plan == {"a": {"t": [0, 1, 2]}, "b": {"t": [3, 4], "u": [0]}, "c": {"t": [5, 6], "u": [1]}}


def test_follow_mode_until_ctrl_c_commits_and_leaves(broker, run):
    bs = ("--bootstrap-server", broker.bootstrap_servers)
    topic = unique("follow")
    assert run("topics", "create", "--topic", topic, *bs).code == 0
    group = unique("follower")
    # --from-beginning: a group without commits would start at the end, and the end is resolved after the
    # join that the test waits for, so a produce right after the join could land before it and be skipped.
    proc = subprocess.Popen([sys.executable, "-m", "pybroker", "consume", "--topic", topic, "--group", group,
                             "--from-beginning", *bs], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        def joined():
            (report,) = run("groups", "describe", "--group", group, "--json", *bs).json()
            return report["state"] == "Stable" and [m["assignment"] for m in report["members"]] == [[f"{topic}-0"]]

        wait_for(joined, 20, "the CLI consumer to join its group")
        assert run("produce", "--topic", topic, "one", "two", *bs).code == 0
        assert [lines.get(timeout=10), lines.get(timeout=10)] == ["one\n", "two\n"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.stderr.read().endswith("Processed a total of 2 messages\n")
    report, lag = _lag(run, bs, group)
    assert report["state"] == "Empty"  # it left the group
    assert lag == {(topic, 0): (2, 2, 0)}
