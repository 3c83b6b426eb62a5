"""A single node's partition logs carry their topic's id (partition.metadata):
a log of another topic that had the same name is moved aside at start, its
data kept, and the topic served from a new, empty log; a log made before
the file existed is given it; an unreadable one stops the start. Brokers
run as processes, read with kafka-python and raw Metadata requests."""

from __future__ import annotations

import shutil
import uuid

from kafka.admin import NewPartitions

from pybroker.process import request
from pybroker.protocol.messages.metadata_request import MetadataRequest, MetadataRequestTopic
from pybroker.storage.partition_metadata import FILE_NAME, read_topic_id, uuid_text

from .clients import KafkaPython
from .test_data_dirs import start_refused
from .workload import make_messages, unique_topic


def topic_id(bootstrap: str, topic: str) -> uuid.UUID:
    """The topic's id as the broker reports it (Metadata v10+)."""
    answer = request(bootstrap, MetadataRequest(topics=[MetadataRequestTopic(name=topic)]), 12)
    (t,) = answer.topics
    assert t.error_code == 0, t
    return t.topic_id


def files(directory) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.name != FILE_NAME}


def test_a_log_of_another_topic_with_the_same_name_is_moved_aside(broker_process):
    topic = unique_topic("reborn")
    first = broker_process()
    client = KafkaPython(first.bootstrap)
    client.create_topic(topic, 1)
    client.produce(topic, make_messages(5, seed=1, null_header_values=False))
    first_id = topic_id(first.bootstrap, topic)
    first.stop()
    old_dir = first.data_dir / f"{topic}-0"
    assert read_topic_id(old_dir) == first_id
    old_data = files(old_dir)

    second = broker_process()
    KafkaPython(second.bootstrap).create_topic(topic, 1)
    second_id = topic_id(second.bootstrap, topic)
    assert second_id != first_id
    second.stop()
    # The first broker's log copied in place of the second's: same name.
    target = second.data_dir / f"{topic}-0"
    shutil.rmtree(target)
    shutil.copytree(old_dir, target)

    second.start()
    (stray,) = second.data_dir.glob(f"{topic}-0.*-stray")
    assert files(stray) == old_data and read_topic_id(stray) == first_id
    text = second.log_text()
    assert f"moved {topic}-0 aside to" in text
    assert uuid_text(first_id) in text and uuid_text(second_id) in text
    assert read_topic_id(target) == second_id == topic_id(second.bootstrap, topic)

    client = KafkaPython(second.bootstrap)
    begin, end, _ = client.offsets(topic, 1, {})
    assert (begin, end) == ({0: 0}, {0: 0})
    fresh = make_messages(3, seed=2, null_header_values=False)
    client.produce(topic, fresh)
    got = client.consume(topic, 1, 3)
    assert [(c.offset, c.value) for c in got] == [(i, m.value) for i, m in enumerate(fresh)]
    second.restart()  # the stray stays aside; the new log is the topic's
    assert stray.exists() and read_topic_id(target) == second_id
    assert [c.value for c in KafkaPython(second.bootstrap).consume(topic, 1, 3)] == [m.value for m in fresh]


def test_a_log_made_without_the_file_is_given_its_topics_id(broker_process):
    topic = unique_topic("older")
    broker = broker_process()
    client = KafkaPython(broker.bootstrap)
    client.create_topic(topic, 2)
    messages = make_messages(8, seed=3, null_header_values=False)
    client.produce(topic, messages)
    broker.stop()
    for p in range(2):
        (broker.data_dir / f"{topic}-{p}" / FILE_NAME).unlink()  # as an older pybroker left it

    broker.start()
    expected = topic_id(broker.bootstrap, topic)
    assert [read_topic_id(broker.data_dir / f"{topic}-{p}") for p in range(2)] == [expected, expected]
    assert not list(broker.data_dir.glob("*-stray"))
    got = KafkaPython(broker.bootstrap).consume(topic, 2, 8)
    assert sorted(c.value for c in got) == sorted(m.value for m in messages)


def test_every_way_a_partition_is_made_records_its_topic(broker_process):
    created, auto = unique_topic("made"), unique_topic("auto")
    broker = broker_process({"num.partitions": "2"})
    client = KafkaPython(broker.bootstrap)
    client.create_topic(created, 1)
    client._admin(lambda a: a.create_partitions({created: NewPartitions(3)}))
    client.produce(auto, make_messages(1, seed=4, null_header_values=False))  # auto-created by Metadata
    for topic, count in ((created, 3), (auto, 2)):
        expected = topic_id(broker.bootstrap, topic)
        assert [read_topic_id(broker.data_dir / f"{topic}-{p}") for p in range(count)] == [expected] * count


def test_an_unreadable_partition_metadata_file_stops_the_start_naming_it(broker_process):
    topic = unique_topic("damaged")
    broker = broker_process()
    KafkaPython(broker.bootstrap).create_topic(topic, 1)
    broker.stop()
    damaged = broker.data_dir / f"{topic}-0" / FILE_NAME
    damaged.write_bytes(b"version: 0\ntopic_id: not-an-id")
    output = start_refused(broker.data_dir)
    assert str(damaged) in output and "Malformed line" in output
    assert damaged.read_bytes() == b"version: 0\ntopic_id: not-an-id"
