"""``pybroker topics list|describe|create|delete|alter``, as kafka-topics.sh.

Creation, deletion and new partitions go to the controller (Kafka in
ZooKeeper mode refuses them elsewhere with NOT_CONTROLLER); descriptions
combine Metadata (leader, replicas, ISR), ListOffsets from each leader and
the topic's own configs from DescribeConfigs.
"""

from __future__ import annotations

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.create_partitions_request import CreatePartitionsRequest, CreatePartitionsTopic
from pybroker.protocol.messages.create_topics_request import CreatableTopic, CreatableTopicConfig, CreateTopicsRequest
from pybroker.protocol.messages.delete_topics_request import DeleteTopicsRequest, DeleteTopicState
from pybroker.protocol.registry import ApiKey

from . import configs
from .client import AdminError, Client, check
from .offsets import EARLIEST, LATEST, list_offsets
from .records import parse_pairs
from .tables import nodes, out, out_json, report, table

TIMEOUT_MS = 30_000


def _pairs(items: list[str], what: str) -> list[tuple[str, str]]:
    try:
        return parse_pairs(items, what)
    except ValueError as exc:
        raise AdminError("INVALID_CONFIG", str(exc)) from None


def list_command(client: Client, args) -> int:
    meta = client.metadata(None)
    topics = sorted(meta.topics, key=lambda t: t.name)
    if args.json:
        out_json([{"name": t.name, "partitions": len(t.partitions), "internal": t.is_internal} for t in topics])
    else:
        for t in topics:
            out(t.name)
    return 0


def describe_topics(client: Client, names: list[str] | None) -> list[dict]:
    meta = client.metadata(names)
    topics = sorted(meta.topics, key=lambda t: t.name)
    for t in topics:
        check(t.error_code, subject=f"topic '{t.name}'")
    leaders = {(t.name, p.partition_index): p.leader_id for t in topics for p in t.partitions if p.leader_id >= 0}
    earliest = list_offsets(client, leaders, EARLIEST)
    latest = list_offsets(client, leaders, LATEST)
    described = []
    for t in topics:
        try:
            own = [c for c in configs.describe(client.controller(), configs.TOPIC, t.name) if c["own"]]
        except AdminError as exc:
            if exc.name != "UNSUPPORTED_VERSION":
                raise
            own = []
        partitions = [
            {
                "partition": p.partition_index,
                "leader": p.leader_id,
                "replicas": list(p.replica_nodes),
                "isr": list(p.isr_nodes),
                "offline_replicas": list(p.offline_replicas or []),
                "earliest_offset": earliest.get((t.name, p.partition_index)),
                "latest_offset": latest.get((t.name, p.partition_index)),
            }
            for p in sorted(t.partitions, key=lambda p: p.partition_index)
        ]
        described.append({
            "name": t.name,
            "internal": t.is_internal,
            "partition_count": len(partitions),
            "replication_factor": max((len(p["replicas"]) for p in partitions), default=0),
            "configs": {c["name"]: c["value"] for c in own},
            "partitions": partitions,
        })
    return described


def describe_command(client: Client, args) -> int:
    described = describe_topics(client, [args.topic] if args.topic else None)
    return report(described, args.json, _show_topic)


def _show_topic(t: dict) -> None:
    settings = ",".join(f"{k}={v}" for k, v in sorted(t["configs"].items()))
    out(f"Topic: {t['name']}\tPartitionCount: {t['partition_count']}\t"
        f"ReplicationFactor: {t['replication_factor']}\tConfigs: {settings}")
    rows = [[p["partition"], p["leader"], nodes(p["replicas"]), nodes(p["isr"]), p["earliest_offset"],
             p["latest_offset"]] for p in t["partitions"]]
    out(table(["PARTITION", "LEADER", "REPLICAS", "ISR", "EARLIEST", "LATEST"], rows))


def create_topic(client: Client, name: str, partitions: int | None, replication_factor: int | None,
                 configs: list[tuple[str, str]], if_not_exists: bool = False) -> bool:
    """Create ``name`` (None: the broker's default); False when it existed
    and ``if_not_exists``."""
    conn = client.controller()
    version = conn.version(ApiKey.CREATE_TOPICS, 0, 7)
    # v4+ takes -1 for "the broker's default"; older brokers need numbers.
    if version < 4 and (partitions is None or replication_factor is None):
        raise AdminError("INVALID_REQUEST", "this broker needs --partitions and --replication-factor")
    topic = CreatableTopic(
        name=name,
        num_partitions=-1 if partitions is None else partitions,
        replication_factor=-1 if replication_factor is None else replication_factor,
        assignments=[],
        configs=[CreatableTopicConfig(name=k, value=v) for k, v in configs],
    )
    response, _ = conn.call(CreateTopicsRequest(topics=[topic], timeout_ms=TIMEOUT_MS), version, version)
    (result,) = response.topics
    if result.error_code == ErrorCode.TOPIC_ALREADY_EXISTS and if_not_exists:
        return False
    message = result.error_message if version >= 1 else None
    if result.error_code == ErrorCode.TOPIC_ALREADY_EXISTS and not message:
        message = f"Topic '{name}' already exists."
    check(result.error_code, message, subject=f"topic '{name}'")
    return True


def create_command(client: Client, args) -> int:
    if create_topic(client, args.topic, args.partitions, args.replication_factor, _pairs(args.config, "config"),
                    args.if_not_exists):
        out(f"Created topic {args.topic}.")
    return 0


def delete_topic(client: Client, name: str, if_exists: bool = False) -> bool:
    """Delete ``name``; False when it did not exist and ``if_exists``."""
    conn = client.controller()
    version = conn.version(ApiKey.DELETE_TOPICS, 0, 6)
    if version >= 6:
        body = DeleteTopicsRequest(topics=[DeleteTopicState(name=name)], timeout_ms=TIMEOUT_MS)
    else:
        body = DeleteTopicsRequest(topic_names=[name], timeout_ms=TIMEOUT_MS)
    response, _ = conn.call(body, version, version)
    (result,) = response.responses
    if result.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION and if_exists:
        return False
    check(result.error_code, getattr(result, "error_message", None) if version >= 5 else None,
          subject=f"topic '{name}'")
    return True


def delete_command(client: Client, args) -> int:
    if delete_topic(client, args.topic, args.if_exists):
        out(f"Deleted topic {args.topic}.")
    return 0


def alter_command(client: Client, args) -> int:
    sets = _pairs(args.config, "config")
    if args.partitions is None and not sets and not args.delete_config:
        raise AdminError("INVALID_REQUEST", "nothing to alter: give --partitions, --config or --delete-config")
    if args.partitions is not None:
        body = CreatePartitionsRequest(
            topics=[CreatePartitionsTopic(name=args.topic, count=args.partitions, assignments=None)],
            timeout_ms=TIMEOUT_MS,
            validate_only=False,
        )
        response, _ = client.controller().call(body, 0, 3)
        (result,) = response.results
        check(result.error_code, result.error_message, subject=f"topic '{args.topic}'")
        out(f"Topic {args.topic} now has {args.partitions} partitions.")
    if sets or args.delete_config:
        configs.alter(client.controller(), configs.TOPIC, args.topic, sets, args.delete_config)
        out(f"Updated configs of topic {args.topic}.")
    return 0
