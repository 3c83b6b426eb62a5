"""``__cluster_metadata`` is KRaft's own log, never a topic: Kafka does not
auto-create it (Metadata answers UNKNOWN_TOPIC_OR_PARTITION) and a Produce
to it gets UNKNOWN_TOPIC_OR_PARTITION too. Other unknown topics still
auto-create as usual."""

from __future__ import annotations

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.metadata_request import MetadataRequest, MetadataRequestTopic

from .clients import Confluent
from .raw_requests import produce_request
from .wire import Wire

NAME = "__cluster_metadata"


def metadata_codes(w: Wire, *names: str) -> dict[str, int]:
    w.send(MetadataRequest(topics=[MetadataRequestTopic(name=n) for n in names], allow_auto_topic_creation=True), 12, 1)
    return {t.name: t.error_code for t in w.receive(3, 12)[1].topics}


def test_cluster_metadata_is_not_auto_created_nor_writable(kafka_broker):
    w = Wire(kafka_broker.bootstrap_servers)
    codes = metadata_codes(w, NAME, "ordinary-auto-created")
    assert codes == {NAME: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "ordinary-auto-created": ErrorCode.NONE}
    w.send(produce_request(NAME, 0, [b"not metadata"]), 9, 2)
    (partition,) = w.receive(0, 9)[1].responses[0].partition_responses
    assert partition.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    assert metadata_codes(w, NAME) == {NAME: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION}
    w.close()
    assert NAME not in Confluent(kafka_broker.bootstrap_servers).topics()
