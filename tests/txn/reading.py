"""What the transaction tests read back, with librdkafka: a partition's
values at an isolation level, its latest offset (ListOffsets at
read_committed is the last stable offset), a group's committed offset."""

from __future__ import annotations

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.list_offsets_request import ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic

from ..broker.wire import Wire

EOF_CODE = -191  # librdkafka's _PARTITION_EOF
READ_COMMITTED, READ_UNCOMMITTED = "read_committed", "read_uncommitted"


def values(bootstrap: str, topic: str, isolation: str, expect: int, partition: int = 0) -> list[str]:
    """Every value from offset 0 until the partition's end once ``expect``
    are read (at read_committed the end is the last stable offset): what
    follows the expected ones is read too, so an extra one fails the test."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"reader-{topic}", "isolation.level": isolation,
        "enable.auto.commit": False, "enable.partition.eof": True,
    })
    consumer.assign([TopicPartition(topic, partition, 0)])
    got: list[str] = []
    try:
        for _ in range(300):
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == EOF_CODE:
                    if len(got) >= expect:
                        break
                    continue
                raise AssertionError(msg.error())
            got.append(msg.value().decode())
    finally:
        consumer.close()
    return got


def latest(bootstrap: str, topic: str, isolation: int, partition: int = 0) -> int:
    """ListOffsets(latest): 0 read_uncommitted (high watermark), 1 read_committed (LSO)."""
    w = Wire(bootstrap)
    try:
        body = ListOffsetsRequest(replica_id=-1, isolation_level=isolation, topics=[
            ListOffsetsTopic(name=topic, partitions=[ListOffsetsPartition(partition_index=partition, timestamp=-1)])
        ])
        w.send(body, 7, 1)
        part = w.receive(body.API_KEY, 7)[1].topics[0].partitions[0]
        assert part.error_code == ErrorCode.NONE
        return part.offset
    finally:
        w.close()


def committed(bootstrap: str, group: str, topic: str, partition: int = 0) -> int:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        return consumer.committed([TopicPartition(topic, partition)], timeout=30)[0].offset
    finally:
        consumer.close()
