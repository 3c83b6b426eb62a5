"""Consumer groups: the coordinator, its state machines, committed offsets."""

import time

OFFSETS_TOPIC = "__consumer_offsets"


def now_ms() -> int:
    return int(time.time() * 1000)


def java_string_hash(text: str) -> int:
    """Java's String.hashCode (over UTF-16 code units, int32 arithmetic):
    Kafka picks a group's coordinator partition with it, and so must we for
    the same group to land in the same partition of __consumer_offsets."""
    h = 0
    data = text.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + ((data[i] << 8) | data[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def partition_for(group_id: str, partitions: int) -> int:
    """Kafka's Utils.abs(hashCode) % partitions (abs(MIN_VALUE) is 0 there)."""
    h = java_string_hash(group_id)
    return (0 if h == -(1 << 31) else abs(h)) % partitions


# group.consumer.migration.policy: which online conversions between classic
# and KIP-848 consumer groups are allowed (upgrade, downgrade).
MIGRATION_POLICIES = {
    "bidirectional": (True, True),
    "upgrade": (True, False),
    "downgrade": (False, True),
    "disabled": (False, False),
}


def parse_migration_policy(text: str) -> str:
    """Kafka's values, without regard to case."""
    value = text.strip().lower()
    if value not in MIGRATION_POLICIES:
        raise ValueError(f"expected one of {', '.join(MIGRATION_POLICIES)}")
    return value
