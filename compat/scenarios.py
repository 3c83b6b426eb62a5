"""The rows of the matrix: one name per scenario, and the topic each needs.

The runner creates the topic before it runs a scenario (the broker runs with
``auto.create.topics.enable=false``), except where ``create`` is False: the
admin scenario creates its own topics, and the error scenario produces to a
topic that must not exist.
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    partitions: int = 1
    configs: dict = field(default_factory=dict)
    create: bool = True
    topic: str | None = None  # a fixed topic name, else one per client and scenario
    only: str | None = None  # the one client this row is about


LARGE_TOPIC_CONFIGS = {"max.message.bytes": str(2 * 1024 * 1024)}

SCENARIOS = [
    Scenario("metadata", "connect, metadata lists the broker and the topic"),
    Scenario("roundtrip", "produce/consume keys, headers and a null value"),
    Scenario("gzip", "round trip with gzip compression"),
    Scenario("snappy", "round trip with snappy compression"),
    Scenario("lz4", "round trip with lz4 compression"),
    Scenario("zstd", "round trip with zstd compression"),
    Scenario("acks-0", "produce with acks=0, all messages arrive"),
    Scenario("acks-1", "produce with acks=1"),
    Scenario("acks-all", "produce with acks=all"),
    Scenario("group-resume", "subscribe, commit, close; a new member resumes at the commit"),
    Scenario("rebalance", "two members split two partitions", partitions=2),
    Scenario("offsets-by-time", "list offsets by timestamp, seek there, consume"),
    Scenario("admin", "create topic, describe its configs, delete it", create=False),
    Scenario("large-message", "produce and consume a 1 MiB value", configs=LARGE_TOPIC_CONFIGS),
    Scenario("unknown-topic", "produce to a topic that cannot be auto-created fails", create=False),
    Scenario("transactions", "commit, abort, commit; read_committed sees the committed records only"),
    Scenario(
        "getting-started",
        "KafkaJS's Getting started page as written (only the broker changed)",
        topic="test-topic",
        only="kafkajs",
    ),
]

BY_NAME = {s.name: s for s in SCENARIOS}
