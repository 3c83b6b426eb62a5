"""What a broker writes to ZooKeeper is byte for byte what Kafka's brokers
write (design/CLUSTER.md §B.1): compared with the codec's output and with
literal JSON as Kafka 3.8 writes it, read back with a plain ZooKeeper
client. Also the ZooKeeper-mode meta.properties of every log dir."""

import json

from pybroker.cluster import znodes
from pybroker.protocol.messages.create_topics_request import CreatableTopic, CreatableTopicConfig, CreateTopicsRequest
from pybroker.protocol.messages.incremental_alter_configs_request import (
    AlterableConfig,
    AlterConfigsResource,
    IncrementalAlterConfigsRequest,
)
from pybroker.protocol.messages.init_producer_id_request import InitProducerIdRequest

from .broker_support import cluster_broker, metadata, request, wait_for


def test_the_znodes_a_broker_writes_are_kafkas(zk_connect, zk_admin, tmp_path):
    with cluster_broker(zk_connect, 7, tmp_path, {"broker.rack": "rack-a"}) as broker:
        host, port = broker.host, broker.port

        data, stat = zk_admin.get("/brokers/ids/7")
        timestamp = json.loads(data)["timestamp"]
        assert (
            data
            == (
                '{"features":{},"listener_security_protocol_map":{"PLAINTEXT":"PLAINTEXT"},'
                f'"endpoints":["PLAINTEXT://{host}:{port}"],"rack":"rack-a","jmx_port":-1,"port":{port},'
                f'"host":"{host}","version":5,"timestamp":"{timestamp}"}}'
            ).encode()
        )
        registration = znodes.BrokerRegistration(7, host, port, rack="rack-a", timestamp_ms=int(timestamp))
        assert data == znodes.encode_broker(registration)
        # Ephemeral, of the broker's own session; its czxid is the broker epoch.
        assert stat.ephemeralOwner == broker.broker.zk.session_id
        assert stat.czxid == broker.broker.broker_epoch
        assert metadata(broker.bootstrap_servers, []).brokers[0].rack == "rack-a"

        data, _ = zk_admin.get("/cluster/id")
        cluster_id = metadata(broker.bootstrap_servers, []).cluster_id
        assert data == f'{{"version":"1","id":"{cluster_id}"}}'.encode() == znodes.encode_cluster_id(cluster_id)
        assert len(cluster_id) == 22  # Kafka's Uuid text: base64url of 16 bytes, unpadded
        meta = (broker.data_dir / "meta.properties").read_text().splitlines()
        assert sorted(meta) == sorted(["version=0", f"cluster.id={cluster_id}", "broker.id=7"])

        for path in znodes.PERSISTENT_PATHS:
            assert zk_admin.exists(path) is not None, path

        topic = CreatableTopic(
            name="golden",
            num_partitions=2,
            replication_factor=1,
            configs=[CreatableTopicConfig(name="retention.ms", value="1000")],
        )
        created = request(broker.bootstrap_servers, CreateTopicsRequest(topics=[topic], timeout_ms=15000), 7).topics[0]
        assert created.error_code == 0
        topic_id = znodes.topic_id_text(created.topic_id)
        data, _ = zk_admin.get("/brokers/topics/golden")
        assert (
            data
            == (
                f'{{"partitions":{{"0":[7],"1":[7]}},"topic_id":"{topic_id}","adding_replicas":{{}},'
                '"removing_replicas":{},"version":3}'
            ).encode()
        )
        assert data == znodes.encode_topic(created.topic_id, {0: [7], 1: [7]})
        data, _ = zk_admin.get("/config/topics/golden")
        assert data == b'{"version":1,"config":{"retention.ms":"1000"}}'

        resource = AlterConfigsResource(
            resource_type=2,
            resource_name="golden",
            configs=[AlterableConfig(name="cleanup.policy", config_operation=0, value="compact")],
        )
        altered = request(broker.bootstrap_servers, IncrementalAlterConfigsRequest(resources=[resource]), 1)
        assert altered.responses[0].error_code == 0
        data, _ = zk_admin.get("/config/topics/golden")
        assert data == b'{"version":1,"config":{"cleanup.policy":"compact","retention.ms":"1000"}}'
        assert data == znodes.encode_topic_config({"retention.ms": "1000", "cleanup.policy": "compact"})
        changes = zk_admin.get_children("/config/changes")
        assert changes == ["config_change_0000000000"]
        data, _ = zk_admin.get("/config/changes/config_change_0000000000")
        assert data == b'{"version":2,"entity_path":"topics/golden"}' == znodes.encode_config_change("topics/golden")

        answer = request(broker.bootstrap_servers, InitProducerIdRequest(transactional_id=None), 4)
        assert (answer.error_code, answer.producer_id) == (0, 0)
        data, _ = zk_admin.get("/latest_producer_id_block")
        assert data == b'{"version":1,"broker":7,"block_start":"0","block_end":"999"}'
        assert data == znodes.encode_producer_id_block(7, 0, 999)

    # Stopped: its registration went with its session, at once.
    wait_for(lambda: zk_admin.exists("/brokers/ids/7") is None, timeout=2, what="the registration gone")


def test_a_producer_id_block_is_taken_after_the_last_one_written(zk_connect, zk_admin, tmp_path):
    zk_admin.create(
        "/latest_producer_id_block", b'{"version":1,"broker":3,"block_start":"5000","block_end":"5999"}', makepath=True
    )
    with cluster_broker(zk_connect, 1, tmp_path) as broker:
        answer = request(broker.bootstrap_servers, InitProducerIdRequest(transactional_id=None), 4)
        assert answer.producer_id == 6000
        data, stat = zk_admin.get("/latest_producer_id_block")
        assert data == b'{"version":1,"broker":1,"block_start":"6000","block_end":"6999"}'
        assert stat.version == 1  # a versioned write over the block read
