"""Per-partition log settings under Kafka's topic-config names.

``TOPIC_CONFIGS`` is the one table of topic configs: each key's type,
default, validator and doc as Kafka 4's ``LogConfig`` defines them, the
``LogConfig`` attribute that holds it here and the broker properties that
stand for it (Kafka's ``ServerTopicConfigSynonyms``, highest priority
first). Parsing, CreateTopics, AlterConfigs, IncrementalAlterConfigs and
DescribeConfigs all read it.

A topic's effective config is the broker's ``log.*`` defaults overlaid with
the topic's own overrides, the way Kafka resolves them; ``LogConfig.from_props``
takes the topic-level names (``segment.bytes``, ``retention.ms`` …), refuses
what Kafka refuses with Kafka's message, then makes the checks that span
keys (compaction lags, tiered storage).

Some configs are accepted and reported but change nothing here, because
the feature behind them does not exist: tiered storage (``remote.*``,
``local.retention.*``), replication throttles and message down-conversion.
``compression.type`` other than ``producer`` and the ``compression.*.level``
settings likewise: the broker stores batches as produced and never
recompresses them.
"""

from __future__ import annotations

import dataclasses
import functools
import random
import re
from dataclasses import dataclass

from .configdef import LONG_MAX, ConfigKey, EachOneOf, OneOf, Rule, at_least, between

POLICIES = ("compact", "delete")
COMPRESSION_TYPES = ("uncompressed", "zstd", "lz4", "snappy", "gzip", "producer")
GZIP_LEVELS = (1, 9, -1)  # lowest, highest, the codec's own default
_REPLICA = re.compile(r"([0-9]+:[0-9]+)?")


@dataclass(frozen=True)
class TopicConfigKey(ConfigKey):
    attr: str = ""
    synonyms: tuple[str, ...] = ()


def _throttled(items) -> bool:
    # Kafka's ThrottledReplicaListValidator: "*" alone, or partition:broker pairs.
    return [i.strip() for i in items] == ["*"] or all(_REPLICA.fullmatch(i.strip()) for i in items)


def _throttle_rule(name: str) -> Rule:
    return Rule(
        _throttled,
        f"{name} must be the literal '*' or a list of replicas in the following format: "
        "[partitionId]:[brokerId],[partitionId]:[brokerId],...",
        "[partitionId]:[brokerId],[partitionId]:[brokerId],...",
    )


_GZIP_RULE = Rule(
    lambda level: GZIP_LEVELS[0] <= level <= GZIP_LEVELS[1] or level == GZIP_LEVELS[2],
    f"Value must be between {GZIP_LEVELS[0]} and {GZIP_LEVELS[1]} or equal to {GZIP_LEVELS[2]}",
    f"[{GZIP_LEVELS[0]},...,{GZIP_LEVELS[1]}] or {GZIP_LEVELS[2]}",
)

_WEEK_MS = 7 * 24 * 3600 * 1000


def _key(name, type_, default, validator, attr, synonyms, doc) -> TopicConfigKey:
    if isinstance(synonyms, str):
        synonyms = (synonyms,)
    return TopicConfigKey(name, type_, default, validator, doc, attr, synonyms)


TOPIC_CONFIGS: dict[str, TopicConfigKey] = {
    k.name: k
    for k in (
        _key("segment.bytes", "INT", 1024**3, at_least(14), "segment_bytes", "log.segment.bytes",
             "Size at which the active log segment is rolled."),
        _key("segment.ms", "LONG", _WEEK_MS, at_least(1), "segment_ms", ("log.roll.ms", "log.roll.hours"),
             "Time after which the active segment is rolled even if not full."),
        _key("segment.jitter.ms", "LONG", 0, at_least(0), "segment_jitter_ms",
             ("log.roll.jitter.ms", "log.roll.jitter.hours"),
             "Up to this much is taken at random off segment.ms for each segment, so that partitions do not all roll at once."),
        # Kafka allows 4; below one time-index entry (12 bytes) every segment
        # is born full and the roll itself cannot record its max timestamp.
        _key("segment.index.bytes", "INT", 10 * 1024 * 1024, at_least(12), "segment_index_bytes",
             "log.index.size.max.bytes", "Size of the offset and time index files of a segment."),
        _key("flush.messages", "LONG", LONG_MAX, at_least(1), "flush_messages", "log.flush.interval.messages",
             "Records appended between forced fsyncs."),
        _key("flush.ms", "LONG", LONG_MAX, at_least(0), "flush_ms",
             ("log.flush.interval.ms", "log.flush.scheduler.interval.ms"), "Time between forced fsyncs."),
        _key("retention.bytes", "LONG", -1, None, "retention_bytes", "log.retention.bytes",
             "Largest size a partition may grow to before old segments are deleted; -1 for no limit."),
        _key("retention.ms", "LONG", _WEEK_MS, at_least(-1), "retention_ms",
             ("log.retention.ms", "log.retention.minutes", "log.retention.hours"),
             "How long records are kept before old segments are deleted; -1 keeps them forever."),
        _key("max.message.bytes", "INT", 1024 * 1024 + 12, at_least(0), "max_message_bytes", "message.max.bytes",
             "Largest record batch the topic accepts."),
        _key("index.interval.bytes", "INT", 4096, at_least(0), "index_interval_bytes", "log.index.interval.bytes",
             "Bytes of records between two offset index entries."),
        _key("delete.retention.ms", "LONG", 24 * 3600 * 1000, at_least(0), "delete_retention_ms",
             "log.cleaner.delete.retention.ms", "How long tombstones stay readable in a compacted topic."),
        _key("min.compaction.lag.ms", "LONG", 0, at_least(0), "min_compaction_lag_ms",
             "log.cleaner.min.compaction.lag.ms", "Minimum age of a record before it may be compacted."),
        _key("max.compaction.lag.ms", "LONG", LONG_MAX, at_least(1), "max_compaction_lag_ms",
             "log.cleaner.max.compaction.lag.ms", "Maximum time a record may remain uncompacted."),
        _key("file.delete.delay.ms", "LONG", 60000, at_least(0), "file_delete_delay_ms", "log.segment.delete.delay.ms",
             "Delay before a deleted segment's files are removed."),
        _key("min.cleanable.dirty.ratio", "DOUBLE", 0.5, between(0, 1), "min_cleanable_dirty_ratio",
             "log.cleaner.min.cleanable.ratio",
             "Share of uncompacted log that makes a partition eligible for compaction."),
        _key("cleanup.policy", "LIST", ["delete"], EachOneOf(POLICIES), "cleanup_policy", "log.cleanup.policy",
             "What happens to old segments: delete, compact, both, or (empty) neither, which keeps everything."),
        _key("unclean.leader.election.enable", "BOOLEAN", False, None, "unclean_leader_election",
             "unclean.leader.election.enable", "Whether a replica outside the ISR may become leader."),
        _key("min.insync.replicas", "INT", 1, at_least(1), "min_insync_replicas", "min.insync.replicas",
             "In-sync replicas needed for an acks=all write to succeed."),
        _key("compression.type", "STRING", "producer", OneOf(COMPRESSION_TYPES), "compression_type",
             "compression.type", "Compression of stored batches, or producer to keep the producer's (stored as produced here)."),
        _key("compression.gzip.level", "INT", -1, _GZIP_RULE, "compression_gzip_level", "compression.gzip.level",
             "Level used when the broker compresses with gzip (it never does here)."),
        _key("compression.lz4.level", "INT", 9, between(1, 17), "compression_lz4_level", "compression.lz4.level",
             "Level used when the broker compresses with lz4 (it never does here)."),
        _key("compression.zstd.level", "INT", 3, between(-131072, 22), "compression_zstd_level",
             "compression.zstd.level", "Level used when the broker compresses with zstd (it never does here)."),
        _key("preallocate", "BOOLEAN", False, None, "preallocate", "log.preallocate",
             "Whether new segment files are preallocated."),
        _key("message.timestamp.type", "STRING", "CreateTime", OneOf(("CreateTime", "LogAppendTime")),
             "message_timestamp_type", "log.message.timestamp.type",
             "CreateTime keeps the producer's timestamp, LogAppendTime uses the broker's clock."),
        _key("message.timestamp.before.max.ms", "LONG", LONG_MAX, at_least(0), "timestamp_before_max_ms",
             "log.message.timestamp.before.max.ms", "How far in the past a CreateTime timestamp may be."),
        _key("message.timestamp.after.max.ms", "LONG", LONG_MAX, at_least(0), "timestamp_after_max_ms",
             "log.message.timestamp.after.max.ms", "How far in the future a CreateTime timestamp may be."),
        _key("leader.replication.throttled.replicas", "LIST", [], _throttle_rule("leader.replication.throttled.replicas"),
             "leader_replication_throttled_replicas", (),
             "Replicas whose leader-side replication is throttled (no effect here: no replication throttles)."),
        _key("follower.replication.throttled.replicas", "LIST", [],
             _throttle_rule("follower.replication.throttled.replicas"), "follower_replication_throttled_replicas", (),
             "Replicas whose follower-side replication is throttled (no effect here: no replication throttles)."),
        _key("message.downconversion.enable", "BOOLEAN", True, None, "message_downconversion_enable",
             "log.message.downconversion.enable", "Kept for old tools; no effect (no message down-conversion)."),
        _key("remote.storage.enable", "BOOLEAN", False, None, "remote_storage_enable", (),
             "Tiered storage for the topic; refused when true, as with tiered storage disabled."),
        _key("local.retention.ms", "LONG", -2, at_least(-2), "local_retention_ms", "log.local.retention.ms",
             "Local retention under tiered storage; -2 means retention.ms (no effect here)."),
        _key("local.retention.bytes", "LONG", -2, at_least(-2), "local_retention_bytes", "log.local.retention.bytes",
             "Local retention under tiered storage; -2 means retention.bytes (no effect here)."),
        _key("remote.log.copy.disable", "BOOLEAN", False, None, "remote_log_copy_disable", (),
             "Stop copying segments to tiered storage (no effect here)."),
        _key("remote.log.delete.on.disable", "BOOLEAN", False, None, "remote_log_delete_on_disable", (),
             "Delete tiered data when tiered storage is turned off (no effect here)."),
        _key("write.caching", "BOOLEAN", False, None, "write_caching", "log.write.caching",
             "Acknowledge acks=all writes before they are fsynced (pybroker extension)."),
    )
}  # fmt: skip

_BY_ATTR = {k.attr: k for k in TOPIC_CONFIGS.values()}


def _stored(key: TopicConfigKey, value):
    """The parsed value as LogConfig holds it (hashable)."""
    if key.name == "cleanup.policy":
        return frozenset(value)
    if isinstance(value, list):
        return tuple(value)
    return value


@functools.lru_cache(maxsize=4096)
def _jitter(base_offset: int, bound: int) -> int:
    return random.Random(base_offset).randrange(bound)


def _default(name: str):
    key = TOPIC_CONFIGS[name]
    return dataclasses.field(default=_stored(key, key.default))


@dataclass(frozen=True)
class LogConfig:
    """Defaults are Apache Kafka's, from ``TOPIC_CONFIGS``."""

    segment_bytes: int = _default("segment.bytes")
    segment_ms: int = _default("segment.ms")
    segment_jitter_ms: int = _default("segment.jitter.ms")
    segment_index_bytes: int = _default("segment.index.bytes")
    flush_messages: int = _default("flush.messages")
    flush_ms: int = _default("flush.ms")
    retention_bytes: int = _default("retention.bytes")
    retention_ms: int = _default("retention.ms")
    max_message_bytes: int = _default("max.message.bytes")
    index_interval_bytes: int = _default("index.interval.bytes")
    delete_retention_ms: int = _default("delete.retention.ms")
    min_compaction_lag_ms: int = _default("min.compaction.lag.ms")
    max_compaction_lag_ms: int = _default("max.compaction.lag.ms")
    file_delete_delay_ms: int = _default("file.delete.delay.ms")
    min_cleanable_dirty_ratio: float = _default("min.cleanable.dirty.ratio")
    cleanup_policy: frozenset[str] = _default("cleanup.policy")
    unclean_leader_election: bool = _default("unclean.leader.election.enable")
    min_insync_replicas: int = _default("min.insync.replicas")
    compression_type: str = _default("compression.type")
    compression_gzip_level: int = _default("compression.gzip.level")
    compression_lz4_level: int = _default("compression.lz4.level")
    compression_zstd_level: int = _default("compression.zstd.level")
    preallocate: bool = _default("preallocate")
    message_timestamp_type: str = _default("message.timestamp.type")
    timestamp_before_max_ms: int = _default("message.timestamp.before.max.ms")
    timestamp_after_max_ms: int = _default("message.timestamp.after.max.ms")
    leader_replication_throttled_replicas: tuple[str, ...] = _default("leader.replication.throttled.replicas")
    follower_replication_throttled_replicas: tuple[str, ...] = _default("follower.replication.throttled.replicas")
    message_downconversion_enable: bool = _default("message.downconversion.enable")
    remote_storage_enable: bool = _default("remote.storage.enable")
    local_retention_ms: int = _default("local.retention.ms")
    local_retention_bytes: int = _default("local.retention.bytes")
    remote_log_copy_disable: bool = _default("remote.log.copy.disable")
    remote_log_delete_on_disable: bool = _default("remote.log.delete.on.disable")
    write_caching: bool = _default("write.caching")

    @property
    def compact(self) -> bool:
        return "compact" in self.cleanup_policy

    @property
    def delete(self) -> bool:
        # An empty cleanup.policy is neither: nothing is deleted by age or
        # size, nothing compacted (Kafka's infinite retention).
        return "delete" in self.cleanup_policy

    @property
    def log_append_time(self) -> bool:
        return self.message_timestamp_type == "LogAppendTime"

    def roll_jitter_ms(self, base_offset: int) -> int:
        """How much earlier than segment.ms the segment at ``base_offset``
        rolls: Kafka draws it at random per segment, below
        min(segment.jitter.ms, segment.ms); drawn here from the base offset
        so it stays the same for the segment's life (and across restarts)."""
        if self.segment_jitter_ms <= 0:
            return 0
        return _jitter(base_offset, min(self.segment_jitter_ms, self.segment_ms))

    @classmethod
    def from_props(cls, props: dict[str, str], base: LogConfig | None = None) -> LogConfig:
        """Overlay topic-level properties on ``base``; the ValueError carries
        Kafka's message, naming the key and the rule."""
        changes = {}
        for name, raw in props.items():
            key = TOPIC_CONFIGS.get(name)
            if key is None:
                raise ValueError(f"Unknown topic config name: {name}")
            changes[key.attr] = _stored(key, key.parse(raw))
        cfg = dataclasses.replace(base or cls(), **changes)
        cfg.check()
        return cfg

    def check(self) -> None:
        """Every value within its key's rule, then Kafka's checks across keys."""
        for attr, key in _BY_ATTR.items():
            value = getattr(self, attr)
            key.validate(list(value) if isinstance(value, (frozenset, tuple)) else value)
        if self.min_compaction_lag_ms > self.max_compaction_lag_ms:
            raise ValueError(
                f"conflict topic config setting min.compaction.lag.ms ({self.min_compaction_lag_ms}) > "
                f"max.compaction.lag.ms ({self.max_compaction_lag_ms})"
            )
        if self.remote_storage_enable:
            # What Kafka answers while remote.log.storage.system.enable is false.
            raise ValueError(
                "Tiered Storage functionality is disabled in the broker. "
                "Topic cannot be configured with remote log storage."
            )

    def to_props(self) -> dict[str, str]:
        """Topic-level names and values as Kafka prints them."""
        out = {}
        for attr, key in _BY_ATTR.items():
            value = getattr(self, attr)
            if isinstance(value, frozenset):
                value = sorted(value, key=["delete", "compact"].index)
            out[key.name] = key.text(value)
        return out
