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

from pybroker.storage.config import TOPIC_CONFIGS, LogConfig

from .config import BROKER_PROPERTIES, BrokerConfig, default_text

# DescribeConfigsResponse.ConfigSource
DYNAMIC_TOPIC_CONFIG = 1
DYNAMIC_BROKER_CONFIG = 2
DYNAMIC_DEFAULT_BROKER_CONFIG = 3
STATIC_BROKER_CONFIG = 4
DEFAULT_CONFIG = 5
DYNAMIC_BROKER_LOGGER_CONFIG = 6

# DescribeConfigsResponse.ConfigType
UNKNOWN, BOOLEAN, STRING, INT, SHORT, LONG, DOUBLE, LIST, CLASS, PASSWORD = range(10)
_TYPE_CODES = {
    "BOOLEAN": BOOLEAN,
    "STRING": STRING,
    "INT": INT,
    "SHORT": SHORT,
    "LONG": LONG,
    "DOUBLE": DOUBLE,
    "LIST": LIST,
    "CLASS": CLASS,
    "PASSWORD": PASSWORD,
}

# ConfigResource.Type
TOPIC_RESOURCE, BROKER_RESOURCE, BROKER_LOGGER_RESOURCE, CLIENT_METRICS_RESOURCE, GROUP_RESOURCE = 2, 4, 8, 16, 32

# Kafka's ServerTopicConfigSynonyms / DynamicBrokerConfig.brokerConfigSynonyms:
# broker properties standing for one topic config, highest priority first.
BROKER_SYNONYMS: dict[str, tuple[str, ...]] = {
    name: key.synonyms for key in TOPIC_CONFIGS.values() for name in key.synonyms
}
_PRIMARY_TO_TOPIC = {key.synonyms[0]: name for name, key in TOPIC_CONFIGS.items() if key.synonyms}

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
    key = TOPIC_CONFIGS.get(name)
    return key is not None and key.type == "LIST"


def topic_config_problem(props: dict[str, str], base: LogConfig) -> str | None:
    """Why ``props`` (topic-level overrides) are invalid, or None; Kafka
    answers INVALID_CONFIG with this message (ConfigDef's wording for a
    value that breaks its key's rule)."""
    try:
        LogConfig.from_props(props, base=base)
    except ValueError as exc:
        return str(exc)
    return None


def default_topic_value(name: str) -> str:
    """The value of ``name`` in Kafka's topic ConfigDef (used by APPEND and
    SUBTRACT when the topic has no override)."""
    key = TOPIC_CONFIGS[name]
    return key.text(key.default)


def _topic_value(name: str, effective: dict[str, str], overrides: dict[str, str]) -> str:
    if name in overrides and is_list(name):
        # Kafka prints a list override as parsed: trimmed, in the given order.
        return TOPIC_CONFIGS[name].text(TOPIC_CONFIGS[name].parse(overrides[name]))
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
        (n, default_text(BROKER_PROPERTIES[n]), DEFAULT_CONFIG)
        for n in names
        if n in BROKER_PROPERTIES and BROKER_PROPERTIES[n].default is not None
    ]
    for i, (n, _, _) in enumerate(found):
        if n == name:
            return found[i:]
    return []


def effective_topic_config(config: BrokerConfig, overrides: dict[str, str]) -> LogConfig:
    """A topic's configs: its overrides over the broker's defaults."""
    return LogConfig.from_props(overrides, base=config.log_config)


def describe_topic(config: BrokerConfig, overrides: dict[str, str], include_docs: bool) -> list[ConfigEntry]:
    """Every topic config with its value, source and synonyms (DescribeConfigs)."""
    values = effective_topic_config(config, overrides).to_props()
    entries = []
    for name in sorted(TOPIC_CONFIGS):
        value = _topic_value(name, values, overrides)
        key = TOPIC_CONFIGS[name]
        synonyms = _broker_synonyms(config, key.synonyms[0]) if key.synonyms else []
        if name in overrides:
            synonyms.insert(0, (name, value, DYNAMIC_TOPIC_CONFIG))
        entries.append(
            ConfigEntry(
                name=name,
                value=value,
                source=synonyms[0][2] if synonyms else DEFAULT_CONFIG,
                config_type=_TYPE_CODES[key.type],
                documentation=key.doc if include_docs else None,
                synonyms=synonyms,
            )
        )
    return entries


def created_topic_configs(config: BrokerConfig, overrides: dict[str, str]) -> list[ConfigEntry]:
    """The configs CreateTopics v5+ returns, sources resolved as the KRaft
    controller does (KafkaConfigSchema.resolveEffectiveTopicConfig)."""
    values = effective_topic_config(config, overrides).to_props()
    entries = []
    for name in sorted(TOPIC_CONFIGS):
        key = TOPIC_CONFIGS[name]
        if name in overrides:
            source = DYNAMIC_TOPIC_CONFIG
        elif any(n in config.explicit for n in key.synonyms):
            source = STATIC_BROKER_CONFIG
        else:
            source = DEFAULT_CONFIG
        entries.append(ConfigEntry(name, _topic_value(name, values, overrides), source, _TYPE_CODES[key.type], None))
    return entries


# -- broker properties -----------------------------------------------------------


def broker_type(name: str) -> int:
    return _TYPE_CODES[BROKER_PROPERTIES[name].type]


def _broker_doc(name: str) -> str | None:
    doc = BROKER_PROPERTIES[name].doc
    if doc:
        return doc
    topic = _PRIMARY_TO_TOPIC.get(name)
    return TOPIC_CONFIGS[topic].doc if topic else None


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
