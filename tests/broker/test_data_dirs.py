"""Guards on the data directories, tried as a careless operator would.

Each case once lost acknowledged data or touched a directory it had no
business touching: two brokers on one directory, a start that fails (port
in use) rewriting a stopped broker's files, ``log.dirs`` reordered, a
directory of another node or another cluster, a partition directory
nothing knows about, a corrupt metadata file. Brokers run as processes
(started and stopped by PID); a refused start is a plain subprocess whose
exit code and output are checked, and the directory's files (names, sizes,
contents, modification times) are compared before and after it.
"""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
from pathlib import Path

import pytest

from pybroker.process import free_port, pybroker_command

from .clients import Confluent
from .workload import make_messages, unique_topic

REFUSED_WITHIN = 60


def tree(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under ``root``: size, mtime and a digest of its bytes."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            st = path.stat()
            out[str(path.relative_to(root))] = (st.st_size, st.st_mtime_ns, hashlib.sha1(path.read_bytes()).hexdigest())
    return out


def start_refused(data_dir: Path, props: dict[str, str] | None = None, port: int | None = None) -> str:
    """Run a broker that must refuse to start; return what it printed."""
    argv = pybroker_command(props)(port or free_port(), data_dir)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=REFUSED_WITHIN, check=False)
    output = done.stdout + done.stderr
    assert done.returncode != 0, f"the broker started (exit {done.returncode}):\n{output[-2000:]}"
    assert "Traceback" not in output, output[-3000:]
    return output


def produce_and_count(bootstrap: str, topic: str, n: int, seed: int, partitions: int = 1) -> None:
    client = Confluent(bootstrap)
    client.produce(topic, make_messages(n, seed))


def read_all(bootstrap: str, topic: str, partitions: int, count: int) -> list:
    got = Confluent(bootstrap).consume(topic, partitions, count, timeout=30)
    assert len(got) == count, f"read {len(got)} of {count} acknowledged messages"
    return got


def test_a_second_broker_on_the_same_directory_refuses_and_touches_nothing(broker_process, tmp_path):
    first = broker_process({"num.partitions": "2"})
    topic = unique_topic("locked")
    produce_and_count(first.bootstrap, topic, 200, seed=1)
    before = tree(first.data_dir)

    output = start_refused(first.data_dir)

    assert f"Failed to acquire lock on file .lock in {first.data_dir}" in output
    assert tree(first.data_dir) == before
    produce_and_count(first.bootstrap, topic, 100, seed=2)
    read_all(first.bootstrap, topic, 2, 300)
    first.restart(kill=True)
    read_all(first.bootstrap, topic, 2, 300)


def test_a_start_that_cannot_bind_leaves_the_directory_as_it_was(broker_process, tmp_path):
    broker = broker_process({"num.partitions": "1"})
    topic = unique_topic("unbound")
    produce_and_count(broker.bootstrap, topic, 50, seed=3)
    broker.stop()
    before = tree(broker.data_dir)
    assert ".kafka_cleanshutdown" in before
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        output = start_refused(broker.data_dir, port=taken.getsockname()[1])
    assert "cannot listen on PLAINTEXT://127.0.0.1:" in output
    after = tree(broker.data_dir)
    after.pop(".lock", None), before.pop(".lock", None)
    assert after == before
    broker.start()
    read_all(broker.bootstrap, topic, 1, 50)


def test_reordered_log_dirs_keep_every_topic(broker_process, tmp_path):
    dirs = [tmp_path / "a", tmp_path / "b", tmp_path / "c"]
    broker = broker_process({"log.dirs": ",".join(map(str, dirs)), "num.partitions": "6"}, data_dir=dirs[0])
    topic = unique_topic("spread")
    produce_and_count(broker.bootstrap, topic, 300, seed=4)
    broker.stop()
    assert all(any(p.is_dir() for p in d.iterdir()) for d in dirs), "partitions were not spread over the dirs"

    reordered = broker_process({"log.dirs": ",".join(map(str, reversed(dirs))), "num.partitions": "6"}, data_dir=dirs[0])
    read_all(reordered.bootstrap, topic, 6, 300)
    for d in dirs:
        meta = (d / "meta.properties").read_text()
        assert "node.id=1" in meta and "cluster.id=" in meta


def kafka_style_dir(root: Path, node_id: int, cluster_id: str) -> None:
    """A data dir as Kafka leaves it: meta.properties and a partition."""
    part = root / "orders-0"
    part.mkdir(parents=True)
    (part / "00000000000000000000.log").write_bytes(b"\0" * 100)
    (part / "00000000000000000000.index").write_bytes(b"")
    (root / "meta.properties").write_text(
        f"#\n#Thu Jan 01 00:00:00 UTC 2026\nnode.id={node_id}\nversion=1\n"
        f"cluster.id={cluster_id}\ndirectory.id=AAAAAAAAAAAAAAAAAAAAAA\n"
    )


def test_another_nodes_directory_is_refused_untouched(tmp_path):
    data = tmp_path / "kafka"
    kafka_style_dir(data, node_id=5, cluster_id="MkU3OEVBNTcwNTJENDM2Qk")
    before = tree(data)
    output = start_refused(data, {"node.id": "1"})
    assert "Stored node id 5 doesn't match previous node id 1" in output
    assert tree(data) == {**before, ".lock": tree(data)[".lock"]}


def test_partitions_without_metadata_are_refused_untouched(tmp_path):
    data = tmp_path / "kafka"
    kafka_style_dir(data, node_id=1, cluster_id="MkU3OEVBNTcwNTJENDM2Qk")
    before = tree(data)
    output = start_refused(data)
    assert "holds partition directories but no log dir holds cluster-metadata.json" in output
    assert tree(data) == {**before, ".lock": tree(data)[".lock"]}


def test_a_directory_of_another_cluster_is_refused(broker_process, tmp_path):
    broker = broker_process()
    broker.stop()
    other = tmp_path / "other"
    other.mkdir()
    (other / "meta.properties").write_text("version=1\nnode.id=1\ncluster.id=c0ffeec0ffeec0ffeec0ff\n")
    output = start_refused(broker.data_dir, {"log.dirs": f"{broker.data_dir},{other}"})
    assert "Invalid cluster.id in:" in output and "c0ffeec0ffeec0ffeec0ff" in output


def test_an_unknown_partition_directory_is_moved_aside_not_deleted(broker_process, tmp_path):
    broker = broker_process()
    topic = unique_topic("kept")
    produce_and_count(broker.bootstrap, topic, 20, seed=5)
    broker.stop()
    ghost = broker.data_dir / "ghost-3"
    ghost.mkdir()
    (ghost / "00000000000000000000.log").write_bytes(b"precious")

    broker.start()
    strays = [p for p in broker.data_dir.iterdir() if p.name.startswith("ghost-3.") and p.name.endswith("-stray")]
    assert len(strays) == 1 and not ghost.exists()
    assert (strays[0] / "00000000000000000000.log").read_bytes() == b"precious"
    assert "moved ghost-3 aside to" in broker.log_text()
    read_all(broker.bootstrap, topic, 1, 20)
    broker.restart()  # a stray stays where it is, and is not a partition
    assert strays[0].exists()
    read_all(broker.bootstrap, topic, 1, 20)


@pytest.mark.parametrize("damage", [b"{not json", b'{"version": 1}', b"\xff\xfe"])
def test_a_corrupt_metadata_file_is_named_in_one_line(broker_process, damage):
    broker = broker_process()
    broker.stop()
    path = broker.data_dir / "cluster-metadata.json"
    path.write_bytes(damage)
    output = start_refused(broker.data_dir)
    assert f"cannot read the cluster metadata in {path}" in output
    assert len(output.strip().splitlines()) <= 3, output



def test_a_stored_config_now_refused_is_dropped_not_fatal(broker_process):
    """An override an older version stored but Kafka's rules refuse
    (flush.ms=-1) is dropped with a warning: the broker starts, the topic
    keeps its data and its valid overrides, and the default applies."""
    from .test_admin import describe_topic

    broker = broker_process()
    topic = unique_topic("old-configs")
    produce_and_count(broker.bootstrap, topic, 10, seed=6)
    broker.stop()
    path = broker.data_dir / "cluster-metadata.json"
    data = json.loads(path.read_text())
    (stored,) = [t for t in data["topics"] if t["name"] == topic]
    stored["configs"] = {"flush.ms": "-1", "retention.ms": "123456789"}
    path.write_text(json.dumps(data))

    broker.start()
    assert f"topic {topic}: dropping its stored config flush.ms='-1'" in broker.log_text()
    configs = describe_topic(broker.bootstrap, topic)
    assert configs["retention.ms"].value == "123456789"
    assert configs["flush.ms"].value == str(2**63 - 1)
    read_all(broker.bootstrap, topic, 1, 10)
