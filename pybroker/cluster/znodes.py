"""Kafka's ZooKeeper layout: every znode's path and its JSON, both ways.

Paths and formats are those of Apache Kafka 3.8 in ZooKeeper mode
(``core/src/main/scala/kafka/zk/ZkData.scala``), so that a ZooKeeper
written by pybroker reads as one written by Kafka's brokers, and the
other way round. Encoders write exactly Kafka's bytes: the same fields,
string-or-number as Kafka has them (a timestamp, a cluster id's version,
a producer-id block's bounds are strings), in the order the JVM's maps
iterate them (``jvm_json``). Decoders accept what Kafka's decoders
accept, older versions included. Nothing here does I/O.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import Any

from . import jvm_json
from .model import BrokerInfo, PartitionState

# -- paths --------------------------------------------------------------------

CONTROLLER = "/controller"
CONTROLLER_EPOCH = "/controller_epoch"
BROKERS = "/brokers"
BROKER_IDS = "/brokers/ids"
BROKER_TOPICS = "/brokers/topics"
BROKER_SEQID = "/brokers/seqid"
CONFIG = "/config"
CONFIG_CHANGES = "/config/changes"
CONFIG_TOPICS = "/config/topics"
CONFIG_USERS = "/config/users"
CONFIG_CLIENTS = "/config/clients"
ADMIN = "/admin"
DELETE_TOPICS = "/admin/delete_topics"
ISR_CHANGE_NOTIFICATION = "/isr_change_notification"
LOG_DIR_EVENT_NOTIFICATION = "/log_dir_event_notification"
CLUSTER_ID = "/cluster/id"
PRODUCER_ID_BLOCK = "/latest_producer_id_block"
CONSUMERS = "/consumers"

# ZkData.PersistentZkPaths (created by every broker at start), in Kafka's
# order, then the config entity types of ConfigType.ALL.
PERSISTENT_PATHS = (
    CONSUMERS,
    BROKER_IDS,
    BROKER_TOPICS,
    CONFIG_CHANGES,
    DELETE_TOPICS,
    BROKER_SEQID,
    ISR_CHANGE_NOTIFICATION,
    PRODUCER_ID_BLOCK,
    LOG_DIR_EVENT_NOTIFICATION,
    "/config/topics",
    "/config/clients",
    "/config/users",
    "/config/brokers",
    "/config/ips",
)

CONFIG_CHANGE_PREFIX = "config_change_"
ISR_CHANGE_PREFIX = "isr_change_"
LOG_DIR_EVENT_PREFIX = "log_dir_event_"
# LogDirEventNotificationHandler.LogDirFailureEvent: the only event there is.
LOG_DIR_FAILURE_EVENT = 1
# ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE: the ids one broker takes per write.
PRODUCER_ID_BLOCK_SIZE = 1000


def broker_path(broker_id: int) -> str:
    return f"{BROKER_IDS}/{broker_id}"


def topic_path(topic: str) -> str:
    return f"{BROKER_TOPICS}/{topic}"


def partitions_path(topic: str) -> str:
    return f"{topic_path(topic)}/partitions"


def partition_path(topic: str, partition: int) -> str:
    return f"{partitions_path(topic)}/{partition}"


def partition_state_path(topic: str, partition: int) -> str:
    return f"{partition_path(topic, partition)}/state"


def topic_config_path(topic: str) -> str:
    return f"{CONFIG_TOPICS}/{topic}"


def sanitize(name: str) -> str:
    """Kafka's Sanitizer.sanitize for user and client ids in znode names:
    URL-encoded, UTF-8, with %20 for a space and %2A for '*'."""
    return urllib.parse.quote(name, safe="")


def desanitize(name: str) -> str:
    return urllib.parse.unquote(name)


# Kafka's ConfigEntityName.Default: the node of every user or client id.
DEFAULT_ENTITY = "<default>"


def entity_segment(name: str) -> str:
    """A user or client id as its znode name: sanitized, "<default>" as is."""
    return name if name == DEFAULT_ENTITY else sanitize(name)


def user_config_path(user: str) -> str:
    return f"{CONFIG_USERS}/{entity_segment(user)}"


def client_config_path(client_id: str) -> str:
    return f"{CONFIG_CLIENTS}/{entity_segment(client_id)}"


def user_clients_path(user: str) -> str:
    return f"{user_config_path(user)}/clients"


def user_client_config_path(user: str, client_id: str) -> str:
    return f"{user_clients_path(user)}/{entity_segment(client_id)}"


def entity_change(user: str | None, client_id: str | None) -> str:
    """What a config change notification names: users/<u>, clients/<c>, users/<u>/clients/<c>."""
    if user is not None and client_id is not None:
        return f"users/{entity_segment(user)}/clients/{entity_segment(client_id)}"
    if user is not None:
        return f"users/{entity_segment(user)}"
    return f"clients/{entity_segment(client_id)}"


def delete_topic_path(topic: str) -> str:
    return f"{DELETE_TOPICS}/{topic}"


def config_change_path() -> str:
    """Where a config change notification is created (sequential)."""
    return f"{CONFIG_CHANGES}/{CONFIG_CHANGE_PREFIX}"


def isr_change_path() -> str:
    """Where an ISR change notification is created (sequential)."""
    return f"{ISR_CHANGE_NOTIFICATION}/{ISR_CHANGE_PREFIX}"


def log_dir_event_path() -> str:
    """Where a broker announces a failed log dir (sequential)."""
    return f"{LOG_DIR_EVENT_NOTIFICATION}/{LOG_DIR_EVENT_PREFIX}"


class ZnodeFormatError(ValueError):
    """A znode's data is not what Kafka writes there."""


def _parse(data: bytes | None, what: str) -> Any:
    if not data:
        raise ZnodeFormatError(f"empty {what}")
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ZnodeFormatError(f"cannot parse {what}: {data!r}") from e


def _object(data: bytes | None, what: str) -> dict[str, Any]:
    js = _parse(data, what)
    if not isinstance(js, dict):
        raise ZnodeFormatError(f"{what} is not a JSON object: {data!r}")
    return js


def _int(js: dict[str, Any], key: str, what: str) -> int:
    value = js.get(key)
    # Jackson's asInt reading of a number; Kafka never writes these as text.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ZnodeFormatError(f"{what}: {key!r} is not an integer: {value!r}")
    return value


def _encode(fields: dict[str, Any], order: list[str]) -> bytes:
    return jvm_json.write(jvm_json.ordered(fields, order)).encode()


# -- /controller, /controller_epoch -------------------------------------------


def encode_controller(broker_id: int, timestamp_ms: int) -> bytes:
    """ControllerZNode.encode: version 2, no KRaft controller (-1)."""
    fields = {"version": 2, "brokerid": broker_id, "timestamp": str(timestamp_ms), "kraftControllerEpoch": -1}
    return _encode(fields, jvm_json.immutable_map_order(list(fields)))


def decode_controller(data: bytes) -> int:
    """The controller's broker id (versions 1 and 2)."""
    return _int(_object(data, "controller"), "brokerid", "controller")


def encode_log_dir_event(broker_id: int) -> bytes:
    """LogDirEventNotificationSequenceZNode.encode."""
    fields = {"version": 1, "broker": broker_id, "event": LOG_DIR_FAILURE_EVENT}
    return _encode(fields, ["version", "broker", "event"])


def decode_log_dir_event(data: bytes) -> int:
    """The broker a log dir event names."""
    return _int(_object(data, "log dir event"), "broker", "log dir event")


def encode_controller_epoch(epoch: int) -> bytes:
    return str(epoch).encode()


def decode_controller_epoch(data: bytes) -> int:
    try:
        return int(data.decode())
    except (ValueError, UnicodeDecodeError, AttributeError) as e:
        raise ZnodeFormatError(f"bad controller epoch: {data!r}") from e


# -- /brokers/ids/<id> ----------------------------------------------------------

_ENDPOINT = re.compile(r"^(.*)://\[?([0-9a-zA-Z\-%._:]*)\]?:(-?[0-9]+)")
_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")


@dataclass(frozen=True)
class BrokerRegistration:
    """A broker's registration: the inter-broker endpoint (``host``,
    ``port``, ``listener``), every advertised one (``endpoints``), its rack,
    and its epoch (the registration znode's czxid)."""

    node_id: int
    host: str | None
    port: int
    rack: str | None = None
    epoch: int = -1
    listener: str = "PLAINTEXT"
    timestamp_ms: int = 0
    security_protocol: str = "PLAINTEXT"
    # Every endpoint of a decoded registration: (listener, protocol, host, port).
    endpoints: tuple[tuple[str, str, str | None, int], ...] = field(default=(), compare=False)

    @property
    def info(self) -> BrokerInfo:
        endpoints = tuple((name, host or "", port) for name, _, host, port in self.endpoints)
        return BrokerInfo(self.node_id, self.host or "", self.port, self.rack, endpoints)


def _format_address(host: str | None, port: int) -> str:
    # EndPoint.connectionString / Utils.formatAddress
    if host is None:
        return f":{port}"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def encode_broker(reg: BrokerRegistration) -> bytes:
    """BrokerIdZNode.encode, version 5 (every metadata version since 2.7).
    The top-level host/port are the first PLAINTEXT endpoint's, for old
    clients; null and -1 when there is none."""
    endpoints = reg.endpoints or ((reg.listener, reg.security_protocol, reg.host, reg.port),)
    plaintext = next((e for e in endpoints if e[1] == "PLAINTEXT"), None)
    fields: dict[str, Any] = {
        "version": 5,
        "host": plaintext[2] if plaintext else None,
        "port": plaintext[3] if plaintext else -1,
        "endpoints": [f"{name}://{_format_address(host, port)}" for name, _, host, port in endpoints],
        "jmx_port": -1,
        "timestamp": str(reg.timestamp_ms),
    }
    if reg.rack is not None:
        fields["rack"] = reg.rack
    fields["listener_security_protocol_map"] = {name: protocol for name, protocol, _, _ in endpoints}
    fields["features"] = {}
    return _encode(fields, jvm_json.mutable_map_order(list(fields), initial=6))


def decode_broker(
    data: bytes, czxid: int, node_id: int | None = None, listener: str | None = None
) -> BrokerRegistration:
    """A registration of any version Kafka reads (1 to 5, and later ones
    that keep their fields). The endpoint kept is ``listener``'s when named,
    else the first PLAINTEXT one, else the first. ``node_id`` is the
    znode's name (the JSON does not carry it)."""
    js = _object(data, "broker registration")
    version = _int(js, "version", "broker registration")
    if version < 1:
        raise ZnodeFormatError(f"Unsupported version of broker registration: {data!r}")
    if version == 1:
        host = js.get("host")
        endpoints = (("PLAINTEXT", "PLAINTEXT", host, _int(js, "port", "broker registration")),)
    else:
        protocols = js.get("listener_security_protocol_map")
        parsed = []
        for text in js.get("endpoints") or ():
            m = _ENDPOINT.match(text) if isinstance(text, str) else None
            if m is None:
                raise ZnodeFormatError(f"Unable to parse {text} to a broker endpoint")
            name = m.group(1).upper()
            protocol = (
                protocols.get(name) if isinstance(protocols, dict) else (name if name in _SECURITY_PROTOCOLS else None)
            )
            if protocol is None:
                raise ZnodeFormatError(f"No security protocol defined for listener {name}")
            parsed.append((name, protocol, m.group(2) or None, int(m.group(3))))
        endpoints = tuple(parsed)
    if not endpoints:
        raise ZnodeFormatError(f"broker registration without endpoints: {data!r}")
    chosen = next((e for e in endpoints if e[0] == listener), None) if listener else None
    chosen = chosen or next((e for e in endpoints if e[1] == "PLAINTEXT"), endpoints[0])
    rack = js.get("rack")
    timestamp = js.get("timestamp")
    return BrokerRegistration(
        node_id=-1 if node_id is None else node_id,
        host=chosen[2],
        port=chosen[3],
        rack=rack if isinstance(rack, str) else None,
        epoch=czxid,
        listener=chosen[0],
        timestamp_ms=int(timestamp) if isinstance(timestamp, str) and timestamp.lstrip("-").isdigit() else 0,
        security_protocol=chosen[1],
        endpoints=endpoints,
    )


# -- topic ids ------------------------------------------------------------------


def topic_id_text(topic_id: uuid.UUID) -> str:
    """Kafka's ``Uuid.toString``: URL-safe base64 of the 16 bytes, no padding."""
    return base64.urlsafe_b64encode(topic_id.bytes).rstrip(b"=").decode()


def parse_topic_id(text: str) -> uuid.UUID:
    """Kafka's ``Uuid.fromString``."""
    if len(text) > 24:
        raise ZnodeFormatError(f"Input string with prefix `{text[:24]}` is too long to be decoded as a base64 UUID")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as e:
        raise ZnodeFormatError(f"Input string `{text}` is not base64") from e
    if len(raw) != 16:
        raise ZnodeFormatError(
            f"Input string `{text}` decoded as {len(raw)} bytes, which is not equal to the expected 16 bytes of a base64-encoded UUID"
        )
    return uuid.UUID(bytes=raw)


# -- /brokers/topics/<t> --------------------------------------------------------


@dataclass(frozen=True)
class TopicZnode:
    topic_id: uuid.UUID | None  # absent before Kafka 2.8
    assignment: dict[int, list[int]]
    adding: dict[int, list[int]] = field(default_factory=dict)
    removing: dict[int, list[int]] = field(default_factory=dict)


def _partition_map(replicas: dict[int, list[int]]) -> dict[str, list[int]]:
    keys = [str(p) for p in replicas]
    return {k: list(replicas[int(k)]) for k in jvm_json.mutable_map_order(keys)}


def encode_topic(
    topic_id: uuid.UUID | None,
    assignment: dict[int, list[int]],
    adding: dict[int, list[int]] | None = None,
    removing: dict[int, list[int]] | None = None,
) -> bytes:
    """TopicZNode.encode, version 3."""
    fields: dict[str, Any] = {
        "version": 3,
        "partitions": _partition_map(assignment),
        "adding_replicas": _partition_map({p: r for p, r in (adding or {}).items() if r}),
        "removing_replicas": _partition_map({p: r for p, r in (removing or {}).items() if r}),
    }
    if topic_id is not None:
        fields["topic_id"] = topic_id_text(topic_id)
    return _encode(fields, jvm_json.mutable_map_order(list(fields), initial=4))


def _replica_lists(js: Any, what: str) -> dict[int, list[int]]:
    if js is None:
        return {}
    if not isinstance(js, dict):
        raise ZnodeFormatError(f"{what} is not a JSON object")
    try:
        return {int(p): [int(r) for r in replicas] for p, replicas in js.items()}
    except (TypeError, ValueError) as e:
        raise ZnodeFormatError(f"bad {what}: {js!r}") from e


def decode_topic(data: bytes) -> TopicZnode:
    """Versions 1 to 3: a topic without ``topic_id`` (pre-2.8) decodes with
    ``topic_id`` None; missing adding/removing maps are empty."""
    js = _object(data, "topic")
    text = js.get("topic_id")
    return TopicZnode(
        topic_id=parse_topic_id(text) if isinstance(text, str) else None,
        assignment=_replica_lists(js.get("partitions"), "partitions"),
        adding=_replica_lists(js.get("adding_replicas"), "adding_replicas"),
        removing=_replica_lists(js.get("removing_replicas"), "removing_replicas"),
    )


# -- /brokers/topics/<t>/partitions/<p>/state ----------------------------------


def encode_partition_state(state: PartitionState, leader_recovery_state: int = 0) -> bytes:
    """TopicPartitionStateZNode.encode, version 1; ``leader_recovery_state``
    is written only when not RECOVERED (0), as Kafka does."""
    fields: dict[str, Any] = {
        "version": 1,
        "leader": state.leader,
        "leader_epoch": state.leader_epoch,
        "controller_epoch": state.controller_epoch,
        "isr": list(state.isr),
    }
    if leader_recovery_state:
        fields["leader_recovery_state"] = leader_recovery_state
    return _encode(fields, jvm_json.immutable_map_order(list(fields)))


def decode_partition_state(data: bytes, version: int) -> PartitionState:
    """``version`` is the state znode's stat version (the partition epoch)."""
    what = "partition state"
    js = _object(data, what)
    isr = js.get("isr")
    if not isinstance(isr, list) or not all(isinstance(r, int) and not isinstance(r, bool) for r in isr):
        raise ZnodeFormatError(f"{what}: bad isr {isr!r}")
    return PartitionState(
        leader=_int(js, "leader", what),
        leader_epoch=_int(js, "leader_epoch", what),
        isr=list(isr),
        controller_epoch=_int(js, "controller_epoch", what),
        version=version,
    )


def decode_leader_recovery_state(data: bytes) -> int:
    """0 (RECOVERED) unless the state says otherwise (1: RECOVERING)."""
    value = _object(data, "partition state").get("leader_recovery_state", 0)
    return value if isinstance(value, int) else 0


# -- /config/topics/<t>, /config/changes ----------------------------------------


def encode_topic_config(config: dict[str, str]) -> bytes:
    """ConfigEntityZNode.encode: ``{"version":1,"config":{...}}``, the
    configs in a ``java.util.Properties``' order."""
    keys = jvm_json.properties_order([str(k) for k in config])
    body = {k: str(config[k]) for k in keys}
    return jvm_json.write({"version": 1, "config": body}).encode()


def decode_topic_config(data: bytes | None) -> dict[str, str]:
    """ConfigEntityZNode.decode: no data or no ``config`` is no overrides;
    every value must be a string."""
    if not data:
        return {}
    try:
        js = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return {}  # Kafka's Json.parseBytes gives None: no configs
    config = js.get("config") if isinstance(js, dict) else None
    if not isinstance(config, dict):
        return {}
    for k, v in config.items():
        if not isinstance(v, str):
            raise ZnodeFormatError(f"config {k!r} is not a string: {v!r}")
    return dict(config)


def encode_config_change(entity_path: str) -> bytes:
    """ConfigEntityChangeNotificationSequenceZNode.encode, version 2;
    ``entity_path`` like ``topics/<t>``."""
    return _encode({"version": 2, "entity_path": entity_path}, ["version", "entity_path"])


def decode_config_change(data: bytes) -> str:
    """The entity path (``topics/<t>``) of a version 2 notification, or of
    a version 1 one (``entity_type`` and ``entity_name``), as
    ZkConfigManager reads both."""
    js = _object(data, "config change")
    version = js.get("version")
    if version == 2 and isinstance(js.get("entity_path"), str):
        return js["entity_path"]
    if version == 1 and isinstance(js.get("entity_type"), str) and isinstance(js.get("entity_name"), str):
        return f"{js['entity_type']}/{js['entity_name']}"
    raise ZnodeFormatError(f"Config change notification has an unsupported version or content: {data!r}")


# -- /cluster/id, /latest_producer_id_block ------------------------------------


def encode_cluster_id(cluster_id: str) -> bytes:
    """ClusterIdZNode.toJson: the version is the string "1"."""
    return _encode({"version": "1", "id": cluster_id}, ["version", "id"])


def decode_cluster_id(data: bytes) -> str:
    cluster_id = _object(data, "cluster id").get("id")
    if not isinstance(cluster_id, str):
        raise ZnodeFormatError(f"Failed to parse the cluster id json {data!r}")
    return cluster_id


def encode_producer_id_block(broker: int, start: int, end: int) -> bytes:
    """ProducerIdBlockZNode.generateProducerIdBlockJson: the bounds (both
    inclusive) are strings."""
    fields = {"version": 1, "broker": broker, "block_start": str(start), "block_end": str(end)}
    return _encode(fields, list(fields))


def decode_producer_id_block(data: bytes) -> tuple[int, int, int]:
    """(broker, first id, last id)."""
    what = "producer id block"
    js = _object(data, what)
    try:
        return _int(js, "broker", what), int(js["block_start"]), int(js["block_end"])
    except (KeyError, TypeError, ValueError) as e:
        raise ZnodeFormatError(f"Failed to parse the producerId block json {data!r}") from e


# -- /admin/delete_topics/<t>, /isr_change_notification -------------------------


def encode_delete_marker() -> None:
    """KafkaZkClient.createDeleteTopicPath creates the marker with no data
    at all (null, not empty): pass this as the znode's data."""


def encode_isr_change(partitions: list[tuple[str, int]]) -> bytes:
    """IsrChangeNotificationSequenceZNode.encode, version 1."""
    body = [{"topic": t, "partition": p} for t, p in partitions]
    return jvm_json.write({"version": 1, "partitions": body}).encode()


def decode_isr_change(data: bytes) -> list[tuple[str, int]]:
    js = _object(data, "isr change")
    try:
        return [(str(e["topic"]), int(e["partition"])) for e in js["partitions"]]
    except (KeyError, TypeError, ValueError) as e:
        raise ZnodeFormatError(f"bad isr change notification: {data!r}") from e
