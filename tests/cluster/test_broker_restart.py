"""One broker of a cluster across restarts, and its offsets topic: the
logs it keeps are the ones ZooKeeper assigns it, others are moved aside;
the offsets topic is made with offsets.topic.replication.factor replicas,
and not at all while fewer brokers are live (COORDINATOR_NOT_AVAILABLE)."""

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.find_coordinator_request import FindCoordinatorRequest

from .broker_support import cluster_broker, metadata, partitions_view, request, wait_for


def test_a_restarted_broker_keeps_its_partitions_and_moves_the_others_aside(zk_connect, zk_admin, tmp_path):
    props = {"default.replication.factor": "1", "num.partitions": "1"}
    with cluster_broker(zk_connect, 1, tmp_path, props) as broker:
        bootstrap = broker.bootstrap_servers
        for topic in ("stays", "goes"):
            wait_for(lambda t=topic: partitions_view(metadata(bootstrap, [t], auto_create=True), t), what=topic)
            wait_for(lambda t=topic: partitions_view(metadata(bootstrap, [t]), t)[0][1] == 1, what="a leader")
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
        for i in range(5):
            producer.send("stays", value=b"kept-%d" % i)
            producer.send("goes", value=b"lost-%d" % i)
        producer.flush(30)
        producer.close()
        data = broker.data_dir
        epoch = broker.broker.broker_epoch
        cluster_id = metadata(bootstrap, []).cluster_id

    # While it is down, "goes" is deleted (as a controller would: the topic
    # znode and its children, and its config).
    zk_admin.delete("/brokers/topics/goes", recursive=True)
    zk_admin.delete("/config/topics/goes")

    with cluster_broker(zk_connect, 1, tmp_path, props) as broker:
        bootstrap = broker.bootstrap_servers
        assert broker.broker.broker_epoch != epoch  # a new registration
        assert metadata(bootstrap, []).cluster_id == cluster_id
        assert not (data / "goes-0").exists()
        assert [p.name.split(".")[0] for p in data.glob("goes-0.*-stray")] == ["goes-0"]
        wait_for(lambda: partitions_view(metadata(bootstrap, ["stays"]), "stays")[0][1] == 1, what="stays led")
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=10000)
        consumer.assign([TopicPartition("stays", 0)])
        values = []
        for message in consumer:
            values.append(message.value)
            if len(values) == 5:
                break
        consumer.close()
        assert values == [b"kept-%d" % i for i in range(5)]
        assert metadata(bootstrap, ["goes"]).topics[0].error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


def test_the_offsets_topic_waits_for_enough_live_brokers(zk_connect, zk_admin, tmp_path):
    # offsets.topic.replication.factor is Kafka's 3 in cluster mode when not set.
    with cluster_broker(zk_connect, 1, tmp_path) as broker:
        bootstrap = broker.bootstrap_servers
        for _ in range(3):
            answer = request(bootstrap, FindCoordinatorRequest(key="lonely"), 3)
            assert answer.error_code == ErrorCode.COORDINATOR_NOT_AVAILABLE
        assert zk_admin.exists("/brokers/topics/__consumer_offsets") is None
        with cluster_broker(zk_connect, 2, tmp_path), cluster_broker(zk_connect, 3, tmp_path):
            wait_for(lambda: len(metadata(bootstrap, []).brokers) == 3, what="three live brokers")

            def coordinator():
                answer = request(bootstrap, FindCoordinatorRequest(key="lonely"), 3)
                return answer if answer.error_code == 0 else None

            answer = wait_for(coordinator, what="a coordinator")
            view = partitions_view(metadata(bootstrap, ["__consumer_offsets"]), "__consumer_offsets")
            assert len(view) == 3 and all(sorted(p[3]) == [1, 2, 3] for p in view)
            assert answer.node_id in (1, 2, 3)
            assert metadata(bootstrap, ["__consumer_offsets"]).topics[0].is_internal
