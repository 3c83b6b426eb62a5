"""Cluster mode: topic administration on ZooKeeper (the service ``topics``,
``cluster.admin.TopicAdmin``).

Any broker accepts CreateTopics, DeleteTopics, CreatePartitions and the
config APIs, as Kafka's ZooKeeper-mode brokers do (``ZkAdminManager``,
``AdminZkClient``): it writes the change to ZooKeeper in Kafka's formats
and answers once its own cache (``zk_metadata``) shows the outcome — the
controller creates the partitions' states, deletes marked topics — or
REQUEST_TIMED_OUT at the request's deadline, the change staying written.

* Create: ``/config/topics/<t>`` then ``/brokers/topics/<t>`` (assignment
  and a new topic id), in one multi so that a topic that already exists
  keeps its configs (Kafka writes the config first, unconditionally);
  answered when every partition has a leader. A topic marked for deletion
  is refused TOPIC_ALREADY_EXISTS ("marked for deletion"), as Kafka.
* Delete: the marker ``/admin/delete_topics/<t>``; answered when the topic
  is gone from the cache (its logs removed here).
* Add partitions: a versioned rewrite of the topic znode; answered when
  the new partitions have leaders.
* Configs: ``/config/topics/<t>`` rewritten, then a sequential change
  notification ``/config/changes/config_change_N`` naming ``topics/<t>``;
  answered once this broker has read that notification and applied it.
* Auto-creation (Metadata) and the offsets topic (FindCoordinator) are
  written in the background; the client is answered LEADER_NOT_AVAILABLE
  or COORDINATOR_NOT_AVAILABLE and retries.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Awaitable, Sequence
from collections.abc import Set as AbstractSet

import trio

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import KafkaError
from pybroker.zk import BadVersionError, ConnectionLossError, NodeExistsError, NoNodeError, SessionExpiredError, ops

from ..groups import OFFSETS_TOPIC
from ..topic_configs import INTERNAL_METADATA_TOPIC
from . import znodes
from .admin import topic_name_problem
from .model import TopicInfo
from .placement import assign_replicas
from .zk_metadata import ZkMetadata

# The internal topics made on first use, and the key of their replication factor.
INTERNAL_FACTORS = {OFFSETS_TOPIC: "offsets.topic.replication.factor",
                    "__transaction_state": "transaction.state.log.replication.factor"}
log = logging.getLogger("pybroker.cluster")

# How long an AlterConfigs waits for its change to come back through the
# notifications when the request has no timeout of its own.
CONFIG_APPLY_WAIT = 30.0
# A change is written even when the request's timeout is shorter (Kafka
# writes, then answers REQUEST_TIMED_OUT at once for a timeout of 0), as
# long as ZooKeeper answers within this.
WRITE_WAIT = 30.0


class ZkTopicAdmin:
    def __init__(self, config, metadata: ZkMetadata):
        self.config = config
        self.metadata = metadata
        self.zk = metadata.zk
        self.admin_lock = trio.Lock()
        self.creating: set[str] = set()  # reserved by a CreateTopics being answered
        self.background: set[str] = set()  # being auto-created
        self._deletions: dict[uuid.UUID, _Outcome] = {}
        self.nursery: trio.Nursery | None = None  # the broker's, for background writes

    # -- names ------------------------------------------------------------------

    def reserved_names(self) -> AbstractSet[str]:
        return self.creating | self.background

    def reserve_names(self, names: Sequence[str]) -> None:
        self.creating.update(names)

    def release_names(self, names: Sequence[str]) -> None:
        self.creating.difference_update(names)

    # -- creating -----------------------------------------------------------------

    async def create_topic_async(
        self,
        name: str,
        assignment: Sequence[Sequence[int]],
        configs: dict[str, str] | None = None,
        *,
        deadline: float | None = None,
    ) -> TopicInfo:
        with _timed_out_at(_writing(deadline)):
            topic_id = await self._write_topic(name, assignment, configs or {})
        if not await self.metadata.wait_until(lambda: self._led(name, topic_id, len(assignment)), deadline):
            raise KafkaError(ErrorCode.REQUEST_TIMED_OUT, None)
        return self.metadata.topic(name)

    def _led(self, name: str, topic_id: uuid.UUID, count: int) -> bool:
        """Whether the cache has the topic with ``count`` partitions or more, every one led."""
        info = self.metadata.topic(name)
        return (
            info is not None
            and info.topic_id == topic_id
            and len(info.partitions) >= count
            and all(p.leader >= 0 for p in info.partitions)
        )

    async def _write_topic(self, name: str, assignment: Sequence[Sequence[int]], configs: dict[str, str]) -> uuid.UUID:
        if await _zk(self.zk.exists(znodes.delete_topic_path(name))) is not None:
            raise KafkaError(ErrorCode.TOPIC_ALREADY_EXISTS, f"Topic '{name}' is marked for deletion.")
        topic_id = uuid.uuid4()
        replicas = {i: list(r) for i, r in enumerate(assignment)}
        topic = ops.create(znodes.topic_path(name), znodes.encode_topic(topic_id, replicas))
        config_path, config_data = znodes.topic_config_path(name), znodes.encode_topic_config(configs)
        log.info("Creating topic %s with configuration %s and initial partition assignment %s", name, configs, replicas)
        try:
            try:
                await _zk(self.zk.multi([ops.create(config_path, config_data), topic]))
            except NodeExistsError as exc:
                if exc.op_index != 0:
                    raise
                # Configs left by an older topic of that name: overwrite them.
                await _zk(self.zk.multi([ops.set(config_path, config_data), topic]))
        except NodeExistsError:
            raise KafkaError(ErrorCode.TOPIC_ALREADY_EXISTS, f"Topic '{name}' already exists.") from None
        return topic_id

    async def add_partitions(
        self, name: str, assignments: Sequence[Sequence[int]], *, deadline: float | None = None
    ) -> TopicInfo | None:
        info = self.metadata.topic(name)
        if info is None:
            return None
        first = len(info.partitions)
        path = znodes.topic_path(name)
        with _timed_out_at(_writing(deadline)):
            while True:
                try:
                    data, stat = await _zk(self.zk.get(path))
                except NoNodeError:
                    return None
                znode = znodes.decode_topic(data)
                if len(znode.assignment) != first:
                    raise KafkaError(
                        ErrorCode.INVALID_PARTITIONS,
                        f"Topic currently has {len(znode.assignment)} partitions, not the {first} this broker "
                        "knew of: it changed meanwhile.",
                    )
                grown = dict(znode.assignment)
                grown.update({first + i: list(r) for i, r in enumerate(assignments)})
                data = znodes.encode_topic(znode.topic_id or info.topic_id, grown, znode.adding, znode.removing)
                log.info(
                    "Creating %d partitions for '%s' with the following replica assignment: %s",
                    len(assignments),
                    name,
                    grown,
                )
                try:
                    await _zk(self.zk.set(path, data, version=stat.version))
                    break
                except BadVersionError:
                    continue  # changed meanwhile: read it again
                except NoNodeError:
                    return None
        count = first + len(assignments)
        if not await self.metadata.wait_until(lambda: self._led(name, info.topic_id, count), deadline):
            raise KafkaError(ErrorCode.REQUEST_TIMED_OUT, None)
        return self.metadata.topic(name)

    def auto_create_topic(self, name: str) -> TopicInfo | None:
        """Start writing the topic and answer LEADER_NOT_AVAILABLE (raised),
        as Kafka's ZooKeeper-mode broker; None when it must not be created
        (UNKNOWN_TOPIC_OR_PARTITION), or is being created already."""
        if not self.config["auto.create.topics.enable"] or topic_name_problem(name):
            return None
        if name == INTERNAL_METADATA_TOPIC or name in self.reserved_names():
            return None
        factor = self.config["default.replication.factor"]
        self._create_in_background(name, self.config["num.partitions"], factor, {})
        raise KafkaError(ErrorCode.LEADER_NOT_AVAILABLE, None)

    def create_topic(self, name: str, partitions: int, configs: dict[str, str] | None = None) -> None:
        """The group coordinator's offsets topic, made on first use: written
        in the background with ``offsets.topic.replication.factor``
        replicas; FindCoordinator answers COORDINATOR_NOT_AVAILABLE until
        it has leaders."""
        if name in self.reserved_names():
            return
        key = INTERNAL_FACTORS.get(name)
        factor = self.config[key] if key else 1
        live = len(self.metadata.brokers())
        if live < factor:
            what = "offsets" if name == OFFSETS_TOPIC else "transactional state"
            log.error(
                "Number of alive brokers '%d' does not meet the required replication factor '%d' for the %s "
                "topic (configured via '%s'). This error can be ignored if the "
                "cluster is starting up and not all brokers are up yet.",
                live,
                factor,
                what,
                key,
            )
            return
        try:
            self._create_in_background(name, partitions, factor, dict(configs or {}))
        except KafkaError as exc:
            log.error("cannot create %s: %s", name, exc.message)

    def _create_in_background(self, name: str, partitions: int, factor: int, configs: dict[str, str]) -> None:
        brokers = self.metadata.brokers()
        if factor > len(brokers):
            raise KafkaError(
                ErrorCode.INVALID_REPLICATION_FACTOR,
                f"Replication factor: {factor} larger than available brokers: {len(brokers)}.",
            )
        racks = {b.node_id: b.rack for b in brokers}
        try:
            assignment = assign_replicas(list(racks), partitions, factor, racks=racks)
        except ValueError as exc:
            raise KafkaError(ErrorCode.INVALID_REPLICATION_FACTOR, str(exc)) from None
        if self.nursery is None:
            return  # not serving yet, or any more
        self.background.add(name)

        async def write():
            try:
                await self._write_topic(name, assignment, configs)
            except KafkaError as exc:
                if exc.code != ErrorCode.TOPIC_ALREADY_EXISTS:
                    log.warning("could not create topic %s: %s", name, exc.message)
            finally:
                self.background.discard(name)

        self._start(write)

    # -- deleting ----------------------------------------------------------------------

    def delete_topic(self, name: str) -> TopicInfo:
        info = self.metadata.topic(name)
        if info is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Topic `{name}` to delete does not exist")
        self._deletions[info.topic_id] = self._start(self._mark_for_deletion, name)
        return info

    async def _mark_for_deletion(self, name: str) -> None:
        if await _zk(self.zk.exists(znodes.topic_path(name))) is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Topic `{name}` to delete does not exist")
        try:
            await _zk(self.zk.create(znodes.delete_topic_path(name), b""))
            log.info("marked topic %s for deletion", name)
        except NodeExistsError:
            pass  # marked already: wait for it all the same, as Kafka does

    async def detach_logs(self, info: TopicInfo, *, deadline: float | None = None) -> None:
        """Until the topic is gone from this broker's cache."""
        marking = self._deletions.pop(info.topic_id, None)
        if marking is not None:
            with _timed_out_at(deadline):
                await marking

        def gone() -> bool:
            now = self.metadata.topic(info.name)
            return now is None or now.topic_id != info.topic_id

        if not await self.metadata.wait_until(gone, deadline):
            raise KafkaError(ErrorCode.REQUEST_TIMED_OUT, None)

    # -- configs --------------------------------------------------------------------------

    def set_topic_configs(self, name: str, configs: dict[str, str]) -> Awaitable[None]:
        return self._start(self._write_configs, name, dict(configs))

    async def _write_configs(self, name: str, configs: dict[str, str]) -> None:
        path, data = znodes.topic_config_path(name), znodes.encode_topic_config(configs)
        with _timed_out_at(trio.current_time() + WRITE_WAIT):
            try:
                await _zk(self.zk.set(path, data))
            except NoNodeError:
                try:
                    await _zk(self.zk.create(path, data, makepath=True))
                except NodeExistsError:
                    await _zk(self.zk.set(path, data))
            created = await _zk(
                self.zk.create(
                    znodes.config_change_path(), znodes.encode_config_change(f"topics/{name}"), sequence=True
                )
            )
        seq = int(created.rsplit("_", 1)[1])
        log.info("changed the configs of topic %s to %s", name, configs)
        deadline = trio.current_time() + CONFIG_APPLY_WAIT
        if not await self.metadata.wait_until(lambda: self.metadata.config_changes.seen >= seq, deadline):
            log.warning("config change %d of topic %s written but not seen back in time", seq, name)

    # -- background work ---------------------------------------------------------------

    def _start(self, fn, *args) -> _Outcome:
        """Run ``fn(*args)`` in the broker's nursery; its outcome, to await."""
        outcome = _Outcome()
        if self.nursery is None:
            outcome.fail(KafkaError(ErrorCode.BROKER_NOT_AVAILABLE, "the broker is not running"))
        else:
            self.nursery.start_soon(outcome.run, fn, *args)
        return outcome


class _Outcome:
    """Background work's result: ``await`` it to get its KafkaError raised.
    Unexpected errors are logged and become UNKNOWN_SERVER_ERROR."""

    def __init__(self):
        self._done = trio.Event()
        self._error: KafkaError | None = None

    async def run(self, fn, *args) -> None:
        try:
            await fn(*args)
        except KafkaError as exc:
            self._error = exc
        except Exception as exc:
            log.exception("a ZooKeeper write failed")
            self._error = KafkaError(ErrorCode.UNKNOWN_SERVER_ERROR, f"{exc!r}")
        finally:
            self._done.set()

    def fail(self, error: KafkaError) -> None:
        self._error = error
        self._done.set()

    async def _wait(self) -> None:
        await self._done.wait()
        if self._error is not None:
            raise self._error

    def __await__(self):
        return self._wait().__await__()


async def _zk(call):
    """A ZooKeeper call whose connection failed is REQUEST_TIMED_OUT: whether
    it took effect is not known, as with Kafka's timed-out admin requests."""
    try:
        return await call
    except (ConnectionLossError, SessionExpiredError) as exc:
        raise KafkaError(ErrorCode.REQUEST_TIMED_OUT, f"ZooKeeper: {exc!r}") from None


def _writing(deadline: float | None) -> float | None:
    """The deadline of a write made for a request due at ``deadline``."""
    return None if deadline is None else max(deadline, trio.current_time() + WRITE_WAIT)


@contextlib.contextmanager
def _timed_out_at(deadline: float | None):
    """KafkaError REQUEST_TIMED_OUT once ``deadline`` passes inside the block."""
    with trio.move_on_at(float("inf") if deadline is None else deadline) as scope:
        yield
    if scope.cancelled_caught:
        raise KafkaError(ErrorCode.REQUEST_TIMED_OUT, None)
