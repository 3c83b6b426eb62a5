"""How configs are described to admin clients: sources, synonyms, types, docs.

A topic's effective value of, say, ``retention.ms`` comes from the topic's
own override, else from the broker properties that stand for it (Kafka's
"synonyms": ``log.retention.ms``, ``log.retention.minutes``,
``log.retention.hours``), else from the default. DescribeConfigs reports
where each value came from, and with ``include_synonyms`` the whole chain.

Two of Kafka's rules are kept here as Kafka has them (apache/kafka
``core/.../server/ConfigHelper.scala`` for DescribeConfigs,
``metadata/.../KafkaConfigSchema.java`` for the configs returned by
CreateTopics v5+):

* DescribeConfigs lists the topic override (source DYNAMIC_TOPIC_CONFIG),
  then every broker synonym set in the properties file (STATIC_BROKER_CONFIG),
  then every synonym with a default (DEFAULT_CONFIG), and drops the entries
  ahead of the first one named like the primary broker property. So a broker
  that sets only ``log.retention.hours`` describes ``retention.ms`` with no
  synonyms and source DEFAULT_CONFIG although the value is the broker's.
  The entry's source is that of the first synonym left, else DEFAULT_CONFIG.
* CreateTopics reports DYNAMIC_TOPIC_CONFIG for an override, else
  STATIC_BROKER_CONFIG when any synonym is set explicitly, else
  DEFAULT_CONFIG.

We have no dynamic broker configs: every broker property is read-only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from storage.config import TOPIC_CONFIGS, LogConfig

from .config import BROKER_PROPERTIES, BrokerConfig

# DescribeConfigsResponse.ConfigSource
DYNAMIC_TOPIC_CONFIG = 1
DYNAMIC_BROKER_CONFIG = 2
DYNAMIC_DEFAULT_BROKER_CONFIG = 3
STATIC_BROKER_CONFIG = 4
DEFAULT_CONFIG = 5
DYNAMIC_BROKER_LOGGER_CONFIG = 6

# DescribeConfigsResponse.ConfigType
UNKNOWN, BOOLEAN, STRING, INT, SHORT, LONG, DOUBLE, LIST, CLASS, PASSWORD = range(10)

# ConfigResource.Type
TOPIC_RESOURCE, BROKER_RESOURCE, BROKER_LOGGER_RESOURCE, CLIENT_METRICS_RESOURCE, GROUP_RESOURCE = 2, 4, 8, 16, 32

# Kafka's ConfigDef types of the topic configs (storage LogConfig.java).
TOPIC_TYPES = {
    "segment.bytes": INT,
    "segment.ms": LONG,
    "segment.index.bytes": INT,
    "index.interval.bytes": INT,
    "retention.ms": LONG,
    "retention.bytes": LONG,
    "cleanup.policy": LIST,
    "delete.retention.ms": LONG,
    "min.cleanable.dirty.ratio": DOUBLE,
    "min.compaction.lag.ms": LONG,
    "max.compaction.lag.ms": LONG,
    "flush.messages": LONG,
    "flush.ms": LONG,
    "max.message.bytes": INT,
    "message.timestamp.type": STRING,
    "message.timestamp.before.max.ms": LONG,
    "message.timestamp.after.max.ms": LONG,
    "min.insync.replicas": INT,
    "unclean.leader.election.enable": BOOLEAN,
    "file.delete.delay.ms": LONG,
    "preallocate": BOOLEAN,
    "compression.type": STRING,
    "write.caching": BOOLEAN,
}

TOPIC_DOCS = {
    "segment.bytes": "Size at which the active log segment is rolled.",
    "segment.ms": "Time after which the active segment is rolled even if not full.",
    "segment.index.bytes": "Size of the offset and time index files of a segment.",
    "index.interval.bytes": "Bytes of records between two offset index entries.",
    "retention.ms": "How long records are kept before old segments are deleted; -1 keeps them forever.",
    "retention.bytes": "Largest size a partition may grow to before old segments are deleted; -1 for no limit.",
    "cleanup.policy": "What happens to old segments: delete, compact, or both.",
    "delete.retention.ms": "How long tombstones stay readable in a compacted topic.",
    "min.cleanable.dirty.ratio": "Share of uncompacted log that makes a partition eligible for compaction.",
    "min.compaction.lag.ms": "Minimum age of a record before it may be compacted.",
    "max.compaction.lag.ms": "Maximum time a record may remain uncompacted.",
    "flush.messages": "Records appended between forced fsyncs.",
    "flush.ms": "Time between forced fsyncs.",
    "max.message.bytes": "Largest record batch the topic accepts.",
    "message.timestamp.type": "CreateTime keeps the producer's timestamp, LogAppendTime uses the broker's clock.",
    "message.timestamp.before.max.ms": "How far in the past a CreateTime timestamp may be.",
    "message.timestamp.after.max.ms": "How far in the future a CreateTime timestamp may be.",
    "min.insync.replicas": "In-sync replicas needed for an acks=all write to succeed.",
    "unclean.leader.election.enable": "Whether a replica outside the ISR may become leader.",
    "file.delete.delay.ms": "Delay before a deleted segment's files are removed.",
    "preallocate": "Whether new segment files are preallocated.",
    "compression.type": "Compression of stored batches, or producer to keep the producer's.",
    "write.caching": "Acknowledge acks=all writes before they are fsynced (pybroker extension).",
}

# Kafka's ServerTopicConfigSynonyms / DynamicBrokerConfig.brokerConfigSynonyms:
# broker properties standing for one topic config, highest priority first.
_SYNONYM_GROUPS = (
    ("log.roll.ms", "log.roll.hours"),
    ("log.retention.ms", "log.retention.minutes", "log.retention.hours"),
    ("log.flush.interval.ms", "log.flush.scheduler.interval.ms"),
)
BROKER_SYNONYMS: dict[str, tuple[str, ...]] = {name: group for group in _SYNONYM_GROUPS for name in group}

# Kafka's types of the broker properties that are not INT, BOOLEAN or STRING.
_LONG_PROPERTIES = frozenset(
    {
        "connections.max.idle.ms",
        "log.roll.ms",
        "log.retention.ms",
        "log.retention.bytes",
        "log.retention.check.interval.ms",
        "log.cleaner.backoff.ms",
        "log.cleaner.delete.retention.ms",
        "log.cleaner.min.compaction.lag.ms",
        "log.cleaner.max.compaction.lag.ms",
        "log.flush.interval.messages",
        "log.flush.interval.ms",
        "log.flush.scheduler.interval.ms",
        "log.message.timestamp.before.max.ms",
        "log.message.timestamp.after.max.ms",
        "log.segment.delete.delay.ms",
        "shutdown.grace.ms",
    }
)
_OTHER_PROPERTY_TYPES = {
    "log.cleanup.policy": LIST,
    "log.cleaner.min.cleanable.ratio": DOUBLE,
    "offsets.topic.replication.factor": SHORT,
}

_PRIMARY_TO_TOPIC = {broker_name: topic for topic, (_, _, broker_name) in TOPIC_CONFIGS.items()}

INTERNAL_METADATA_TOPIC = "__cluster_metadata"


@dataclass
class ConfigEntry:
    name: str
    value: str | None
    source: int
    config_type: int
    documentation: str | None
    read_only: bool = False
    is_sensitive: bool = False
    synonyms: list[tuple[str, str | None, int]] = field(default_factory=list)


# -- topic configs -------------------------------------------------------------


def is_list(name: str) -> bool:
    return TOPIC_TYPES.get(name) == LIST


def topic_config_problem(props: dict[str, str], base: LogConfig) -> str | None:
    """Why ``props`` (topic-level overrides) are invalid, or None; Kafka
    answers INVALID_CONFIG with this message."""
    for name, raw in props.items():
        if name not in TOPIC_CONFIGS:
            return f"Unknown topic config name: {name}"
        reason = _TYPE_PROBLEMS.get(TOPIC_TYPES.get(name))
        if reason is not None:
            try:
                TOPIC_CONFIGS[name][1](raw)
            except ValueError:
                return f"Invalid value {raw} for configuration {name}: {reason}"
    try:
        LogConfig.from_props(props, base=base)
    except ValueError as exc:
        return str(exc)
    return None


# ConfigDef's complaints about a value that does not parse as its type.
_TYPE_PROBLEMS = {
    INT: "Not a number of type INT",
    LONG: "Not a number of type LONG",
    DOUBLE: "Not a number of type DOUBLE",
    BOOLEAN: "Expected value to be either true or false",
}


def default_topic_value(name: str) -> str:
    """The value of ``name`` in Kafka's topic ConfigDef (used by APPEND and
    SUBTRACT when the topic has no override)."""
    return LogConfig().to_props()[name]


def _topic_value(name: str, effective: dict[str, str], overrides: dict[str, str]) -> str:
    if name in overrides and is_list(name):
        # Kafka prints a list override as parsed: trimmed, in the given order.
        return ",".join(part.strip() for part in overrides[name].split(",") if part.strip())
    return effective[name]


def _broker_value(config: BrokerConfig, name: str) -> str | None:
    value = config.props.get(name, "")
    return value if value != "" else None


def _broker_synonyms(config: BrokerConfig, name: str) -> list[tuple[str, str | None, int]]:
    """ConfigHelper.configSynonyms for broker property ``name`` (static
    broker configs, then defaults, from the first entry named ``name``)."""
    names = BROKER_SYNONYMS.get(name, (name,))
    found = [(n, config.props[n], STATIC_BROKER_CONFIG) for n in names if n in config.explicit]
    found += [
        (n, BROKER_PROPERTIES[n][1], DEFAULT_CONFIG)
        for n in names
        if n in BROKER_PROPERTIES and BROKER_PROPERTIES[n][1] != ""
    ]
    for i, (n, _, _) in enumerate(found):
        if n == name:
            return found[i:]
    return []


def describe_topic(
    config: BrokerConfig, effective: LogConfig, overrides: dict[str, str], include_docs: bool
) -> list[ConfigEntry]:
    """Every topic config with its value, source and synonyms (DescribeConfigs)."""
    values = effective.to_props()
    entries = []
    for name in sorted(TOPIC_CONFIGS):
        value = _topic_value(name, values, overrides)
        synonyms = _broker_synonyms(config, TOPIC_CONFIGS[name][2])
        if name in overrides:
            synonyms.insert(0, (name, value, DYNAMIC_TOPIC_CONFIG))
        entries.append(
            ConfigEntry(
                name=name,
                value=value,
                source=synonyms[0][2] if synonyms else DEFAULT_CONFIG,
                config_type=TOPIC_TYPES.get(name, UNKNOWN),
                documentation=TOPIC_DOCS.get(name) if include_docs else None,
                synonyms=synonyms,
            )
        )
    return entries


def created_topic_configs(config: BrokerConfig, effective: LogConfig, overrides: dict[str, str]) -> list[ConfigEntry]:
    """The configs CreateTopics v5+ returns, sources resolved as the KRaft
    controller does (KafkaConfigSchema.resolveEffectiveTopicConfig)."""
    values = effective.to_props()
    entries = []
    for name in sorted(TOPIC_CONFIGS):
        if name in overrides:
            source = DYNAMIC_TOPIC_CONFIG
        elif any(n in config.explicit for n in BROKER_SYNONYMS.get(TOPIC_CONFIGS[name][2], (TOPIC_CONFIGS[name][2],))):
            source = STATIC_BROKER_CONFIG
        else:
            source = DEFAULT_CONFIG
        entries.append(
            ConfigEntry(name, _topic_value(name, values, overrides), source, TOPIC_TYPES.get(name, UNKNOWN), None)
        )
    return entries


# -- broker properties -----------------------------------------------------------


def broker_type(name: str) -> int:
    if name in _OTHER_PROPERTY_TYPES:
        return _OTHER_PROPERTY_TYPES[name]
    if name in _LONG_PROPERTIES:
        return LONG
    parse = BROKER_PROPERTIES[name][0]
    return {"_int": INT, "_bool": BOOLEAN}.get(parse.__name__, STRING)


def _broker_doc(name: str) -> str | None:
    doc = BROKER_PROPERTIES[name][2]
    if doc:
        return doc
    topic = _PRIMARY_TO_TOPIC.get(name)
    return TOPIC_DOCS.get(topic) if topic else None


def describe_broker(config: BrokerConfig, include_docs: bool) -> list[ConfigEntry]:
    """Every broker property (DescribeConfigs for resource ``<node id>``)."""
    entries = []
    for name in sorted(BROKER_PROPERTIES):
        synonyms = _broker_synonyms(config, name)
        entries.append(
            ConfigEntry(
                name=name,
                value=_broker_value(config, name),
                source=synonyms[0][2] if synonyms else DEFAULT_CONFIG,
                config_type=broker_type(name),
                documentation=_broker_doc(name) if include_docs else None,
                read_only=True,
                synonyms=synonyms,
            )
        )
    return entries


def broker_change_problem(names: list[str]) -> str | None:
    """Every broker property is static here; Kafka refuses a change to a
    static one with INVALID_REQUEST and this message."""
    if not names:
        return None
    return f"Cannot update these configs dynamically: Set({', '.join(names)})"


# -- broker loggers (Kafka's BROKER_LOGGER resource) ----------------------------

ROOT_LOGGER = "root"
# Kafka's log4j level names and the Python levels they stand for.
LOG_LEVELS = {
    "OFF": logging.CRITICAL + 10,
    "FATAL": logging.CRITICAL,
    "ERROR": logging.ERROR,
    "WARN": logging.WARNING,
    "INFO": logging.INFO,
    "DEBUG": logging.DEBUG,
    "TRACE": 5,
    "ALL": 1,
}
_LEVEL_NAMES = {level: name for name, level in LOG_LEVELS.items()}
_OURS = ("pybroker", "storage", "protocol")


def broker_loggers() -> dict[str, logging.Logger]:
    """The broker's own loggers by name, the root logger as ``root``."""
    found = {ROOT_LOGGER: logging.getLogger()}
    for name, logger in logging.root.manager.loggerDict.items():
        if isinstance(logger, logging.Logger) and name.split(".")[0] in _OURS:
            found[name] = logger
    return found


def level_name(logger: logging.Logger) -> str:
    level = logger.getEffectiveLevel()
    for threshold in sorted(_LEVEL_NAMES, reverse=True):
        if level >= threshold:
            return _LEVEL_NAMES[threshold]
    return "ALL"


def describe_loggers() -> list[ConfigEntry]:
    return [
        ConfigEntry(name, level_name(logger), DYNAMIC_BROKER_LOGGER_CONFIG, STRING, None)
        for name, logger in sorted(broker_loggers().items())
    ]
