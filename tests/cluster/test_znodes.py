"""Golden tests: pybroker's znodes are byte for byte what Kafka 3.8 writes.

The field sets, versions and string-or-number choices come from
apache/kafka ``core/src/main/scala/kafka/zk/ZkData.scala``. The key order
of each literal is the JVM's (see ``pybroker.cluster.jvm_json``); the
literals marked "as read back" were read with zkCli from ZooKeepers that
Kafka 3.x brokers (Scala 2.13 builds) had written, and agree with
``docs/implementation.html`` (apache/kafka 3.8) where that shows an order.
"""

import uuid

import pytest

from pybroker.cluster import znodes
from pybroker.cluster.model import BrokerInfo, PartitionState
from pybroker.cluster.znodes import BrokerRegistration, ZnodeFormatError


def test_paths_are_kafkas():
    # ZkData.scala: the *ZNode.path definitions.
    assert znodes.broker_path(3) == "/brokers/ids/3"
    assert znodes.topic_path("t") == "/brokers/topics/t"
    assert znodes.partitions_path("t") == "/brokers/topics/t/partitions"
    assert znodes.partition_path("t", 2) == "/brokers/topics/t/partitions/2"
    assert znodes.partition_state_path("t", 2) == "/brokers/topics/t/partitions/2/state"
    assert znodes.topic_config_path("t") == "/config/topics/t"
    assert znodes.delete_topic_path("t") == "/admin/delete_topics/t"
    assert znodes.config_change_path() == "/config/changes/config_change_"
    assert znodes.isr_change_path() == "/isr_change_notification/isr_change_"
    assert (znodes.CONTROLLER, znodes.CONTROLLER_EPOCH, znodes.CLUSTER_ID, znodes.PRODUCER_ID_BLOCK) == (
        "/controller",
        "/controller_epoch",
        "/cluster/id",
        "/latest_producer_id_block",
    )
    # ZkData.PersistentZkPaths ++ ConfigType.ALL (server-common ConfigType.java).
    assert znodes.PERSISTENT_PATHS == (
        "/consumers",
        "/brokers/ids",
        "/brokers/topics",
        "/config/changes",
        "/admin/delete_topics",
        "/brokers/seqid",
        "/isr_change_notification",
        "/latest_producer_id_block",
        "/log_dir_event_notification",
        "/config/topics",
        "/config/clients",
        "/config/users",
        "/config/brokers",
        "/config/ips",
    )


def test_controller():
    # ControllerZNode.encode (version 2); as read back from a Kafka 3.6 cluster.
    assert (
        znodes.encode_controller(1, 1704032949256)
        == b'{"version":2,"brokerid":1,"timestamp":"1704032949256","kraftControllerEpoch":-1}'
    )
    assert (
        znodes.decode_controller(b'{"version":2,"brokerid":1,"timestamp":"1704032949256","kraftControllerEpoch":-1}')
        == 1
    )
    # Version 1, as Kafka before 3.4 wrote it.
    assert znodes.decode_controller(b'{"version":1,"brokerid":2,"timestamp":"1673382716473"}') == 2


def test_controller_epoch_is_plain_decimal():
    # ControllerEpochZNode: epoch.toString in UTF-8.
    assert znodes.encode_controller_epoch(17) == b"17"
    assert znodes.decode_controller_epoch(b"17") == 17
    with pytest.raises(ZnodeFormatError):
        znodes.decode_controller_epoch(b"{}")


def test_cluster_id_version_is_a_string():
    # ClusterIdZNode.toJson: Map("version" -> "1", "id" -> id).
    data = b'{"version":"1","id":"eQzK4lYlQ9y8P21IScOl_g"}'
    assert znodes.encode_cluster_id("eQzK4lYlQ9y8P21IScOl_g") == data
    assert znodes.decode_cluster_id(data) == "eQzK4lYlQ9y8P21IScOl_g"


BROKER_V5 = (
    b'{"features":{},"listener_security_protocol_map":{"PLAINTEXT":"PLAINTEXT"},'
    b'"endpoints":["PLAINTEXT://server1:9092"],"jmx_port":-1,"port":9092,"host":"server1",'
    b'"version":5,"timestamp":"1704032948949"}'
)


def test_broker_registration_v5():
    # BrokerIdZNode.encode, version 5, no rack; as read back from Kafka 3.x.
    reg = BrokerRegistration(1, "server1", 9092, timestamp_ms=1704032948949)
    assert znodes.encode_broker(reg) == BROKER_V5
    back = znodes.decode_broker(BROKER_V5, czxid=4294967322, node_id=1)
    assert back == BrokerRegistration(1, "server1", 9092, epoch=4294967322, timestamp_ms=1704032948949)
    assert back.info == BrokerInfo(1, "server1", 9092, None)


def test_broker_registration_with_rack():
    # "rack" is added only when set (BrokerIdZNode.encode); it falls in the
    # mutable.HashMap between "endpoints" and "jmx_port".
    reg = BrokerRegistration(2, "h", 9093, rack="dc1", timestamp_ms=5)
    data = znodes.encode_broker(reg)
    assert data == (
        b'{"features":{},"listener_security_protocol_map":{"PLAINTEXT":"PLAINTEXT"},'
        b'"endpoints":["PLAINTEXT://h:9093"],"rack":"dc1","jmx_port":-1,"port":9093,"host":"h",'
        b'"version":5,"timestamp":"5"}'
    )
    assert znodes.decode_broker(data, 9, node_id=2).info == BrokerInfo(2, "h", 9093, "dc1")


def test_broker_registration_ipv6_and_named_listener():
    # EndPoint.connectionString brackets an IPv6 host; a listener that is not
    # PLAINTEXT leaves the legacy host/port as null/-1.
    reg = BrokerRegistration(1, "::1", 9092, listener="CLIENT", security_protocol="SSL", timestamp_ms=1)
    data = znodes.encode_broker(reg)
    assert b'"endpoints":["CLIENT://[::1]:9092"]' in data
    assert b'"port":-1,"host":null' in data
    assert b'"listener_security_protocol_map":{"CLIENT":"SSL"}' in data
    back = znodes.decode_broker(data, 1, node_id=1)
    assert (back.host, back.port, back.listener, back.security_protocol) == ("::1", 9092, "CLIENT", "SSL")


@pytest.mark.parametrize(
    "data, listener, expected",
    [
        # The samples of core/src/test/scala/unit/kafka/cluster/BrokerEndPointTest.scala:
        (
            b'{"jmx_port":-1,"timestamp":"1420485325400","host":"172.16.8.243","version":1,"port":9091}',
            None,
            ("172.16.8.243", 9091, None),
        ),
        (
            (
                b'{"version":2,"host":"localhost","port":9092,"jmx_port":9999,"timestamp":"1416974968782",'
                b'"endpoints":["PLAINTEXT://localhost:9092"]}'
            ),
            None,
            ("localhost", 9092, None),
        ),
        (
            (
                b'{"version":3,"host":"localhost","port":9092,"jmx_port":9999,"timestamp":"2233345666",'
                b'"endpoints":["PLAINTEXT://host1:9092", "SSL://host1:9093"],"rack":"dc1"}'
            ),
            None,
            ("host1", 9092, "dc1"),
        ),
        (
            (
                b'{"version":4,"host":"localhost","port":9092,"jmx_port":9999,"timestamp":"2233345666",'
                b'"endpoints":["CLIENT://host1:9092", "REPLICATION://host1:9093"],'
                b'"listener_security_protocol_map":{"CLIENT":"SSL", "REPLICATION":"PLAINTEXT"},"rack":null}'
            ),
            "CLIENT",
            ("host1", 9092, None),
        ),
        (
            (
                b'{"version":5,"host":"localhost","port":9092,"jmx_port":9999,"timestamp":"2233345666",'
                b'"endpoints":["CLIENT://host1:9092", "REPLICATION://host1:9093"],'
                b'"listener_security_protocol_map":{"CLIENT":"SSL", "REPLICATION":"PLAINTEXT"},"rack":"dc1",'
                b'"features": {"feature1": {"min_version": 1, "max_version": 2}}}'
            ),
            None,  # no listener named: the PLAINTEXT one
            ("host1", 9093, "dc1"),
        ),
        # testFromJsonFutureVersion: unknown fields and versions are read.
        (
            (
                b'{"foo":"bar","version":100,"host":"localhost","port":9092,"jmx_port":9999,'
                b'"timestamp":"1416974968782","endpoints":["SSL://localhost:9093"]}'
            ),
            None,
            ("localhost", 9093, None),
        ),
        # Version 4 as Kafka 2.x (Scala 2.12) brokers wrote it, read back.
        (
            (
                b'{"listener_security_protocol_map":{"PLAINTEXT":"PLAINTEXT"},"endpoints":["PLAINTEXT://hadoop0:9092"],'
                b'"jmx_port":-1,"host":"hadoop0","timestamp":"1620732279919","port":9092,"version":4}'
            ),
            None,
            ("hadoop0", 9092, None),
        ),
        # Two listeners (Kafka 3.x, read back); the client listener chosen by name.
        (
            (
                b'{"features":{},"listener_security_protocol_map":{"PLAINTEXT":"PLAINTEXT","EXTERNAL":"PLAINTEXT"},'
                b'"endpoints":["PLAINTEXT://kafka-1:29092","EXTERNAL://localhost:9092"],"jmx_port":-1,"port":29092,'
                b'"host":"kafka-1","version":5,"timestamp":"1"}'
            ),
            "EXTERNAL",
            ("localhost", 9092, None),
        ),
    ],
)
def test_broker_registrations_kafka_reads(data, listener, expected):
    reg = znodes.decode_broker(data, 77, node_id=1, listener=listener)
    assert (reg.host, reg.port, reg.rack) == expected
    assert reg.epoch == 77


def test_broker_registration_refused():
    with pytest.raises(ZnodeFormatError):
        znodes.decode_broker(b'{"version":0,"host":"h","port":1,"jmx_port":-1}', 1)
    with pytest.raises(ZnodeFormatError):  # a listener without a security protocol
        znodes.decode_broker(
            b'{"version":4,"endpoints":["CLIENT://h:1"],"listener_security_protocol_map":{},"jmx_port":-1}', 1
        )
    with pytest.raises(ZnodeFormatError):
        znodes.decode_broker(b"not json", 1)


def test_topic_id_text_is_kafkas_uuid_string():
    # Uuid.toString: Base64.getUrlEncoder().withoutPadding() of msb then lsb.
    assert znodes.topic_id_text(uuid.UUID(int=0)) == "AAAAAAAAAAAAAAAAAAAAAA"
    assert znodes.topic_id_text(uuid.UUID(int=(34 << 64) | 98)) == "AAAAAAAAACIAAAAAAAAAYg"
    assert znodes.parse_topic_id("AAAAAAAAACIAAAAAAAAAYg") == uuid.UUID(int=(34 << 64) | 98)
    text = "McZM_uPoQZmvSqcFaYC_vg"  # URL-safe alphabet: '_' and '-'
    assert znodes.topic_id_text(znodes.parse_topic_id(text)) == text
    for bad in ("AAAA", "A" * 25, "!!!!!!!!!!!!!!!!!!!!!!"):
        with pytest.raises(ZnodeFormatError):
            znodes.parse_topic_id(bad)


def test_topic_znode_v3():
    # TopicZNode.encode (version 3); as read back from a Kafka 3.x cluster.
    data = (
        b'{"partitions":{"0":[2,3,1],"1":[3,1,2],"2":[1,2,3]},"topic_id":"cMr3GpVESX2L3byPGf93lQ",'
        b'"adding_replicas":{},"removing_replicas":{},"version":3}'
    )
    topic_id = znodes.parse_topic_id("cMr3GpVESX2L3byPGf93lQ")
    assignment = {0: [2, 3, 1], 1: [3, 1, 2], 2: [1, 2, 3]}
    assert znodes.encode_topic(topic_id, assignment) == data
    assert znodes.decode_topic(data) == znodes.TopicZnode(topic_id, assignment, {}, {})


def test_topic_znode_partition_order_follows_the_hash_table():
    # Twelve partitions grow the mutable.HashMap to 32 buckets: "11" comes
    # first and "10" last (as read back from a Kafka cluster).
    data = (
        b'{"partitions":{"11":[1,3,4],"0":[0,1,2],"1":[1,2,3],"2":[2,3,4],"3":[3,4,0],"4":[4,0,1],'
        b'"5":[0,2,3],"6":[1,3,4],"7":[2,4,0],"8":[3,0,1],"9":[4,1,2],"10":[1,2,3]},'
        b'"adding_replicas":{},"removing_replicas":{},"version":3}'
    )
    assignment = znodes.decode_topic(data).assignment
    assert sorted(assignment) == list(range(12))
    assert znodes.encode_topic(None, dict(sorted(assignment.items()))) == data


def test_topic_znode_older_versions_and_reassignment():
    # Version 1 (before KIP-455) and version 2 (before topic ids).
    v1 = znodes.decode_topic(b'{"version":1,"partitions":{"2":[1,2],"1":[0,1],"3":[2,1],"0":[2,0]}}')
    assert v1 == znodes.TopicZnode(None, {2: [1, 2], 1: [0, 1], 3: [2, 1], 0: [2, 0]})
    v2 = znodes.decode_topic(b'{"version":2,"partitions":{"0":[2,1,0]},"adding_replicas":{},"removing_replicas":{}}')
    assert v2 == znodes.TopicZnode(None, {0: [2, 1, 0]})
    # Partitions in mid-reassignment carry their adding/removing replicas.
    tid = uuid.UUID(int=7)
    data = znodes.encode_topic(tid, {0: [1, 2, 3], 1: [2, 3]}, adding={0: [3], 1: []}, removing={0: [1]})
    assert data == (
        b'{"partitions":{"0":[1,2,3],"1":[2,3]},"topic_id":"AAAAAAAAAAAAAAAAAAAABw",'
        b'"adding_replicas":{"0":[3]},"removing_replicas":{"0":[1]},"version":3}'
    )
    assert znodes.decode_topic(data) == znodes.TopicZnode(tid, {0: [1, 2, 3], 1: [2, 3]}, {0: [3]}, {0: [1]})


def test_partition_state():
    # TopicPartitionStateZNode.encode; the order docs/implementation.html
    # shows, as read back from a Kafka 3.x cluster.
    data = b'{"controller_epoch":1,"leader":2,"version":1,"leader_epoch":0,"isr":[2,3,1]}'
    state = PartitionState(leader=2, leader_epoch=0, isr=[2, 3, 1], controller_epoch=1)
    assert znodes.encode_partition_state(state) == data
    back = znodes.decode_partition_state(data, version=4)
    assert back == PartitionState(2, 0, [2, 3, 1], 1, 4)
    # No leader: -1, and the ISR keeps its last member.
    offline = PartitionState(leader=-1, leader_epoch=3, isr=[2], controller_epoch=5)
    assert (
        znodes.encode_partition_state(offline)
        == b'{"controller_epoch":5,"leader":-1,"version":1,"leader_epoch":3,"isr":[2]}'
    )


def test_partition_state_leader_recovery():
    # Written only when RECOVERING (1) (TopicPartitionStateZNodeTest); the
    # sixth key lands in the CHAMP trie after "version".
    state = PartitionState(leader=1, leader_epoch=6, isr=[1], controller_epoch=10)
    data = znodes.encode_partition_state(state, leader_recovery_state=1)
    assert (
        data == b'{"controller_epoch":10,"leader":1,"version":1,"leader_recovery_state":1,"leader_epoch":6,"isr":[1]}'
    )
    assert znodes.decode_partition_state(data, 5) == PartitionState(1, 6, [1], 10, 5)
    assert znodes.decode_leader_recovery_state(data) == 1
    assert znodes.decode_leader_recovery_state(znodes.encode_partition_state(state)) == 0


def test_partition_state_refused():
    with pytest.raises(ZnodeFormatError):
        znodes.decode_partition_state(b'{"version":1,"leader":"2","leader_epoch":0,"controller_epoch":1,"isr":[2]}', 0)
    with pytest.raises(ZnodeFormatError):
        znodes.decode_partition_state(b'{"version":1,"leader":2,"leader_epoch":0,"controller_epoch":1}', 0)


def test_topic_config():
    # ConfigEntityZNode.encode: Map("version" -> 1, "config" -> Properties).
    assert znodes.encode_topic_config({"retention.ms": "100000"}) == b'{"version":1,"config":{"retention.ms":"100000"}}'
    # Several configs come out in the order of the Properties' hash table
    # (a ConcurrentHashMap on Java 11+), whatever order they were set in.
    expected = b'{"version":1,"config":{"max.message.bytes":"500","retention.ms":"10000","retention.bytes":"500"}}'
    assert (
        znodes.encode_topic_config({"retention.ms": "10000", "max.message.bytes": "500", "retention.bytes": "500"})
        == expected
    )
    assert (
        znodes.encode_topic_config({"retention.bytes": "500", "retention.ms": "10000", "max.message.bytes": "500"})
        == expected
    )
    # What Kafka on Java 8 (a Hashtable) wrote reads the same.
    java8 = b'{"version":1,"config":{"retention.ms":"10000","max.message.bytes":"500","retention.bytes":"500"}}'
    assert znodes.decode_topic_config(java8) == {
        "retention.ms": "10000",
        "max.message.bytes": "500",
        "retention.bytes": "500",
    }
    # ConfigEntityZNode.decode: no data, no config: no overrides.
    assert znodes.decode_topic_config(None) == {}
    assert znodes.decode_topic_config(b'{"version":1}') == {}
    assert znodes.encode_topic_config({}) == b'{"version":1,"config":{}}'


def test_config_change_notification():
    # ConfigEntityChangeNotificationSequenceZNode.encode; the literal is
    # core/src/test/scala/unit/kafka/zk/migration/ZkConfigMigrationClientTest.scala's.
    assert znodes.encode_config_change("brokers/1") == b'{"version":2,"entity_path":"brokers/1"}'
    assert znodes.encode_config_change("topics/t") == b'{"version":2,"entity_path":"topics/t"}'
    assert znodes.decode_config_change(b'{"version":2,"entity_path":"topics/t"}') == "topics/t"
    # Version 1 (ZkConfigManager reads it still).
    assert znodes.decode_config_change(b'{"version":1,"entity_type":"topics","entity_name":"t"}') == "topics/t"
    with pytest.raises(ZnodeFormatError):
        znodes.decode_config_change(b'{"version":3,"entity_path":"topics/t"}')
    assert znodes.CONFIG_CHANGE_PREFIX == "config_change_"


def test_producer_id_block():
    # ProducerIdBlockZNode.generateProducerIdBlockJson: bounds as strings.
    data = b'{"version":1,"broker":0,"block_start":"8000","block_end":"8999"}'
    assert znodes.encode_producer_id_block(0, 8000, 8999) == data
    assert znodes.decode_producer_id_block(data) == (0, 8000, 8999)
    assert znodes.PRODUCER_ID_BLOCK_SIZE == 1000
    with pytest.raises(ZnodeFormatError):
        znodes.decode_producer_id_block(b'{"version":1,"broker":0,"block_start":"x","block_end":"1"}')


def test_delete_marker_and_isr_change():
    # KafkaZkClient.createDeleteTopicPath: createRecursive(path) with null data.
    assert znodes.encode_delete_marker() is None
    # IsrChangeNotificationSequenceZNode.encode (IsrChangeNotificationHandler.Version 1).
    data = znodes.encode_isr_change([("t", 0), ("u", 3)])
    assert data == b'{"version":1,"partitions":[{"topic":"t","partition":0},{"topic":"u","partition":3}]}'
    assert znodes.decode_isr_change(data) == [("t", 0), ("u", 3)]


def test_strings_escaped_as_jackson_does():
    # Jackson: \" \\ and the short escapes, other controls as uppercase \u00XX,
    # non-ASCII written as UTF-8.
    data = znodes.encode_topic_config({"k": 'a"b\\c\n\x01é'})
    assert data == '{"version":1,"config":{"k":"a\\"b\\\\c\\n\\u0001é"}}'.encode()
    assert znodes.decode_topic_config(data) == {"k": 'a"b\\c\n\x01é'}


def test_log_dir_event_notification():
    # LogDirEventNotificationSequenceZNode: a sequential child, Kafka's JSON.
    assert znodes.log_dir_event_path() == "/log_dir_event_notification/log_dir_event_"
    data = znodes.encode_log_dir_event(2)
    assert data == b'{"version":1,"broker":2,"event":1}'
    assert znodes.decode_log_dir_event(data) == 2
    with pytest.raises(znodes.ZnodeFormatError):
        znodes.decode_log_dir_event(b'{"version":1,"event":1}')
