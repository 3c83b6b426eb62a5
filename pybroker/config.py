"""Broker configuration under Apache Kafka's property names.

Sources, later ones winning: built-in defaults, a ``server.properties``-style
file (``-c``), environment variables (``PYBROKER_LOG_DIRS=...`` for
``log.dirs``: prefix, upper case, dots as underscores) and ``--override
key=value``. Every key must be known and every value must parse; the error
names the key.

Broker-level log defaults (``log.segment.bytes``, ``log.retention.hours`` …)
become the default topic config (``storage.config.LogConfig``); topics
override them with the topic-level names.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from storage.config import TOPIC_CONFIGS, LogConfig

from .groups import parse_migration_policy

ENV_PREFIX = "PYBROKER_"


class ConfigError(ValueError):
    """A property that is unknown or whose value does not parse."""


def _bool(text: str) -> bool:
    low = text.strip().lower()
    if low not in ("true", "false"):
        raise ValueError("expected true or false")
    return low == "true"


def _int(text: str) -> int:
    return int(text.strip())


def _str(text: str) -> str:
    return text.strip()


def _list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


# name -> (parser, default as Kafka writes it, one-line description or "")
BROKER_PROPERTIES: dict[str, tuple[Callable[[str], object], str, str]] = {
    "node.id": (_int, "1", "id of this broker"),
    "broker.id": (_int, "-1", "alias of node.id (ZooKeeper-era name)"),
    "listeners": (_list, "PLAINTEXT://127.0.0.1:9092", "comma-separated listener URLs"),
    "advertised.listeners": (_list, "", "addresses given to clients (default: listeners)"),
    "log.dirs": (_list, "./pybroker-data", "directories holding the partition logs"),
    "log.dir": (_list, "", "single log directory (used when log.dirs is not set)"),
    "num.partitions": (_int, "1", "partitions of an auto-created topic"),
    "default.replication.factor": (_int, "1", "replication factor of an auto-created topic"),
    "auto.create.topics.enable": (_bool, "true", "create a topic when a client first asks for it"),
    "delete.topic.enable": (_bool, "true", "allow DeleteTopics"),
    "cluster.id": (_str, "", "cluster id (generated on first start when empty)"),
    "zookeeper.connect": (_str, "", "ZooKeeper for cluster mode (empty: single node)"),
    "socket.request.max.bytes": (_int, "104857600", "largest request frame accepted"),
    "connections.max.idle.ms": (_int, "600000", "idle connections are closed after this"),
    "queued.max.requests": (_int, "500", "requests in flight per connection before reading pauses"),
    "message.max.bytes": (_int, "1048588", "largest record batch accepted (topic: max.message.bytes)"),
    "log.segment.bytes": (_int, "1073741824", ""),
    "log.roll.ms": (_int, "", ""),
    "log.roll.hours": (_int, "168", ""),
    "log.index.size.max.bytes": (_int, "10485760", ""),
    "log.index.interval.bytes": (_int, "4096", ""),
    "log.retention.ms": (_int, "", ""),
    "log.retention.minutes": (_int, "", ""),
    "log.retention.hours": (_int, "168", "how long to keep data"),
    "log.retention.bytes": (_int, "-1", ""),
    "log.retention.check.interval.ms": (_int, "300000", "how often retention runs"),
    "log.cleanup.policy": (_str, "delete", ""),
    "log.cleaner.enable": (_bool, "true", ""),
    "log.cleaner.backoff.ms": (_int, "15000", ""),
    "log.cleaner.delete.retention.ms": (_int, "86400000", ""),
    "log.cleaner.min.cleanable.ratio": (_str, "0.5", ""),
    "log.cleaner.min.compaction.lag.ms": (_int, "0", ""),
    "log.cleaner.max.compaction.lag.ms": (_int, str(2**63 - 1), ""),
    "log.flush.interval.messages": (_int, str(2**63 - 1), ""),
    "log.flush.interval.ms": (_int, "", ""),
    "log.flush.scheduler.interval.ms": (_int, "1000", ""),
    "log.flush.offset.checkpoint.interval.ms": (_int, "60000", ""),
    "log.message.timestamp.type": (_str, "CreateTime", ""),
    "log.message.timestamp.before.max.ms": (_int, str(2**63 - 1), ""),
    "log.message.timestamp.after.max.ms": (_int, str(2**63 - 1), ""),
    "log.segment.delete.delay.ms": (_int, "60000", ""),
    "log.preallocate": (_bool, "false", ""),
    "log.write.caching": (_bool, "false", ""),
    "compression.type": (_str, "producer", ""),
    "min.insync.replicas": (_int, "1", ""),
    "unclean.leader.election.enable": (_bool, "false", ""),
    "offsets.topic.num.partitions": (_int, "50", "partitions of __consumer_offsets"),
    "offsets.topic.replication.factor": (_int, "1", ""),
    "offsets.retention.minutes": (_int, "10080", ""),
    "offsets.retention.check.interval.ms": (_int, "600000", ""),
    "offsets.topic.segment.bytes": (_int, "104857600", ""),
    "offset.metadata.max.bytes": (_int, "4096", ""),
    "group.max.size": (_int, str(2**31 - 1), ""),
    "group.consumer.session.timeout.ms": (_int, "45000", ""),
    "group.consumer.heartbeat.interval.ms": (_int, "5000", ""),
    "group.consumer.max.size": (_int, str(2**31 - 1), ""),
    "group.consumer.migration.policy": (parse_migration_policy, "bidirectional", "online conversions between classic and consumer groups"),
    "group.initial.rebalance.delay.ms": (_int, "3000", ""),
    "group.min.session.timeout.ms": (_int, "6000", ""),
    "group.max.session.timeout.ms": (_int, "1800000", ""),
    "transactional.id.expiration.ms": (_int, "604800000", ""),
    "producer.id.expiration.ms": (_int, "86400000", "idle producer ids are forgotten after this"),
    "shutdown.grace.ms": (_int, "10000", "time in-flight requests get on shutdown (pybroker)"),
}


@dataclass(frozen=True)
class Listener:
    name: str
    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> Listener:
        parts = urlsplit(url)
        if not parts.scheme or parts.port is None:
            raise ValueError(f"listener {url!r} is not NAME://host:port")
        return cls(parts.scheme.upper(), parts.hostname or "0.0.0.0", parts.port)

    def url(self) -> str:
        return f"{self.name}://{self.host}:{self.port}"


class BrokerConfig:
    """Parsed broker properties; ``props`` keeps the effective string values."""

    def __init__(self, props: Mapping[str, str] | None = None):
        self.props: dict[str, str] = {k: v[1] for k, v in BROKER_PROPERTIES.items()}
        self.explicit: set[str] = set()
        self.values: dict[str, object] = {}
        for key, value in (props or {}).items():
            self.set(key, value)
        self._derive()

    def set(self, key: str, value: str) -> None:
        if key not in BROKER_PROPERTIES:
            raise ConfigError(f"unknown property {key!r}")
        self.props[key] = str(value)
        self.explicit.add(key)

    def _parse(self, key: str):
        parse, _, _ = BROKER_PROPERTIES[key]
        raw = self.props[key]
        if raw == "":
            return None
        try:
            return parse(raw)
        except ValueError as exc:
            raise ConfigError(f"invalid value {raw!r} for {key}: {exc}") from None

    def _derive(self) -> None:
        for key in BROKER_PROPERTIES:
            self.values[key] = self._parse(key)
        v = self.values
        self.node_id: int = v["broker.id"] if "broker.id" in self.explicit and "node.id" not in self.explicit else v["node.id"]
        try:
            self.listeners = [Listener.parse(u) for u in v["listeners"]]
            advertised = v["advertised.listeners"] or v["listeners"]
            self.advertised = [Listener.parse(u) for u in advertised]
        except ValueError as exc:
            raise ConfigError(f"invalid listeners: {exc}") from None
        if not self.listeners:
            raise ConfigError("listeners must name at least one listener")
        for lst in self.listeners:
            if lst.name != "PLAINTEXT":
                raise ConfigError(f"listeners: only PLAINTEXT is supported so far, got {lst.name}")
        dirs = v["log.dirs"] if "log.dirs" in self.explicit or not v["log.dir"] else v["log.dir"]
        self.log_dirs = [Path(d) for d in dirs]
        if not self.log_dirs:
            raise ConfigError("log.dirs must name at least one directory")
        for key in ("num.partitions", "default.replication.factor", "socket.request.max.bytes", "offsets.topic.num.partitions"):
            if v[key] is None or v[key] < 1:
                raise ConfigError(f"{key} must be at least 1")
        self.log_config = self._log_config()

    def _log_config(self) -> LogConfig:
        v = self.values
        broker_name_to_topic = {broker: topic for topic, (_, _, broker) in TOPIC_CONFIGS.items()}
        topic_props = {}
        for broker_key, topic_key in broker_name_to_topic.items():
            if broker_key in self.values and self.values[broker_key] is not None:
                topic_props[topic_key] = self.props[broker_key]
        # Kafka's precedence: *.ms over *.minutes over *.hours.
        retention = v["log.retention.ms"]
        if retention is None:
            retention = v["log.retention.minutes"] * 60000 if v["log.retention.minutes"] is not None else v["log.retention.hours"] * 3600000
        topic_props["retention.ms"] = str(retention)
        roll = v["log.roll.ms"] if v["log.roll.ms"] is not None else v["log.roll.hours"] * 3600000
        topic_props["segment.ms"] = str(roll)
        if v["log.flush.interval.ms"] is not None:
            topic_props["flush.ms"] = str(v["log.flush.interval.ms"])
        try:
            return LogConfig.from_props(topic_props)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def __getitem__(self, key: str):
        return self.values[key]

    @classmethod
    def load(
        cls,
        path: os.PathLike | None = None,
        overrides: list[str] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> BrokerConfig:
        props: dict[str, str] = {}
        if path is not None:
            props.update(read_properties(Path(path)))
        env = os.environ if environ is None else environ
        for name, value in env.items():
            if name.startswith(ENV_PREFIX):
                key = name[len(ENV_PREFIX) :].lower().replace("_", ".")
                if key not in BROKER_PROPERTIES:
                    raise ConfigError(f"unknown property {key!r} (from environment variable {name})")
                props[key] = value
        for item in overrides or []:
            key, sep, value = item.partition("=")
            if not sep:
                raise ConfigError(f"--override needs key=value, got {item!r}")
            props[key.strip()] = value.strip()
        return cls(props)


def read_properties(path: Path) -> dict[str, str]:
    """Java-properties subset: ``key=value`` or ``key: value``, ``#``/``!``
    comments, blank lines."""
    props = {}
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line[0] in "#!":
            continue
        for sep in ("=", ":"):
            if sep in line:
                key, _, value = line.partition(sep)
                break
        else:
            raise ConfigError(f"{path}:{n}: expected key=value")
        props[key.strip()] = value.strip()
    return props
