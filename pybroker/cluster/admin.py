"""Topic administration as the admin handlers see it.

``TopicAdmin`` lists exactly what CreateTopics, DeleteTopics,
CreatePartitions, the config APIs and Metadata's auto-creation ask of the
broker: they reach it through this protocol (the service ``topics``), so
that moving the work elsewhere changes no handler. Single node
(``pybroker.topics.Topics``): every method that stores something raises
KafkaError(KAFKA_STORAGE_ERROR) when it cannot, leaving nothing behind.
Cluster mode (``cluster.zk_admin.ZkTopicAdmin``): the change is written to
ZooKeeper and the call returns once this broker's cache shows it, or
raises KafkaError(REQUEST_TIMED_OUT) at ``deadline`` (``trio.current_time``
units; the change stays written), as Kafka's ZooKeeper-mode brokers answer.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Sequence
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Protocol

from .model import TopicInfo

if TYPE_CHECKING:
    import trio

LEGAL_TOPIC = re.compile(r"^[a-zA-Z0-9._-]+$")
MAX_TOPIC_LENGTH = 249


def topic_name_problem(name: str) -> str | None:
    """Kafka's rules for topic names; None when the name is legal."""
    if not name:
        return "Topic name is illegal, it can't be empty"
    if name in (".", ".."):
        return 'Topic name cannot be "." or ".."'
    if len(name) > MAX_TOPIC_LENGTH:
        return f"Topic name is illegal, it can't be longer than {MAX_TOPIC_LENGTH} characters"
    if not LEGAL_TOPIC.match(name):
        return f"Topic name \"{name}\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
    return None


class TopicAdmin(Protocol):
    # Serialises partition additions: each is checked against the topic as
    # it is once its turn comes.
    @property
    def admin_lock(self) -> trio.Lock: ...

    def reserved_names(self) -> AbstractSet[str]:
        """Names taken though not (or no longer) visible: topics being
        created, or deleted topics whose logs are still being detached."""
        ...

    def reserve_names(self, names: Sequence[str]) -> None: ...

    def release_names(self, names: Sequence[str]) -> None: ...

    async def create_topic_async(
        self,
        name: str,
        assignment: Sequence[Sequence[int]],
        configs: dict[str, str] | None = None,
        *,
        deadline: float | None = None,
    ) -> TopicInfo:
        """Create a validated topic with partition ``i`` on ``assignment[i]``;
        visible, whole, once its logs are made (cluster mode: once every
        partition has a leader)."""
        ...

    async def add_partitions(
        self, name: str, assignments: Sequence[Sequence[int]], *, deadline: float | None = None
    ) -> TopicInfo | None:
        """Grow a topic by one partition per assignment; None if it was
        deleted meanwhile. Callers hold ``admin_lock``."""
        ...

    def auto_create_topic(self, name: str) -> TopicInfo | None:
        """Kafka's auto-creation, if allowed for this name; None otherwise.
        Cluster mode raises KafkaError: LEADER_NOT_AVAILABLE while the
        topic is being created, or why it cannot be."""
        ...

    def delete_topic(self, name: str) -> TopicInfo:
        """Single node: gone from the metadata at once, the name reserved
        until ``detach_logs`` is done. Cluster mode: the deletion starts
        (the marker is written in the background)."""
        ...

    async def detach_logs(self, info: TopicInfo, *, deadline: float | None = None) -> None:
        """Until the deleted topic's logs are closed and moved aside;
        cluster mode raises KafkaError when the deletion failed or did not
        finish by ``deadline``."""
        ...

    def set_topic_configs(self, name: str, configs: dict[str, str]) -> Awaitable[None] | None:
        """Make ``configs`` the topic's overrides, in the metadata and its
        logs: done on return (None), or, in cluster mode, started, with
        an awaitable that completes once they apply here (or raises
        KafkaError)."""
        ...
