"""A topic deleted and re-created under the same name while a broker of
the cluster was down: on restart that broker must not take its logs of
the old topic for the new one's. Its partition dirs carry the old topic
id (partition.metadata); they are moved aside as strays, data kept, and
the new topic's partitions assigned to it start empty, as a real client
producing and consuming through the new leader sees."""

import logging
import uuid

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from pybroker.cluster import znodes
from pybroker.protocol.messages.create_topics_request import (
    CreatableReplicaAssignment,
    CreatableTopic,
    CreateTopicsRequest,
)
from pybroker.protocol.messages.delete_topics_request import DeleteTopicsRequest
from pybroker.storage.partition_metadata import FILE_NAME, read_topic_id, uuid_text

from .broker_support import cluster_broker, metadata, partitions_view, request, wait_for

TOPIC = "reborn"


def files(directory) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def produce(bootstrap: str, values: dict[int, list[bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    futures = [producer.send(TOPIC, value=v, partition=p) for p, vs in values.items() for v in vs]
    producer.flush(30)
    for f in futures:
        f.get(10)
    producer.close()


def consume(bootstrap: str, partitions: list[int], count: int):
    """The first ``count`` records from the start of the partitions, as
    {partition: [(offset, value)]}, and the partitions' end offsets."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=10000)
    tps = [TopicPartition(TOPIC, p) for p in partitions]
    consumer.assign(tps)
    got: dict[int, list[tuple[int, bytes]]] = {p: [] for p in partitions}
    try:
        for message in consumer:
            got[message.partition].append((message.offset, message.value))
            if sum(map(len, got.values())) >= count:
                break
        ends = {tp.partition: offset for tp, offset in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()
    return got, ends


def test_a_topic_recreated_while_a_broker_was_down_starts_empty_there(zk_connect, zk_admin, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="pybroker")
    with cluster_broker(zk_connect, 1, tmp_path) as a:
        b1 = a.bootstrap_servers
        with cluster_broker(zk_connect, 2, tmp_path) as b:
            wait_for(lambda: len(metadata(b1, []).brokers) == 2, what="both brokers registered")
            topic = CreatableTopic(
                name=TOPIC,
                num_partitions=-1,
                replication_factor=-1,
                assignments=[
                    CreatableReplicaAssignment(partition_index=0, broker_ids=[2, 1]),
                    CreatableReplicaAssignment(partition_index=1, broker_ids=[2, 1]),
                ],
            )
            answer = request(b1, CreateTopicsRequest(topics=[topic], timeout_ms=15000), 7)
            assert answer.topics[0].error_code == 0
            wait_for(lambda: [p[1] for p in partitions_view(metadata(b1, [TOPIC]), TOPIC)] == [2, 2], what="led by 2")
            produce(b1, {0: [b"old-0-%d" % i for i in range(4)], 1: [b"old-1-%d" % i for i in range(3)]})
            old_id = metadata(b1, [TOPIC]).topics[0].topic_id
            data = b.data_dir
            assert [read_topic_id(data / f"{TOPIC}-{p}") for p in (0, 1)] == [old_id, old_id]
        old_files = {p: files(data / f"{TOPIC}-{p}") for p in (0, 1)}

        # Broker 2 is down: the topic is deleted, and made again under its name.
        wait_for(lambda: len(metadata(b1, []).brokers) == 1, what="broker 2 gone")
        answer = request(b1, DeleteTopicsRequest(topic_names=[TOPIC], timeout_ms=15000), 4)
        assert answer.responses[0].error_code == 0
        wait_for(lambda: zk_admin.exists(f"/brokers/topics/{TOPIC}") is None, what="the old topic's znodes gone")
        # CreateTopics refuses an assignment naming a broker that is not
        # registered; Kafka's AdminZkClient (kafka-topics --zookeeper) writes
        # these two znodes, and the controller does the rest.
        new_id = uuid.uuid4()
        zk_admin.create(f"/config/topics/{TOPIC}", znodes.encode_topic_config({}), makepath=True)
        zk_admin.create(f"/brokers/topics/{TOPIC}", znodes.encode_topic(new_id, {0: [2], 1: [2]}))
        wait_for(lambda: metadata(b1, [TOPIC]).topics[0].topic_id == new_id, what="the new topic")

        caplog.clear()
        with cluster_broker(zk_connect, 2, tmp_path) as b:
            b2 = b.bootstrap_servers
            for p in (0, 1):
                (stray,) = data.glob(f"{TOPIC}-{p}.*-stray")
                assert files(stray) == old_files[p]
                assert read_topic_id(data / f"{TOPIC}-{p}") == new_id
                assert b.broker.logs.get(TOPIC, p).log_end_offset == 0
                assert any(
                    r.levelno == logging.WARNING
                    and f"{TOPIC}-{p}" in r.getMessage()
                    and uuid_text(old_id) in r.getMessage()
                    and uuid_text(new_id) in r.getMessage()
                    for r in caplog.records
                )

            # No replica was live until now: broker 2 leads both.
            def led():
                views = [partitions_view(metadata(s, [TOPIC]), TOPIC) for s in (b1, b2)]
                return views[0] == views[1] and [p[1] for p in views[0]] == [2, 2]

            wait_for(led, what="the new partitions led by 2")
            assert metadata(b2, [TOPIC]).topics[0].topic_id == new_id
            produce(b2, {0: [b"new-0-0"], 1: [b"new-1-0", b"new-1-1"]})
            got, ends = consume(b2, [0, 1], 3)
            assert got == {0: [(0, b"new-0-0")], 1: [(0, b"new-1-0"), (1, b"new-1-1")]}
            assert ends == {0: 1, 1: 2}
        # Moved aside once: a later start finds the new topic's logs.
        with cluster_broker(zk_connect, 2, tmp_path) as b:
            assert len(list(data.glob(f"{TOPIC}-*-stray"))) == 2
            assert b.broker.logs.get(TOPIC, 1).log_end_offset == 2
            assert (data / f"{TOPIC}-1" / FILE_NAME).exists()
