"""A broker process whose disk fails under it: a full filesystem, a torn
write, a failed checkpoint, a topic deleted while its fsync is pending.

Kafka's behaviour is the reference (LogDirFailureChannel, ReplicaManager
handleLogDirFailure): the log dir that hit the error goes offline, its
partitions answer KAFKA_STORAGE_ERROR, DescribeLogDirs reports it, the
other dirs and every connection carry on; with no log dir left the broker
stops on purpose with a non-zero exit. Nothing acknowledged is lost: after
space is freed and the broker restarted (and again after a kill -9), a
real consumer finds every acknowledged message exactly once.

The full disk is a small tmpfs the test mounts (root only; always
unmounted again), or, for the single-dir case, a file size limit
(RLIMIT_FSIZE) on the broker process, which tears a write the same way
without privileges.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.framing import encode_request
from pybroker.protocol.messages.api_versions_request import ApiVersionsRequest
from pybroker.protocol.messages.delete_topics_request import DeleteTopicsRequest
from pybroker.protocol.messages.describe_log_dirs_request import DescribeLogDirsRequest
from pybroker.protocol.messages.list_offsets_request import ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic
from pybroker.protocol.messages.metadata_request import MetadataRequest, MetadataRequestTopic
from pybroker.protocol.registry import ApiKey
from pybroker.process import BrokerProcess, pybroker_command

from .clients import KafkaPython
from .raw_requests import fetch_request, produce_request
from .wire import Wire
from .workload import wait_for

IS_ROOT = os.geteuid() == 0
DISK_BYTES = 4 << 20
PAYLOAD = 1000


# -- fixtures ----------------------------------------------------------------


class SmallDisk:
    """A tmpfs of DISK_BYTES; ``fill`` takes its free space but ``leave``
    bytes with a file that ``free`` removes again."""

    def __init__(self, path: Path):
        self.path = path
        self.filler = path / "filler"

    def fill(self, leave: int = 0) -> None:
        st = os.statvfs(self.path)
        want = max(st.f_bavail * st.f_frsize - leave, 0)
        chunk = bytes(64 * 1024)
        with open(self.filler, "ab") as f:
            try:
                while want > 0:
                    want -= f.write(chunk[: min(want, len(chunk))])
                    f.flush()
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)


def _unmount(path: Path) -> None:
    if subprocess.run(["umount", str(path)], check=False, capture_output=True).returncode:
        # Still busy (a broker that outlived its test): detach it now, gone once free.
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)
    path.rmdir()


@pytest.fixture
def small_disk(tmp_path):
    if not IS_ROOT:
        pytest.skip("mounting a small tmpfs needs root; tests/storage/test_io_errors.py injects the same faults")
    path = tmp_path / "small-disk"
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(path)], check=True)
    try:
        yield SmallDisk(path)
    finally:
        _unmount(path)


@pytest.fixture
def brokers():
    """Broker processes made by the test; killed by PID at the end (before
    ``small_disk`` unmounts, which the test requests first)."""
    made: list[BrokerProcess] = []
    yield made
    for proc in made:
        proc.kill()


def start(made: list, data_dir: Path, props: dict | None = None, command=None) -> BrokerProcess:
    """A broker process on ``data_dir``: ``python -m pybroker`` with ``props``, or ``command``."""
    command = command or pybroker_command({"shutdown.grace.ms": "2000", **(props or {})})
    proc = BrokerProcess(command, data_dir, name="pybroker")
    made.append(proc)
    proc.start()
    return proc


def exited(proc: BrokerProcess, timeout: float = 30) -> int:
    wait_for(lambda: not proc.alive(), timeout, "the broker to stop")
    return proc.proc.returncode


# -- clients -------------------------------------------------------------------


def create_topic(bootstrap: str, name: str, partitions: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)], operation_timeout=30)[name].result(60)


def value(i: int) -> bytes:
    return b"msg-%07d|" % i + bytes([i % 251]) * PAYLOAD


class Writer:
    """confluent-kafka with acks=1 and no retries: an append the broker
    refuses comes back as the broker's error, not as a timeout."""

    def __init__(self, bootstrap: str):
        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "acks": "1",
                "retries": 0,
                "linger.ms": 5,
                "message.timeout.ms": 10000,
                "reconnect.backoff.max.ms": 200,
            }
        )
        self.acked: set[bytes] = set()
        self.errors: Counter = Counter()

    def send(self, topic: str, values: list[bytes], timeout: float = 30) -> None:
        def report(err, msg):
            if err is None:
                self.acked.add(msg.value())
            else:
                self.errors[err.code()] += 1

        for v in values:
            self.producer.produce(topic, value=v, partition=0, on_delivery=report)
            self.producer.poll(0)
        self.producer.flush(timeout)


def read_all(bootstrap: str, topic: str) -> list[bytes]:
    """Every record of partition 0, read with kafka-python from offset 0 to the log end."""
    client = KafkaPython(bootstrap)
    begin, end, _ = client.offsets(topic, 1, {})
    assert begin[0] == 0
    got = client.consume(topic, 1, end[0])
    assert [c.offset for c in got] == list(range(end[0]))
    return [c.value for c in got]


def check_exactly_once(bootstrap: str, topic: str, acked: set[bytes]) -> list[bytes]:
    stored = read_all(bootstrap, topic)
    counts = Counter(stored)
    assert not [v for v, n in counts.items() if n > 1], "a message is stored twice"
    lost = acked - set(counts)
    assert not lost, f"{len(lost)} acknowledged messages lost"
    return stored


def fill_until_refused(writer: Writer, topic: str, first: int) -> int:
    """Produce rounds of messages until the broker refuses one; returns
    the next message number."""
    i = first
    while not writer.errors:
        assert i < first + 100_000, "the disk never filled"
        writer.send(topic, [value(n) for n in range(i, i + 100)])
        i += 100
    return i


# -- a topic deleted while its acks=all produce waits for the fsync ------------


def test_delete_topics_while_an_acks_all_produce_waits_for_its_fsync(tmp_path, brokers):
    broker = start(brokers, tmp_path / "data")
    w = Wire(broker.bootstrap)
    try:
        for n in range(20):
            topic = f"doomed-{n}"
            create_topic(broker.bootstrap, topic)
            # Both on one connection, in one send: the delete runs before the fsync.
            w.send_raw(
                b"".join(
                    [
                        encode_request(produce_request(topic, 0, [b"v%d" % n], acks=-1), 9, 2 * n, "wire"),
                        encode_request(DeleteTopicsRequest(topic_names=[topic], timeout_ms=5000), 4, 2 * n + 1, "wire"),
                    ]
                )
            )
            _, produced = w.receive(ApiKey.PRODUCE, 9)
            code = produced.responses[0].partition_responses[0].error_code
            assert code in (ErrorCode.NONE, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION), code
            _, deleted = w.receive(ApiKey.DELETE_TOPICS, 4)
            assert deleted.responses[0].error_code == ErrorCode.NONE
        assert broker.alive()
        w.send(ApiVersionsRequest(), 3, 99)
        w.receive(ApiKey.API_VERSIONS, 3)
    finally:
        w.close()
    assert "Traceback" not in broker.log_text()


# -- a single log dir on a full disk: the broker stops on purpose ---------------


def torn_write_loses_nothing(brokers, data_dir: Path, first_command, then_free, cause: str) -> None:
    """The disk fills in the middle of a batch: the producer is refused
    with KAFKA_STORAGE_ERROR, the broker stops on purpose (its only log dir
    failed), and once space is back every acknowledged message is there
    exactly once, after more produces and after a kill -9 too."""
    broker = start(brokers, data_dir, command=first_command)
    create_topic(broker.bootstrap, "torn")
    writer = Writer(broker.bootstrap)
    fill_until_refused(writer, "torn", 0)
    assert writer.errors[KafkaError.KAFKA_STORAGE_ERROR] >= 1, writer.errors
    assert writer.acked, "nothing was written before the disk filled"
    assert exited(broker) != 0
    text = broker.log_text()
    assert f"log directory {data_dir} failed ([Errno" in text and cause in text
    assert f"all log dirs in {data_dir} have failed" in text

    then_free(broker)
    broker.start()
    more = Writer(broker.bootstrap)
    more.send("torn", [value(n) for n in range(500_000, 500_300)])
    assert len(more.acked) == 300, more.errors
    acked = writer.acked | more.acked
    before = check_exactly_once(broker.bootstrap, "torn", acked)

    broker.kill()
    broker.start()
    assert check_exactly_once(broker.bootstrap, "torn", acked) == before


def test_a_write_torn_by_a_full_tmpfs_loses_nothing(small_disk, brokers):
    small_disk.fill(leave=600 * 1024)
    torn_write_loses_nothing(
        brokers,
        small_disk.path,
        pybroker_command({"shutdown.grace.ms": "2000"}),
        lambda broker: small_disk.free(),
        "No space left on device",
    )


# Runs the broker with a file size limit: a write past it is cut short (the
# kernel writes what fits), the next one fails with EFBIG. Python ignores
# SIGXFSZ, and the exec keeps it ignored.
_LIMITED = (
    "import os, resource, sys; n = int(sys.argv[1]); "
    "resource.setrlimit(resource.RLIMIT_FSIZE, (n, n)); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])"
)


def test_a_write_torn_at_the_file_size_limit_loses_nothing(tmp_path, brokers):
    # Small indexes, so that the segment file is the one that reaches the limit.
    plain = pybroker_command({"shutdown.grace.ms": "2000", "log.index.size.max.bytes": "8192"})
    limit = 512 * 1024

    def limited(port: int, data_dir: Path) -> list[str]:
        return [sys.executable, "-c", _LIMITED, str(limit), *plain(port, data_dir)[1:]]

    def lift(broker):
        broker.command = plain

    torn_write_loses_nothing(brokers, tmp_path / "data", limited, lift, "File too large")


# -- two log dirs, one of them full: the other carries on ------------------------


def _describe_dirs(w: Wire) -> dict[str, tuple[int, list[str]]]:
    w.send(DescribeLogDirsRequest(topics=None), 4, 7)
    _, resp = w.receive(ApiKey.DESCRIBE_LOG_DIRS, 4)
    return {
        r.log_dir: (r.error_code, sorted(f"{t.name}-{p.partition_index}" for t in r.topics for p in t.partitions))
        for r in resp.results
    }


def test_a_full_log_dir_goes_offline_and_the_other_carries_on(small_disk, brokers, tmp_path):
    good = tmp_path / "good"
    dirs = f"{good},{small_disk.path}"
    broker = start(brokers, good, {"log.dirs": dirs})
    create_topic(broker.bootstrap, "stays")  # the dir with the fewest partitions: the first
    create_topic(broker.bootstrap, "fills")  # then the other one
    w = Wire(broker.bootstrap)
    try:
        assert _describe_dirs(w) == {str(good): (0, ["stays-0"]), str(small_disk.path): (0, ["fills-0"])}
        small_disk.fill(leave=300 * 1024)
        acked, n, refused = [], 0, None
        while refused is None:
            assert n < 10_000, "the disk never filled"
            values = [value(n + j) for j in range(50)]
            w.send(produce_request("fills", 0, values, acks=1), 9, n)
            _, resp = w.receive(ApiKey.PRODUCE, 9)
            p = resp.responses[0].partition_responses[0]
            if p.error_code == ErrorCode.NONE:
                acked += values
            else:
                refused = p
            n += 50
        assert refused.error_code == ErrorCode.KAFKA_STORAGE_ERROR
        assert "offline log directory" in refused.error_message
        # The same connection carries on, and so does the broker.
        w.send(produce_request("fills", 0, [b"again"], acks=-1), 9, 1)
        assert (
            w.receive(ApiKey.PRODUCE, 9)[1].responses[0].partition_responses[0].error_code
            == ErrorCode.KAFKA_STORAGE_ERROR
        )
        assert _describe_dirs(w) == {
            str(good): (0, ["stays-0"]),
            str(small_disk.path): (ErrorCode.KAFKA_STORAGE_ERROR, []),
        }
        _check_offline_answers(w, "fills", broker_node=1)
    finally:
        w.close()
    # The other dir's partition works for real clients.
    writer = Writer(broker.bootstrap)
    writer.send("stays", [value(i) for i in range(200)])
    assert len(writer.acked) == 200, writer.errors
    assert set(read_all(broker.bootstrap, "stays")) == writer.acked
    assert broker.alive()
    errors = [line for line in broker.log_text().splitlines() if " ERROR " in line and "log directory" in line]
    assert len(errors) == 1 and str(small_disk.path) in errors[0] and "No space left on device" in errors[0], errors

    assert broker.stop() == 0
    small_disk.free()
    broker.start()
    assert check_exactly_once(broker.bootstrap, "fills", set(acked))
    writer = Writer(broker.bootstrap)
    writer.send("fills", [b"after the restart"])
    assert writer.acked == {b"after the restart"}
    broker.kill()
    broker.start()
    check_exactly_once(broker.bootstrap, "fills", set(acked) | {b"after the restart"})


def _check_offline_answers(w: Wire, topic: str, broker_node: int) -> None:
    """What Kafka answers for a partition in an offline log dir."""
    w.send(MetadataRequest(topics=[MetadataRequestTopic(name=topic)]), 12, 2)
    part = w.receive(ApiKey.METADATA, 12)[1].topics[0].partitions[0]
    assert (part.error_code, part.leader_id, part.offline_replicas) == (
        ErrorCode.LEADER_NOT_AVAILABLE,
        -1,
        [broker_node],
    )
    w.send(fetch_request(topic, [(0, 0, 1 << 20)], 1 << 20), 12, 3)
    fetched = w.receive(ApiKey.FETCH, 12)[1].responses[0].partitions[0]
    assert (fetched.error_code, fetched.high_watermark, len(fetched.records)) == (ErrorCode.KAFKA_STORAGE_ERROR, -1, 0)
    w.send(
        ListOffsetsRequest(
            replica_id=-1,
            topics=[ListOffsetsTopic(name=topic, partitions=[ListOffsetsPartition(partition_index=0, timestamp=-1)])],
        ),
        7,
        4,
    )
    listed = w.receive(ApiKey.LIST_OFFSETS, 7)[1].topics[0].partitions[0]
    assert (listed.error_code, listed.offset) == (ErrorCode.KAFKA_STORAGE_ERROR, -1)


def test_a_failed_checkpoint_takes_its_dir_offline_instead_of_the_broker_down(small_disk, brokers, tmp_path):
    good = tmp_path / "good"
    broker = start(
        brokers, good, {"log.dirs": f"{good},{small_disk.path}", "log.flush.offset.checkpoint.interval.ms": "200"}
    )
    create_topic(broker.bootstrap, "stays")
    small_disk.fill()  # not a byte left for the next checkpoint
    w = Wire(broker.bootstrap)
    try:
        wait_for(
            lambda: _describe_dirs(w)[str(small_disk.path)][0] == ErrorCode.KAFKA_STORAGE_ERROR,
            30,
            "the full dir to go offline",
        )
        assert _describe_dirs(w)[str(good)] == (0, ["stays-0"])
    finally:
        w.close()
    writer = Writer(broker.bootstrap)
    writer.send("stays", [value(i) for i in range(10)])
    assert len(writer.acked) == 10, writer.errors
    assert broker.alive()
    assert broker.stop() == 0


# -- CreateTopics on a full disk ----------------------------------------------------


def test_create_topics_on_a_full_disk_answers_storage_error_and_leaves_nothing(small_disk, brokers):
    """The metadata write of a new topic fails: the client gets
    KAFKA_STORAGE_ERROR on an open connection, the topic is not half there
    (not in Metadata, creatable again once there is room), and a restart
    finds exactly what was acknowledged."""
    proc = start(brokers, small_disk.path / "data")
    create_topic(proc.bootstrap, "before", 2)
    admin = AdminClient({"bootstrap.servers": proc.bootstrap})
    small_disk.fill()
    future = admin.create_topics([NewTopic("during", 3, 1)], operation_timeout=30)["during"]
    with pytest.raises(Exception) as refused:
        future.result(60)
    assert refused.value.args[0].code() == KafkaError.KAFKA_STORAGE_ERROR, refused.value
    topics = admin.list_topics(timeout=10).topics
    assert "before" in topics and "during" not in topics
    small_disk.free()
    create_topic(proc.bootstrap, "during", 3)
    proc.restart()
    topics = AdminClient({"bootstrap.servers": proc.bootstrap}).list_topics(timeout=10).topics
    assert len(topics["during"].partitions) == 3 and len(topics["before"].partitions) == 2
