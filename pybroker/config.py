"""Broker configuration under Apache Kafka's property names.

Sources, later ones winning: built-in defaults, a ``server.properties``-style
file (``-c``), environment variables (``PYBROKER_LOG_DIRS=...`` for
``log.dirs``: prefix, upper case, dots as underscores) and ``--override
key=value``. Every key must be known and every value must parse and keep
its rule (Kafka's types, ranges and enums); the error is Kafka's message
and names the key, and the broker does not start.

Broker-level log defaults (``log.segment.bytes``, ``log.retention.hours`` …)
become the default topic config (``storage.config.LogConfig``); topics
override them with the topic-level names.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

from pybroker.storage.config import TOPIC_CONFIGS, LogConfig
from pybroker.storage.configdef import ConfigKey, ConfigValueError, EachOneOf, OneOf, Rule, at_least

from .acl.authorizer import AUTHORIZER_CLASSES, super_users_problem
from .groups import MIGRATION_POLICIES
from .inter_broker import InterBrokerSecurity
from .inter_broker import resolve as resolve_inter_broker
from .kafka_keys import is_kafka_key
from .listeners import DEFAULT_PROTOCOL_MAP
from .listeners import resolve as resolve_listeners
from .principal_rules import parse_rules
from .properties import PropertiesError, decode, parse
from .sasl.settings import OAUTHBEARER_PROPERTIES, listener_mechanisms, max_reauth_ms
from .tls import listener_contexts

log = logging.getLogger("pybroker.config")

ENV_PREFIX = "PYBROKER_"


class ConfigError(ValueError):
    """Properties that are unknown, do not parse or break their rules:
    ``problems`` lists every one, one line each."""

    def __init__(self, problems: str | list[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


def _prop(name: str, type_: str, default, validator=None, doc: str = "") -> ConfigKey:
    return ConfigKey(name, type_, default, validator, doc)


_TOPIC_BY_SYNONYM = {syn: name for name, key in TOPIC_CONFIGS.items() for syn in key.synonyms}
_AS_TOPIC = object()


def _rules_problem(text: str) -> str | None:
    try:
        parse_rules(text)
    except ValueError as exc:
        return str(exc)
    return None


def _log(name: str, type_: str, default=_AS_TOPIC, doc: str = "") -> ConfigKey:
    """A broker default of a topic config, under the topic key's rule so
    that the broker refuses at start what a topic would be refused; its
    default is the topic's unless given (None: not set)."""
    key = TOPIC_CONFIGS[_TOPIC_BY_SYNONYM[name]]
    return ConfigKey(name, type_, key.default if default is _AS_TOPIC else default, key.validator, doc)


# Kafka's broker properties that pybroker reads, with Kafka's types, defaults
# and validators (ServerConfigs, ServerLogConfigs / LogConfig.SERVER_CONFIG_DEF,
# SocketServerConfigs, CleanerConfig, GroupCoordinatorConfig,
# TransactionLogConfig ...). A default of None means "not set" (Kafka's null).
BROKER_PROPERTIES: dict[str, ConfigKey] = {
    k.name: k
    for k in (
        _prop("node.id", "INT", 1, at_least(0), "id of this broker"),
        _prop("broker.id", "INT", -1, at_least(-1), "alias of node.id (ZooKeeper-era name)"),
        _prop("listeners", "STRING", "PLAINTEXT://127.0.0.1:9092", None, "comma-separated listener URLs"),
        _prop("advertised.listeners", "STRING", None, None, "addresses given to clients (default: listeners)"),
        _prop(
            "listener.security.protocol.map",
            "STRING",
            DEFAULT_PROTOCOL_MAP,
            None,
            "security protocol of each listener name, NAME:PROTOCOL,... (PLAINTEXT only so far)",
        ),
        _prop("inter.broker.listener.name", "STRING", None, None, "listener the brokers use between them"),
        _prop(
            "security.inter.broker.protocol",
            "STRING",
            "PLAINTEXT",
            None,
            "protocol between brokers, when inter.broker.listener.name is not set",
        ),
        _prop(
            "controller.listener.names",
            "STRING",
            None,
            None,
            "KRaft controller listeners: accepted in listeners, not opened (pybroker runs no controller quorum)",
        ),
        _prop("log.dirs", "STRING", "./pybroker-data", None, "directories holding the partition logs"),
        _prop("log.dir", "STRING", None, None, "single log directory (used when log.dirs is not set)"),
        _prop("num.partitions", "INT", 1, at_least(1), "partitions of an auto-created topic"),
        # Kafka has no rule here; one broker cannot hold fewer than one replica.
        _prop("default.replication.factor", "INT", 1, at_least(1), "replication factor of an auto-created topic"),
        _prop("auto.create.topics.enable", "BOOLEAN", True, None, "create a topic when a client first asks for it"),
        _prop("delete.topic.enable", "BOOLEAN", True, None, "allow DeleteTopics"),
        _prop("cluster.id", "STRING", None, None, "cluster id (generated on first start when empty)"),
        _prop(
            "zookeeper.connect",
            "STRING",
            None,
            None,
            "ZooKeeper for cluster mode, host:port[,host:port...][/chroot] (empty: single node)",
        ),
        # Kafka's default is 18000; a shorter session lets a dead broker's
        # leaderships move sooner (ZooKeeper clamps it to its own bounds).
        _prop("zookeeper.session.timeout.ms", "INT", 6000, None, "ZooKeeper session timeout (cluster mode)"),
        _prop(
            "zookeeper.connection.timeout.ms",
            "INT",
            None,
            None,
            "how long to wait for ZooKeeper at start (default: zookeeper.session.timeout.ms)",
        ),
        _prop("broker.rack", "STRING", None, None, "rack of this broker, for rack-aware replica placement"),
        _prop(
            "controlled.shutdown.enable",
            "BOOLEAN",
            True,
            None,
            "on SIGTERM, ask the controller to move this broker's leaderships away before stopping",
        ),
        _prop("controlled.shutdown.max.retries", "INT", 3, None, "attempts at a controlled shutdown"),
        _prop("controlled.shutdown.retry.backoff.ms", "LONG", 5000, None, "pause between controlled-shutdown attempts"),
        _prop("controller.socket.timeout.ms", "INT", 30000, None, "how long a request to the controller may take"),
        _prop(
            "auto.leader.rebalance.enable",
            "BOOLEAN",
            True,
            None,
            "the controller gives preferred replicas their leadership back",
        ),
        _prop(
            "leader.imbalance.check.interval.seconds",
            "LONG",
            300,
            at_least(1),
            "how often the controller checks for leadership away from preferred replicas",
        ),
        _prop(
            "leader.imbalance.per.broker.percentage",
            "INT",
            10,
            None,
            "share of a broker's preferred leaderships held elsewhere that triggers a rebalance",
        ),
        _prop(
            "replica.lag.time.max.ms",
            "LONG",
            30000,
            at_least(0),
            "a follower not caught up with its leader for this long leaves the ISR",
        ),
        _prop("replica.fetch.wait.max.ms", "INT", 500, at_least(0), "longest wait of a follower's Fetch"),
        _prop("replica.fetch.min.bytes", "INT", 1, at_least(1), "bytes a follower's Fetch waits for"),
        _prop("replica.fetch.max.bytes", "INT", 1048576, at_least(0), "a follower's Fetch bytes per partition"),
        _prop(
            "replica.fetch.response.max.bytes", "INT", 10485760, at_least(0), "a follower's Fetch bytes in all"
        ),
        _prop("replica.fetch.backoff.ms", "INT", 1000, at_least(0), "pause after a follower's Fetch failed"),
        _prop("replica.socket.timeout.ms", "INT", 30000, None, "a follower's Fetch is given up after this"),
        # One fetcher task per leader broker whatever this says (Trio tasks are cheap).
        _prop("num.replica.fetchers", "INT", 1, at_least(1), "accepted for Kafka's config files"),
        _prop("socket.request.max.bytes", "INT", 104857600, at_least(1), "largest request frame accepted"),
        _prop(
            "connections.max.idle.ms", "LONG", 600000, None, "idle connections are closed after this (0 or less: never)"
        ),
        _prop(
            "queued.max.requests", "INT", 500, at_least(1), "requests in flight per connection before reading pauses"
        ),
        _prop("quota.window.num", "INT", 11, at_least(1), "windows a client quota's rate is measured over"),
        _prop("quota.window.size.seconds", "INT", 1, at_least(1), "length of each client quota window"),
        _log("message.max.bytes", "INT", doc="largest record batch accepted (topic: max.message.bytes)"),
        # Kafka 4 asks 1 MiB of the broker default (KIP-1030), 14 bytes of a topic.
        _prop("log.segment.bytes", "INT", 1024**3, at_least(1024 * 1024), "size at which a segment is rolled"),
        _log("log.roll.ms", "LONG", default=None),
        _prop("log.roll.hours", "INT", 168, at_least(1)),
        _log("log.roll.jitter.ms", "LONG", default=None),
        _prop("log.roll.jitter.hours", "INT", 0, at_least(0)),
        _log("log.index.size.max.bytes", "INT"),
        _log("log.index.interval.bytes", "INT"),
        _prop("log.retention.ms", "LONG", None),
        _prop("log.retention.minutes", "INT", None),
        _prop("log.retention.hours", "INT", 168, None, "how long to keep data"),
        _log("log.retention.bytes", "LONG"),
        _prop("log.retention.check.interval.ms", "LONG", 300000, at_least(1), "how often retention runs"),
        _log("log.cleanup.policy", "LIST"),
        _prop("log.cleaner.enable", "BOOLEAN", True),
        _prop("log.cleaner.backoff.ms", "LONG", 15000, at_least(0)),
        _log("log.cleaner.delete.retention.ms", "LONG"),
        _log("log.cleaner.min.cleanable.ratio", "DOUBLE"),
        _log("log.cleaner.min.compaction.lag.ms", "LONG"),
        _log("log.cleaner.max.compaction.lag.ms", "LONG"),
        _log("log.flush.interval.messages", "LONG"),
        _log("log.flush.interval.ms", "LONG", default=None),
        _prop("log.flush.scheduler.interval.ms", "LONG", 1000, at_least(0)),
        _prop("log.flush.offset.checkpoint.interval.ms", "INT", 60000, at_least(0)),
        _log("log.message.timestamp.type", "STRING"),
        _log("log.message.timestamp.before.max.ms", "LONG"),
        _log("log.message.timestamp.after.max.ms", "LONG"),
        _log("log.segment.delete.delay.ms", "LONG"),
        _log("log.preallocate", "BOOLEAN"),
        _log("log.write.caching", "BOOLEAN"),
        _log("log.local.retention.ms", "LONG"),
        _log("log.local.retention.bytes", "LONG"),
        _log("compression.type", "STRING"),
        _log("compression.gzip.level", "INT"),
        _log("compression.lz4.level", "INT"),
        _log("compression.zstd.level", "INT"),
        _log("min.insync.replicas", "INT"),
        _log("unclean.leader.election.enable", "BOOLEAN"),
        _prop("offsets.topic.num.partitions", "INT", 50, at_least(1), "partitions of __consumer_offsets"),
        _prop(
            "offsets.topic.replication.factor",
            "SHORT",
            3,
            at_least(1),
            "replication factor of __consumer_offsets (Kafka's default 3 in cluster mode; "
            "a single node, where nothing sets it, uses 1)",
        ),
        _prop(
            "offsets.commit.timeout.ms",
            "INT",
            5000,
            at_least(1),
            "how long the group coordinator's writes wait for every in-sync replica",
        ),
        _prop("offsets.retention.minutes", "INT", 10080, at_least(1)),
        _prop("offsets.retention.check.interval.ms", "LONG", 600000, at_least(1)),
        _prop("offsets.topic.segment.bytes", "INT", 104857600, at_least(1)),
        _prop("offset.metadata.max.bytes", "INT", 4096),
        _prop("group.max.size", "INT", 2**31 - 1, at_least(1)),
        _prop("group.consumer.session.timeout.ms", "INT", 45000, at_least(1)),
        _prop("group.consumer.heartbeat.interval.ms", "INT", 5000, at_least(1)),
        _prop("group.consumer.max.size", "INT", 2**31 - 1, at_least(1)),
        _prop(
            "group.consumer.migration.policy",
            "STRING",
            "bidirectional",
            # Kafka's CaseInsensitiveValidString.
            Rule(
                lambda v: v.lower() in MIGRATION_POLICIES,
                "String must be one of (case insensitive): " + ", ".join(p.upper() for p in MIGRATION_POLICIES),
                "(case insensitive) [" + ", ".join(p.upper() for p in MIGRATION_POLICIES) + "]",
            ),
            "online conversions between classic and consumer groups",
        ),
        _prop("group.initial.rebalance.delay.ms", "INT", 3000),
        _prop("group.min.session.timeout.ms", "INT", 6000),
        _prop("group.max.session.timeout.ms", "INT", 1800000),
        _prop("transactional.id.expiration.ms", "INT", 604800000, at_least(1)),
        _prop("transaction.max.timeout.ms", "INT", 900000, at_least(1), "the longest transaction timeout allowed"),
        _prop("transaction.state.log.num.partitions", "INT", 50, at_least(1), "partitions of __transaction_state"),
        _prop(
            "transaction.state.log.replication.factor",
            "SHORT",
            3,
            at_least(1),
            "replication factor of __transaction_state (a single node, where nothing sets it, uses 1)",
        ),
        _prop("transaction.state.log.min.isr", "INT", 2, at_least(1), "min.insync.replicas of __transaction_state"),
        _prop("transaction.state.log.segment.bytes", "INT", 104857600, at_least(1)),
        _prop("transaction.abort.timed.out.transaction.cleanup.interval.ms", "INT", 10000, at_least(1)),
        _prop("transaction.remove.expired.transaction.cleanup.interval.ms", "INT", 3600000, at_least(1)),
        _prop("transaction.partition.verification.enable", "BOOLEAN", True),
        _prop("producer.id.expiration.ms", "INT", 86400000, at_least(1), "idle producer ids are forgotten after this"),
        _prop("shutdown.grace.ms", "LONG", 10000, at_least(0), "time in-flight requests get on shutdown (pybroker)"),
        # SASL listeners (pybroker.sasl).
        _prop("sasl.enabled.mechanisms", "LIST", "GSSAPI", None, "SASL mechanisms of SASL listeners (PLAIN, SCRAM-SHA-256/512)"),
        _prop("sasl.jaas.config", "PASSWORD", None, None, "JAAS login module and its options (PLAIN: user_<name>)"),
        _prop(
            "connection.failed.authentication.delay.ms",
            "INT",
            100,
            at_least(0),
            "a failed authentication is answered after this long, then the connection closed",
        ),
        # OAUTHBEARER's signed tokens and KIP-368 re-authentication (pybroker.sasl.settings).
        *OAUTHBEARER_PROPERTIES,
        # Authorization (pybroker.acl): Kafka's AclAuthorizer and its settings.
        _prop(
            "authorizer.class.name",
            "STRING",
            "",
            Rule(lambda v: not v or v.strip() in AUTHORIZER_CLASSES, "Class could not be found.",
                 "[" + ", ".join(("", *AUTHORIZER_CLASSES)) + "]"),
            "ACL authorization: kafka.security.authorizer.AclAuthorizer (or StandardAuthorizer); empty: none",
        ),
        _prop(
            "super.users",
            "STRING",
            None,
            Rule(lambda v: super_users_problem(v) is None, "expected principals Type:name separated by ;",
                 "User:a;User:b"),
            "principals allowed everything, separated by ; (User:ANONYMOUS for a PLAINTEXT inter-broker listener)",
        ),
        _prop(
            "allow.everyone.if.no.acl.found",
            "BOOLEAN",
            False,
            None,
            "a resource no ACL names is open to everyone",
        ),
        # TLS of SSL listeners (pybroker.tls): PEM keystores and truststores
        # (KIP-651), files or inline.
        _prop("ssl.keystore.type", "STRING", "JKS", None, "keystore format; pybroker reads PEM only"),
        _prop("ssl.keystore.location", "STRING", None, None, "PEM file: the private key and certificate chain"),
        _prop("ssl.keystore.password", "PASSWORD", None, None, "keystore password (PEM: see ssl.key.password)"),
        _prop("ssl.key.password", "PASSWORD", None, None, "password of an encrypted private key"),
        _prop("ssl.keystore.certificate.chain", "PASSWORD", None, None, "certificate chain as inline PEM"),
        _prop("ssl.keystore.key", "PASSWORD", None, None, "private key as inline PEM"),
        _prop("ssl.truststore.type", "STRING", "JKS", None, "truststore format; pybroker reads PEM only"),
        _prop("ssl.truststore.location", "STRING", None, None, "PEM file of the CAs that sign client certificates"),
        _prop("ssl.truststore.password", "PASSWORD", None, None, "truststore password (not used with PEM)"),
        _prop("ssl.truststore.certificates", "PASSWORD", None, None, "trusted CAs as inline PEM"),
        _prop(
            "ssl.client.auth",
            "STRING",
            "none",
            OneOf(("required", "requested", "none")),
            "client certificates: required, requested or none",
        ),
        _prop(
            "ssl.enabled.protocols",
            "LIST",
            "TLSv1.2,TLSv1.3",
            EachOneOf(("TLSv1.2", "TLSv1.3")),
            "TLS versions accepted",
        ),
        _prop("ssl.protocol", "STRING", "TLSv1.3", None, "TLS protocol family (the highest of ssl.enabled.protocols)"),
        _prop("ssl.cipher.suites", "LIST", "", None, "TLS 1.2 cipher suites (OpenSSL names; empty: the defaults)"),
        _prop(
            "ssl.principal.mapping.rules",
            "STRING",
            "DEFAULT",
            Rule(lambda v: _rules_problem(v) is None, "Invalid rule", "RULE:^CN=(.*?),.*$/$1/L,DEFAULT"),
            "client certificate subject -> principal name (Kafka's RULE:pattern/replacement/[LU] and DEFAULT)",
        ),
        _prop("ssl.endpoint.identification.algorithm", "STRING", "https", None,
              "https: a broker checks the host name in another broker's certificate; empty: it does not"),
        _prop("sasl.mechanism.inter.broker.protocol", "STRING", "GSSAPI", None,
              "SASL mechanism the brokers log in to each other with (PLAIN, SCRAM-SHA-256/512)"),
        _prop(
            "metrics.listener",
            "STRING",
            None,
            None,
            "http://host:port of the Prometheus /metrics endpoint (pybroker; empty: none)",
        ),
        _prop(
            "console.listener",
            "STRING",
            None,
            None,
            "http://host:port of the web console (pybroker; empty: none; --dev: http://127.0.0.1:9021)",
        ),
    )
}

# Broker synonyms in another unit than the topic config they stand for.
_UNIT_MS = {
    "log.roll.hours": 3600000,
    "log.roll.jitter.hours": 3600000,
    "log.retention.minutes": 60000,
    "log.retention.hours": 3600000,
}
# Kafka falls back from log.flush.interval.ms to the flusher's period; ours
# runs every second by default and must not make every topic fsync as often.
_NOT_A_DEFAULT = {"log.flush.scheduler.interval.ms"}


def default_text(key: ConfigKey) -> str:
    """A property's default as written in a properties file ("" for none)."""
    text = key.text(key.default)
    return "" if text is None else text


class BrokerConfig:
    """Parsed broker properties; ``props`` keeps the effective string values.

    Every problem is found before any is reported: ConfigError carries
    them all (``problems``). Kafka's keys that pybroker does not use are
    kept in ``ignored`` and warned about once."""

    def __init__(self, props: Mapping[str, str] | None = None, origins: Mapping[str, str] | None = None):
        self.props: dict[str, str] = {name: default_text(key) for name, key in BROKER_PROPERTIES.items()}
        self.explicit: set[str] = set()
        self.values: dict[str, object] = {}
        self.ignored: dict[str, str] = {}
        self.warnings: list[str] = []
        self._origins = origins or {}
        problems: list[str] = []
        for key, value in (props or {}).items():
            if key in BROKER_PROPERTIES:
                self.set(key, value)
            elif is_kafka_key(key):
                self.ignored[key] = str(value)
            else:
                problems.append(self._where(key, f"unknown property {key!r}"))
        self._derive(problems)
        if problems:
            raise ConfigError(problems)
        if self.ignored:
            self.warnings.insert(
                0, "ignoring Kafka properties pybroker does not use: " + ", ".join(sorted(self.ignored))
            )
        for warning in self.warnings:
            log.warning("%s", warning)

    def set(self, key: str, value: str) -> None:
        if key not in BROKER_PROPERTIES:
            raise ConfigError(f"unknown property {key!r}")
        self.props[key] = str(value)
        self.explicit.add(key)

    def _where(self, key: str, message: str) -> str:
        origin = self._origins.get(key)
        return f"{message} ({origin})" if origin else message

    def _parse(self, name: str):
        raw = self.props[name]
        if raw == "" and BROKER_PROPERTIES[name].type != "LIST":
            return None
        try:
            return BROKER_PROPERTIES[name].parse(raw)
        except ConfigValueError as exc:
            raise ConfigError(self._where(name, str(exc))) from None

    def _derive(self, problems: list[str]) -> None:
        failed = set()
        for key in BROKER_PROPERTIES:
            try:
                self.values[key] = self._parse(key)
            except ConfigError as exc:
                problems.extend(exc.problems)
                failed.add(key)
        if failed:
            return  # the rules between keys need every value
        v = self.values
        self.node_id: int = (
            v["broker.id"] if "broker.id" in self.explicit and "node.id" not in self.explicit else v["node.id"]
        )
        found, listener_problems, listener_warnings = resolve_listeners(v, self.explicit)
        problems.extend(listener_problems)
        self.warnings.extend(listener_warnings)
        if found is not None:
            self.listeners = found.bound
            self.advertised = found.advertised
            self.inter_broker_listener = found.inter_broker
            # One client listener so far: the inter-broker one, which the
            # other brokers and every client are given.
            self.advertised_listener = next(a for a in found.advertised if a.name == found.inter_broker)
            self.ssl_principal_rules = parse_rules(None)
            # The brokers' own logins: the JAAS keys as given, before the
            # SASL settings below take theirs out of ``ignored``.
            jaas_texts = {k: t for k, t in self.ignored.items() if k.endswith(".sasl.jaas.config")}
            self.sasl: dict[str, dict[str, object]] = {}  # listener -> mechanism -> its settings
            self.sasl_reauth_ms: dict[str, dict[str, int]] = {}  # listener -> mechanism -> connections.max.reauth.ms
            for lst in found.bound:
                if lst.protocol.startswith("SASL_"):
                    try:
                        self.sasl[lst.name] = listener_mechanisms(lst.name, v, self.ignored)
                        self.sasl_reauth_ms[lst.name] = max_reauth_ms(lst.name, self.sasl[lst.name], v, self.ignored)
                    except ValueError as exc:
                        problems.append(str(exc))
            # listener -> its TLS context (pybroker.tls), SSL and SASL_SSL ones.
            self.tls_contexts, tls_problems = listener_contexts(found.bound, v, self.ignored, BROKER_PROPERTIES)
            problems.extend(tls_problems)
            self.inter_broker_security = InterBrokerSecurity("PLAINTEXT")
            inter = next((lst for lst in found.bound if lst.name == found.inter_broker), None)
            if inter is not None:
                self.inter_broker_security, inter_problems = resolve_inter_broker(
                    inter, v, jaas_texts, self.sasl.get(inter.name))
                problems.extend(inter_problems)
            # Refused rules are a problem reported by their Rule above.
            if _rules_problem(v["ssl.principal.mapping.rules"]) is None:
                self.ssl_principal_rules = parse_rules(v["ssl.principal.mapping.rules"])
        dirs = v["log.dirs"] if "log.dirs" in self.explicit or not v["log.dir"] else v["log.dir"]
        self.log_dirs = [Path(d) for d in _items(dirs)]
        if not self.log_dirs:
            problems.append("At least one log directory must be defined via log.dirs or log.dir.")
        if v["group.consumer.heartbeat.interval.ms"] >= v["group.consumer.session.timeout.ms"]:
            problems.append(
                "group.consumer.heartbeat.interval.ms must be less than group.consumer.session.timeout.ms"
            )
        # Cluster mode (ZooKeeper) is on when zookeeper.connect names one.
        self.cluster_mode: bool = bool(v["zookeeper.connect"])
        if not self.cluster_mode and "offsets.topic.replication.factor" not in self.explicit:
            # Kafka's default of 3 cannot be met by one broker: a single node
            # that leaves it unset makes its offsets topic with one replica.
            self.props["offsets.topic.replication.factor"] = "1"
            v["offsets.topic.replication.factor"] = 1
        for key in ("transaction.state.log.replication.factor", "transaction.state.log.min.isr"):
            if not self.cluster_mode and key not in self.explicit:
                self.props[key] = "1"  # as for the offsets topic: one broker, one replica
                v[key] = 1
        try:
            self.log_config = self._log_config()
        except ConfigError as exc:
            problems.extend(exc.problems)

    def _log_config(self) -> LogConfig:
        """The default topic config: each topic key from the first of its
        broker synonyms that has a value (Kafka's precedence: *.ms over
        *.minutes over *.hours)."""
        topic_props = {}
        for name, key in TOPIC_CONFIGS.items():
            for synonym in key.synonyms:
                value = self.values.get(synonym)
                if value is None or synonym in _NOT_A_DEFAULT:
                    continue
                if synonym in _UNIT_MS:
                    value *= _UNIT_MS[synonym]
                topic_props[name] = key.text(value)
                break
        retention = int(topic_props["retention.ms"])
        if retention == 0:
            raise ConfigError("log.retention.ms must be unlimited (-1) or, greater than or equal to 1")
        # Kafka: any negative retention time means unlimited.
        topic_props["retention.ms"] = str(max(retention, -1))
        try:
            return LogConfig.from_props(topic_props)
        except ValueError as exc:
            raise ConfigError(f"{exc} (from the broker's defaults)") from None

    def __getitem__(self, key: str):
        return self.values[key]

    @classmethod
    def load(
        cls,
        path: os.PathLike | None = None,
        overrides: list[str] | None = None,
        environ: Mapping[str, str] | None = None,
        dev: bool = False,
        defaults: Mapping[str, str] | None = None,
    ) -> BrokerConfig:
        """Defaults (``DEV_DEFAULTS`` over Kafka's with ``dev``, then
        ``defaults``), then the
        file, the environment and the overrides, later ones winning. An
        environment variable counts only when it names a key pybroker or
        Kafka has: other tools' ``PYBROKER_...`` variables are not ours."""
        props: dict[str, str] = dict(DEV_DEFAULTS) if dev else {}
        props.update(defaults or {})
        origins: dict[str, str] = {}
        problems: list[str] = []
        if path is not None:
            try:
                for line, key, value in read_entries(Path(path)):
                    props[key] = value
                    origins[key] = f"{Path(path).name} line {line}"
            except ConfigError as exc:
                problems.extend(exc.problems)
        env = os.environ if environ is None else environ
        for name, value in env.items():
            if name.startswith(ENV_PREFIX):
                key = name[len(ENV_PREFIX) :].lower().replace("_", ".")
                if key in BROKER_PROPERTIES or is_kafka_key(key):
                    props[key] = value
                    origins[key] = f"environment variable {name}"
                else:
                    log.debug("environment variable %s names no broker property: not read", name)
        for item in overrides or []:
            key, sep, value = item.partition("=")
            if not sep:
                problems.append(f"--override needs key=value, got {item!r}")
                continue
            props[key.strip()] = value.strip()
            origins[key.strip()] = "--override"
        try:
            config = cls(props, origins)
        except ConfigError as exc:
            problems.extend(exc.problems)
        if problems:
            raise ConfigError(problems)
        return config


# ``--dev`` and the pytest fixtures: a developer's defaults, as Kafka's own
# sample config sets some of them; production defaults stay Kafka's.
DEV_DEFAULTS = {
    # A new group's first member is answered at once, not after 3 s.
    "group.initial.rebalance.delay.ms": "0",
    # Created on a group's or transaction's first use: one partition each
    # is made at once.
    "offsets.topic.num.partitions": "1",
    "transaction.state.log.num.partitions": "1",
}


# ``pybroker --dev`` beyond the fixtures' defaults: the console is on (a
# fixed port: one per test broker would collide).
DEV_COMMAND_DEFAULTS = {"console.listener": "http://127.0.0.1:9021"}


def _items(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def read_entries(path: Path) -> list[tuple[int, str, str]]:
    """(line, key, value) of a Java properties file (pybroker.properties)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return parse(decode(data))
    except PropertiesError as exc:
        raise ConfigError(f"{path.name} {exc}") from None


def read_properties(path: Path) -> dict[str, str]:
    return {key: value for _, key, value in read_entries(path)}
