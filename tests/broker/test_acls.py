"""ACL authorization on one broker, driven by real clients over SASL/PLAIN
(users admin, a super user, alice, bob, carol and dave; the broker is shared,
so each test names its own topics and groups): the ACL admin APIs through
confluent-kafka and kafka-python, and what each principal may then do."""

from __future__ import annotations

import logging
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.create_acls_request import AclCreation, CreateAclsRequest
from pybroker.protocol.messages.describe_acls_request import DescribeAclsRequest
from pybroker.protocol.messages.metadata_request import MetadataRequest, MetadataRequestTopic
from pybroker.protocol.messages.sasl_authenticate_request import SaslAuthenticateRequest
from pybroker.protocol.messages.sasl_handshake_request import SaslHandshakeRequest
from pybroker.testing import running_broker

from .wire import Wire

WAIT_S = 30
JAAS = (
    "org.apache.kafka.common.security.plain.PlainLoginModule required"
    ' user_admin="admin-secret" user_alice="alice-secret" user_bob="bob-secret" user_carol="carol-secret" user_dave="dave-secret";'
)
AUTHORIZER = {
    "listeners": "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0",
    "sasl.enabled.mechanisms": "PLAIN",
    "sasl.jaas.config": JAAS,
    "authorizer.class.name": "kafka.security.authorizer.AclAuthorizer",
    "super.users": "User:admin",
}
ANY = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY,
                       AclPermissionType.ANY)


def conf(broker, user: str, **more) -> dict:
    return {"bootstrap.servers": f"127.0.0.1:{broker.sasl_port}", "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanisms": "PLAIN", "sasl.username": user, "sasl.password": f"{user}-secret", **more}


def start(props: dict, **kwargs):
    return running_broker({**AUTHORIZER, **props}, dev=True, **kwargs)


@pytest.fixture(scope="module")
def broker():
    with start({}) as b:
        b.sasl_port = b.broker.bound_by_listener["SASL_PLAINTEXT"][1]
        b.plain_port = b.broker.bound_by_listener["PLAINTEXT"][1]
        b.admin = AdminClient(conf(b, "admin"))
        yield b


def sasl_wire(broker, user: str) -> Wire:
    """A raw connection authenticated as ``user`` (SASL/PLAIN, Kafka framing)."""
    w = Wire(f"127.0.0.1:{broker.sasl_port}")
    w.send(SaslHandshakeRequest(mechanism="PLAIN"), 1, 1000)
    assert w.receive(SaslHandshakeRequest.API_KEY, 1)[1].error_code == ErrorCode.NONE
    w.send(SaslAuthenticateRequest(auth_bytes=f"\x00{user}\x00{user}-secret".encode()), 1, 1001)
    assert w.receive(SaslAuthenticateRequest.API_KEY, 1)[1].error_code == ErrorCode.NONE
    return w


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def allow(rtype, name, principal, op, pattern=ResourcePatternType.LITERAL, perm=AclPermissionType.ALLOW, host="*"):
    return AclBinding(rtype, name, pattern, principal, host, op, perm)


def add(broker, *bindings) -> None:
    for f in broker.admin.create_acls(list(bindings)).values():
        f.result(timeout=WAIT_S)


def make_topic(broker, name: str, partitions: int = 1) -> None:
    broker.admin.create_topics([NewTopic(name, partitions, 1)])[name].result(timeout=WAIT_S)


def produce_error(config: dict, topic: str):
    """The delivery error code of one message (None: delivered)."""
    errors = []
    producer = Producer({**config, "message.timeout.ms": 10000})
    producer.produce(topic, b"v", on_delivery=lambda err, msg: errors.append(err))
    producer.flush(WAIT_S)
    assert errors, "no delivery report"
    return errors[0].code() if errors[0] is not None else None


def consume_error(config: dict, topic: str, group: str):
    """The first error a consumer in ``group`` meets, or the first message's value."""
    consumer = Consumer({**config, "group.id": group, "auto.offset.reset": "earliest"})
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                continue
            return message.error().code() if message.error() else message.value()
        return None
    finally:
        consumer.close()


# -- the admin APIs -------------------------------------------------------------------------


def test_create_describe_and_delete_with_filters(broker):
    name = unique("adm")
    add(
        broker,
        allow(ResourceType.TOPIC, name, "User:alice", AclOperation.READ),
        allow(ResourceType.TOPIC, name[:5], "User:alice", AclOperation.WRITE, ResourcePatternType.PREFIXED),
        allow(ResourceType.GROUP, name, "User:bob", AclOperation.READ, perm=AclPermissionType.DENY, host="10.0.0.1"),
    )
    mine = AclBindingFilter(ResourceType.ANY, name, ResourcePatternType.MATCH, None, None, AclOperation.ANY,
                            AclPermissionType.ANY)
    found = broker.admin.describe_acls(mine).result(timeout=WAIT_S)
    assert {(b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation, b.permission_type)
            for b in found} == {
        (ResourceType.TOPIC, name, ResourcePatternType.LITERAL, "User:alice", "*", AclOperation.READ,
         AclPermissionType.ALLOW),
        (ResourceType.TOPIC, name[:5], ResourcePatternType.PREFIXED, "User:alice", "*", AclOperation.WRITE,
         AclPermissionType.ALLOW),
        (ResourceType.GROUP, name, ResourcePatternType.LITERAL, "User:bob", "10.0.0.1", AclOperation.READ,
         AclPermissionType.DENY),
    }
    literal_only = AclBindingFilter(ResourceType.TOPIC, name, ResourcePatternType.LITERAL, None, None,
                                    AclOperation.ANY, AclPermissionType.ANY)
    assert len(broker.admin.describe_acls(literal_only).result(timeout=WAIT_S)) == 1
    # Delete what alice was given on topics; bob's DENY stays.
    alices = AclBindingFilter(ResourceType.TOPIC, name, ResourcePatternType.MATCH, "User:alice", None,
                              AclOperation.ANY, AclPermissionType.ANY)
    deleted = broker.admin.delete_acls([alices])[alices].result(timeout=WAIT_S)
    assert sorted(b.operation for b in deleted) == [AclOperation.READ, AclOperation.WRITE]
    assert [b.principal for b in broker.admin.describe_acls(mine).result(timeout=WAIT_S)] == ["User:bob"]


DESCRIBE_ALL = DescribeAclsRequest(resource_type_filter=1, pattern_type_filter=1, operation=1, permission_type=1)


def test_the_admin_apis_need_cluster_permissions(broker):
    # librdkafka hands DescribeAcls' top-level error to nobody: asked on the wire.
    w = sasl_wire(broker, "alice")
    try:
        w.send(DESCRIBE_ALL, 3, 1)
        assert w.receive(29, 3)[1].error_code == ErrorCode.CLUSTER_AUTHORIZATION_FAILED
    finally:
        w.close()
    alice = AdminClient(conf(broker, "alice"))
    binding = allow(ResourceType.TOPIC, "x", "User:alice", AclOperation.ALL)
    with pytest.raises(KafkaException) as refused:
        alice.create_acls([binding])[binding].result(timeout=WAIT_S)
    assert refused.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED


def test_kafkas_validation_errors_on_the_wire(broker):
    w = Wire(f"127.0.0.1:{broker.plain_port}")
    try:
        # User:ANONYMOUS (PLAINTEXT) is no super user: refused before anything else.
        w.send(DESCRIBE_ALL, 3, 1)
        assert w.receive(29, 3)[1].error_code == ErrorCode.CLUSTER_AUTHORIZATION_FAILED
    finally:
        w.close()
    sasl = sasl_wire(broker, "admin")
    try:
        bad_filter = DescribeAclsRequest(resource_type_filter=0, pattern_type_filter=1, operation=1, permission_type=1)
        sasl.send(bad_filter, 3, 2)
        assert sasl.receive(29, 3)[1].error_code == ErrorCode.INVALID_REQUEST

        def creation(**kw):
            base = {"resource_type": 4, "resource_name": "kafka-cluster", "resource_pattern_type": 3,
                    "principal": "User:nobody", "host": "*", "operation": 7, "permission_type": 3}
            return AclCreation(**{**base, **kw})

        sasl.send(CreateAclsRequest(creations=[
            creation(resource_name="my-cluster"), creation(principal="alice"), creation(resource_pattern_type=1),
            creation(resource_type=2, resource_name=""), creation(),
        ]), 3, 3)
        results = sasl.receive(30, 3)[1].results
        assert [r.error_code for r in results] == [ErrorCode.INVALID_REQUEST] * 4 + [ErrorCode.NONE]
        assert results[0].error_message == "The only valid name for the CLUSTER resource is kafka-cluster"
    finally:
        sasl.close()


def test_kafka_python_admin(broker):
    from kafka.admin import (
        ACL,
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        KafkaAdminClient,
        ResourcePattern,
        ResourcePatternFilter,
    )
    from kafka.admin import ResourceType as KpType

    admin = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{broker.sasl_port}", security_protocol="SASL_PLAINTEXT",
                             sasl_mechanism="PLAIN", sasl_plain_username="admin", sasl_plain_password="admin-secret")
    try:
        name = unique("kp")
        acl = ACL("User:bob", "*", ACLOperation.DESCRIBE, ACLPermissionType.ALLOW, ResourcePattern(KpType.TOPIC, name))
        result = admin.create_acls([acl])
        assert result["succeeded"] and not result["failed"]
        acls, _ = admin.describe_acls(ACLFilter("User:bob", None, ACLOperation.ANY, ACLPermissionType.ANY,
                                                    ResourcePatternFilter(KpType.TOPIC, name, ACLResourcePatternType.LITERAL)))
        assert [a.resource_pattern.resource_name for a in acls] == [name]
        deleted = admin.delete_acls([ACLFilter("User:bob", None, ACLOperation.ANY, ACLPermissionType.ANY,
                                               ResourcePatternFilter(KpType.TOPIC, name, ACLResourcePatternType.LITERAL))])
        assert len(deleted[0][1]) == 1
    finally:
        admin.close()


# -- enforcement ----------------------------------------------------------------------------


def test_a_producer_without_write_is_refused_and_the_denial_logged(broker, caplog):
    caplog.set_level(logging.INFO, logger="pybroker.authorizer")
    topic = unique("nowrite")
    make_topic(broker, topic)
    add(broker, allow(ResourceType.TOPIC, topic, "User:alice", AclOperation.DESCRIBE))
    error = produce_error(conf(broker, "alice"), topic)
    assert error == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert [r for r in caplog.records if r.name == "pybroker.authorizer" and "User:alice" in r.getMessage()
            and "WRITE TOPIC" in r.getMessage() and topic in r.getMessage()]


def test_prefixed_acls_let_a_user_produce_and_consume(broker):
    prefix = unique("alice")
    topic, group = f"{prefix}.orders", f"{prefix}.group"
    make_topic(broker, topic)
    add(
        broker,
        allow(ResourceType.TOPIC, prefix, "User:alice", AclOperation.WRITE, ResourcePatternType.PREFIXED),
        allow(ResourceType.TOPIC, prefix, "User:alice", AclOperation.READ, ResourcePatternType.PREFIXED),
        allow(ResourceType.GROUP, prefix, "User:alice", AclOperation.READ, ResourcePatternType.PREFIXED),
    )
    assert produce_error(conf(broker, "alice"), topic) is None
    assert consume_error(conf(broker, "alice"), topic, group) == b"v"
    # bob has nothing: neither the topic nor the group.
    assert produce_error(conf(broker, "bob"), topic) == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_a_consumer_without_group_read_is_refused(broker):
    topic, group = unique("nogroup"), unique("g")
    make_topic(broker, topic)
    add(broker, allow(ResourceType.TOPIC, topic, "User:alice", AclOperation.READ))
    assert consume_error(conf(broker, "alice"), topic, group) == KafkaError.GROUP_AUTHORIZATION_FAILED


def test_deny_overrides_allow(broker):
    topic, group = unique("deny"), unique("g")
    make_topic(broker, topic)
    assert produce_error(conf(broker, "admin"), topic) is None
    add(
        broker,
        allow(ResourceType.TOPIC, "*", "User:carol", AclOperation.ALL),
        allow(ResourceType.GROUP, group, "User:carol", AclOperation.READ),
        allow(ResourceType.TOPIC, topic, "User:*", AclOperation.READ, perm=AclPermissionType.DENY),
    )
    assert consume_error(conf(broker, "carol"), topic, group) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert produce_error(conf(broker, "carol"), topic) is None  # WRITE is not denied


def test_super_users_need_no_acl(broker):
    topic = unique("super")
    assert produce_error(conf(broker, "admin"), topic) is None  # auto-created, written
    assert consume_error(conf(broker, "admin"), topic, unique("g")) == b"v"


def test_topics_alice_may_not_describe_are_left_out_of_metadata(broker):
    seen, hidden = unique("seen"), unique("hidden")
    make_topic(broker, seen)
    make_topic(broker, hidden)
    add(broker, allow(ResourceType.TOPIC, seen, "User:alice", AclOperation.READ))
    names = set(AdminClient(conf(broker, "alice")).list_topics(timeout=WAIT_S).topics)
    assert seen in names and hidden not in names
    assert hidden in set(broker.admin.list_topics(timeout=WAIT_S).topics)
    sasl = sasl_wire(broker, "alice")
    try:
        sasl.send(MetadataRequest(topics=[MetadataRequestTopic(name=hidden), MetadataRequestTopic(name=seen)],
                                  allow_auto_topic_creation=False, include_topic_authorized_operations=True), 8, 4)
        topics = {t.name: t for t in sasl.receive(3, 8)[1].topics}
        assert topics[hidden].error_code == ErrorCode.TOPIC_AUTHORIZATION_FAILED
        assert topics[hidden].topic_authorized_operations == -2147483648
        assert topics[seen].error_code == ErrorCode.NONE
        assert topics[seen].topic_authorized_operations == (1 << 3) | (1 << 8)  # READ, and the DESCRIBE it implies
    finally:
        sasl.close()


def test_auto_creation_needs_create(broker):
    topic = unique("autocreate")
    add(broker, allow(ResourceType.TOPIC, topic, "User:alice", AclOperation.WRITE))
    assert produce_error(conf(broker, "alice"), topic) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    add(broker, allow(ResourceType.TOPIC, topic, "User:alice", AclOperation.CREATE))
    assert produce_error(conf(broker, "alice"), topic) is None


def test_transactional_and_idempotent_producers(broker):
    topic, txn_id = unique("txn"), unique("tx")
    make_topic(broker, topic)
    add(broker, allow(ResourceType.TOPIC, topic, "User:alice", AclOperation.WRITE))
    producer = Producer({**conf(broker, "alice"), "transactional.id": txn_id})
    with pytest.raises(KafkaException) as refused:
        producer.init_transactions(WAIT_S)
    assert refused.value.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    add(broker, allow(ResourceType.TRANSACTIONAL_ID, txn_id, "User:alice", AclOperation.WRITE))
    producer = Producer({**conf(broker, "alice"), "transactional.id": txn_id})
    producer.init_transactions(WAIT_S)
    producer.begin_transaction()
    producer.produce(topic, b"in a transaction")
    producer.commit_transaction(WAIT_S)
    # Idempotence needs WRITE on some topic (alice has one), not IDEMPOTENT_WRITE.
    assert produce_error(conf(broker, "alice", **{"enable.idempotence": True}), topic) is None


def test_without_an_authorizer_the_acl_apis_answer_security_disabled():
    with running_broker() as b:
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{b.port}"})
        binding = allow(ResourceType.TOPIC, "x", "User:alice", AclOperation.ALL)
        with pytest.raises(KafkaException) as refused:
            admin.create_acls([binding])[binding].result(timeout=WAIT_S)
        assert refused.value.args[0].code() == KafkaError.SECURITY_DISABLED
        w = Wire(f"127.0.0.1:{b.port}")
        try:
            w.send(DESCRIBE_ALL, 1, 1)
            assert w.receive(29, 1)[1].error_code == ErrorCode.SECURITY_DISABLED
        finally:
            w.close()


def test_allow_everyone_if_no_acl_found():
    with start({"allow.everyone.if.no.acl.found": "true"}) as b:
        b.sasl_port = b.broker.bound_by_listener["SASL_PLAINTEXT"][1]
        b.admin = AdminClient(conf(b, "admin"))
        free, guarded = unique("free"), unique("guarded")
        assert produce_error(conf(b, "alice"), free) is None
        make_topic(b, guarded)
        add(b, allow(ResourceType.TOPIC, guarded, "User:bob", AclOperation.WRITE))
        assert produce_error(conf(b, "alice"), guarded) == KafkaError.TOPIC_AUTHORIZATION_FAILED
        assert produce_error(conf(b, "bob"), guarded) is None


def test_acls_survive_a_restart(tmp_path):
    binding = allow(ResourceType.GROUP, "kept", "User:alice", AclOperation.READ, ResourcePatternType.PREFIXED)
    for _ in range(2):
        with start({}, data_dir=tmp_path) as b:
            b.sasl_port = b.broker.bound_by_listener["SASL_PLAINTEXT"][1]
            b.admin = AdminClient(conf(b, "admin"))
            found = b.admin.describe_acls(ANY).result(timeout=WAIT_S)
            if not found:
                add(b, binding)
    assert [(f.name, f.resource_pattern_type) for f in found] == [("kept", ResourcePatternType.PREFIXED)]
    assert (tmp_path / "acls.json").exists()


def test_scram_credentials_need_cluster_permissions(broker):
    from confluent_kafka.admin import ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion

    upsert = UserScramCredentialUpsertion("mallory", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), b"pw")
    alice = AdminClient(conf(broker, "alice"))
    with pytest.raises(KafkaException) as refused:
        alice.alter_user_scram_credentials([upsert])["mallory"].result(timeout=WAIT_S)
    assert refused.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    for future in broker.admin.alter_user_scram_credentials([upsert]).values():
        future.result(timeout=WAIT_S)  # the super user may


def test_authorized_operations_are_the_principals(broker):
    group = unique("ops")
    add(
        broker,
        allow(ResourceType.BROKER, "kafka-cluster", "User:dave", AclOperation.DESCRIBE),
        allow(ResourceType.BROKER, "kafka-cluster", "User:dave", AclOperation.IDEMPOTENT_WRITE),
        allow(ResourceType.GROUP, group, "User:dave", AclOperation.READ),
    )
    dave = AdminClient(conf(broker, "dave"))
    cluster = dave.describe_cluster(include_authorized_operations=True).result(timeout=WAIT_S)
    assert set(cluster.authorized_operations) == {AclOperation.DESCRIBE, AclOperation.IDEMPOTENT_WRITE}
    described = dave.describe_consumer_groups([group], include_authorized_operations=True)[group].result(WAIT_S)
    assert set(described.authorized_operations) == {AclOperation.READ, AclOperation.DESCRIBE}
    everything = broker.admin.describe_cluster(include_authorized_operations=True).result(timeout=WAIT_S)
    assert AclOperation.ALTER in everything.authorized_operations  # the super user's


def test_a_kip_848_heartbeat_needs_the_group_and_its_topics(broker):
    from pybroker.protocol.messages.consumer_group_heartbeat_request import ConsumerGroupHeartbeatRequest

    group, seen, hidden = unique("k848"), unique("seen"), unique("hidden")
    make_topic(broker, seen)
    make_topic(broker, hidden)

    def heartbeat(topics) -> int:
        w = sasl_wire(broker, "dave")
        try:
            w.send(ConsumerGroupHeartbeatRequest(group_id=group, member_id=uuid.uuid4().hex, member_epoch=0,
                                                 rebalance_timeout_ms=30000, subscribed_topic_names=topics,
                                                 topic_partitions=[]), 0, 7)
            return w.receive(68, 0)[1].error_code
        finally:
            w.close()

    assert heartbeat([seen]) == ErrorCode.GROUP_AUTHORIZATION_FAILED
    add(broker, allow(ResourceType.GROUP, group, "User:dave", AclOperation.READ),
        allow(ResourceType.TOPIC, seen, "User:dave", AclOperation.READ))
    assert heartbeat([seen, hidden]) == ErrorCode.TOPIC_AUTHORIZATION_FAILED
    assert heartbeat([seen]) == ErrorCode.NONE


def test_admin_apis_check_their_resources(broker):
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import ConfigResource, NewPartitions

    from pybroker.protocol.messages.delete_records_request import (
        DeleteRecordsPartition,
        DeleteRecordsRequest,
        DeleteRecordsTopic,
    )

    topic, mine, group = unique("guarded"), unique("bobs"), unique("bobs-group")
    make_topic(broker, topic)
    committer = Consumer({**conf(broker, "admin"), "group.id": group})
    committer.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)  # the group exists now
    committer.close()
    bob = AdminClient(conf(broker, "bob"))

    def code(future) -> int:
        with pytest.raises(KafkaException) as refused:
            future.result(timeout=WAIT_S)
        return refused.value.args[0].code()

    assert code(bob.create_topics([NewTopic(mine, 1, 1)])[mine]) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert code(bob.delete_topics([topic])[topic]) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert code(bob.create_partitions([NewPartitions(topic, 2)])[topic]) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    topic_configs = ConfigResource(ConfigResource.Type.TOPIC, topic)
    assert code(bob.describe_configs([topic_configs])[topic_configs]) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    broker_configs = ConfigResource(ConfigResource.Type.BROKER, "1")
    assert code(bob.describe_configs([broker_configs])[broker_configs]) == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    w = sasl_wire(broker, "bob")  # librdkafka gives up on a topic its Metadata may not see: on the wire
    try:
        w.send(DeleteRecordsRequest(topics=[DeleteRecordsTopic(name=topic, partitions=[
            DeleteRecordsPartition(partition_index=0, offset=0)])], timeout_ms=5000), 2, 7)
        assert w.receive(21, 2)[1].topics[0].partitions[0].error_code == ErrorCode.TOPIC_AUTHORIZATION_FAILED
    finally:
        w.close()
    assert group not in {g.group_id for g in bob.list_consumer_groups().result(WAIT_S).valid}
    # CREATE on a prefix lets bob create his own topics, and only those.
    add(broker, allow(ResourceType.TOPIC, "bobs-", "User:bob", AclOperation.CREATE, ResourcePatternType.PREFIXED),
        allow(ResourceType.TOPIC, "bobs-", "User:bob", AclOperation.DESCRIBE_CONFIGS, ResourcePatternType.PREFIXED),
        allow(ResourceType.GROUP, group, "User:bob", AclOperation.DESCRIBE))
    bob.create_topics([NewTopic(mine, 1, 1)])[mine].result(WAIT_S)
    bob.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, mine)])
    assert group in {g.group_id for g in bob.list_consumer_groups().result(WAIT_S).valid}
    assert group in {g.group_id for g in broker.admin.list_consumer_groups().result(WAIT_S).valid}


def test_an_unreadable_acl_file_stops_the_broker_in_one_line(tmp_path):
    from pybroker.broker import Broker
    from pybroker.config import BrokerConfig
    from pybroker.storage.dirs import LogDirError

    (tmp_path / "acls.json").write_text("{not json")
    config = BrokerConfig({**AUTHORIZER, "log.dirs": str(tmp_path)})
    with pytest.raises(LogDirError, match="cannot read the ACLs in .*acls.json"):
        Broker(config, load=False)
    # The log dirs were given up: another start finds them free.
    (tmp_path / "acls.json").unlink()
    Broker(config, load=False)._unlock()


def test_client_quotas_need_cluster_configs_permissions(broker):
    from pybroker.protocol.messages.alter_client_quotas_request import (
        AlterClientQuotasRequest,
        EntityData,
        EntryData,
        OpData,
    )
    from pybroker.protocol.messages.describe_client_quotas_request import DescribeClientQuotasRequest

    alter = AlterClientQuotasRequest(entries=[EntryData(entity=[EntityData(entity_type="user", entity_name="alice")],
                                                        ops=[OpData(key="producer_byte_rate", value=1e6)])])
    for user, expected in (("alice", ErrorCode.CLUSTER_AUTHORIZATION_FAILED), ("admin", ErrorCode.NONE)):
        w = sasl_wire(broker, user)
        try:
            w.send(alter, 1, 2)
            assert w.receive(49, 1)[1].entries[0].error_code == expected
            w.send(DescribeClientQuotasRequest(components=[], strict=False), 1, 3)
            assert w.receive(48, 1)[1].error_code == expected
        finally:
            w.close()
