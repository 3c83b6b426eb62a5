"""Per-partition log settings under Kafka's topic-config names.

A topic's effective config is the broker's ``log.*`` defaults overlaid with
the topic's own overrides, the way Kafka resolves them; ``LogConfig.from_props``
takes the topic-level names (``segment.bytes``, ``retention.ms`` …).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

LONG_MAX = 2**63 - 1


def _bool(text: str) -> bool:
    low = text.strip().lower()
    if low not in ("true", "false"):
        raise ValueError(f"expected true or false, got {text!r}")
    return low == "true"


def _policy(text: str) -> frozenset[str]:
    parts = frozenset(p.strip() for p in text.split(",") if p.strip())
    if not parts or not parts <= {"delete", "compact"}:
        raise ValueError(f"cleanup.policy must be delete, compact or both, got {text!r}")
    return parts


def _timestamp_type(text: str) -> str:
    if text not in ("CreateTime", "LogAppendTime"):
        raise ValueError(f"expected CreateTime or LogAppendTime, got {text!r}")
    return text


# Kafka topic-config name -> (attribute, parser, broker-level name)
TOPIC_CONFIGS: dict[str, tuple[str, object, str]] = {
    "segment.bytes": ("segment_bytes", int, "log.segment.bytes"),
    "segment.ms": ("segment_ms", int, "log.roll.ms"),
    "segment.index.bytes": ("segment_index_bytes", int, "log.index.size.max.bytes"),
    "index.interval.bytes": ("index_interval_bytes", int, "log.index.interval.bytes"),
    "retention.ms": ("retention_ms", int, "log.retention.ms"),
    "retention.bytes": ("retention_bytes", int, "log.retention.bytes"),
    "cleanup.policy": ("cleanup_policy", _policy, "log.cleanup.policy"),
    "delete.retention.ms": ("delete_retention_ms", int, "log.cleaner.delete.retention.ms"),
    "min.cleanable.dirty.ratio": ("min_cleanable_dirty_ratio", float, "log.cleaner.min.cleanable.ratio"),
    "min.compaction.lag.ms": ("min_compaction_lag_ms", int, "log.cleaner.min.compaction.lag.ms"),
    "max.compaction.lag.ms": ("max_compaction_lag_ms", int, "log.cleaner.max.compaction.lag.ms"),
    "flush.messages": ("flush_messages", int, "log.flush.interval.messages"),
    "flush.ms": ("flush_ms", int, "log.flush.interval.ms"),
    "max.message.bytes": ("max_message_bytes", int, "message.max.bytes"),
    "message.timestamp.type": ("message_timestamp_type", _timestamp_type, "log.message.timestamp.type"),
    "message.timestamp.before.max.ms": ("timestamp_before_max_ms", int, "log.message.timestamp.before.max.ms"),
    "message.timestamp.after.max.ms": ("timestamp_after_max_ms", int, "log.message.timestamp.after.max.ms"),
    "min.insync.replicas": ("min_insync_replicas", int, "min.insync.replicas"),
    "unclean.leader.election.enable": ("unclean_leader_election", _bool, "unclean.leader.election.enable"),
    "file.delete.delay.ms": ("file_delete_delay_ms", int, "log.segment.delete.delay.ms"),
    "preallocate": ("preallocate", _bool, "log.preallocate"),
    "compression.type": ("compression_type", str, "compression.type"),
    "write.caching": ("write_caching", _bool, "log.write.caching"),
}


@dataclass(frozen=True)
class LogConfig:
    """Defaults are Apache Kafka's."""

    segment_bytes: int = 1024 * 1024 * 1024
    segment_ms: int = 7 * 24 * 3600 * 1000
    segment_index_bytes: int = 10 * 1024 * 1024
    index_interval_bytes: int = 4096
    retention_ms: int = 7 * 24 * 3600 * 1000
    retention_bytes: int = -1
    cleanup_policy: frozenset[str] = frozenset({"delete"})
    delete_retention_ms: int = 24 * 3600 * 1000
    min_cleanable_dirty_ratio: float = 0.5
    min_compaction_lag_ms: int = 0
    max_compaction_lag_ms: int = LONG_MAX
    flush_messages: int = LONG_MAX
    flush_ms: int = LONG_MAX
    max_message_bytes: int = 1048588
    message_timestamp_type: str = "CreateTime"
    timestamp_before_max_ms: int = LONG_MAX
    timestamp_after_max_ms: int = LONG_MAX
    min_insync_replicas: int = 1
    unclean_leader_election: bool = False
    file_delete_delay_ms: int = 60000
    preallocate: bool = False
    compression_type: str = "producer"
    write_caching: bool = False

    @property
    def compact(self) -> bool:
        return "compact" in self.cleanup_policy

    @property
    def delete(self) -> bool:
        return "delete" in self.cleanup_policy

    @property
    def log_append_time(self) -> bool:
        return self.message_timestamp_type == "LogAppendTime"

    @classmethod
    def from_props(cls, props: dict[str, str], base: LogConfig | None = None) -> LogConfig:
        """Overlay topic-level properties on ``base``; ValueError names the bad key."""
        changes = {}
        for key, raw in props.items():
            if key not in TOPIC_CONFIGS:
                raise ValueError(f"unknown topic config {key!r}")
            attr, parse, _ = TOPIC_CONFIGS[key]
            try:
                changes[attr] = parse(str(raw))
            except ValueError as exc:
                raise ValueError(f"invalid value {raw!r} for {key}: {exc}") from None
        cfg = dataclasses.replace(base or cls(), **changes)
        cfg.check()
        return cfg

    def check(self) -> None:
        if self.segment_bytes < 14:
            raise ValueError("segment.bytes must be at least 14")
        if self.segment_index_bytes < 12:
            # One time-index entry (12 bytes) must fit, or every segment is born full.
            raise ValueError("segment.index.bytes must be at least 12")
        if self.segment_ms < 1:
            raise ValueError("segment.ms must be at least 1")
        if not 0 <= self.min_cleanable_dirty_ratio <= 1:
            raise ValueError("min.cleanable.dirty.ratio must be between 0 and 1")
        if self.max_message_bytes < 0:
            raise ValueError("max.message.bytes must not be negative")

    def to_props(self) -> dict[str, str]:
        """Topic-level names and values as Kafka prints them."""
        out = {}
        for key, (attr, _, _) in TOPIC_CONFIGS.items():
            value = getattr(self, attr)
            if isinstance(value, frozenset):
                value = ",".join(sorted(value, key=["delete", "compact"].index))
            elif isinstance(value, bool):
                value = str(value).lower()
            out[key] = str(value)
        return out
