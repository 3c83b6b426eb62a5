"""The work of the active controller, for as long as it holds its epoch.

An ``ActiveController`` exists from the moment this broker wins
``/controller`` until it steps back; stepping back is dropping it (Kafka's
onControllerResignation resets its context). Every write it makes is one
ZooKeeper multi whose first op checks the version of ``/controller_epoch``
(``fenced``): when that check fails another controller has been elected,
nothing was written, and ``ControllerMoved`` tells the driver to step back.
Nothing is written again blindly after any other failure either: the
state involved is read again and the decision made again.

Each handler is Kafka's of the same event (``KafkaController.scala``):
``broker_change``, ``topic_change``, ``partition_modifications``,
``topic_deletion``, and ``elect`` for ElectLeaders. The decisions are the
pure functions of ``controller_state``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import KafkaError
from pybroker.zk import BadVersionError, NodeExistsError, NoNodeError, NotEmptyError, ops

from . import znodes as zn
from .controller_reads import gather, read_brokers, read_states, read_topic, subtree
from .controller_state import (
    NO_SUCH_PARTITION,
    ControllerView,
    broker_changes,
    election_targets,
    imbalanced_partitions,
    initial_states,
    needs_offline_plan,
    partition_name,
    plan_controlled_shutdown,
    plan_election,
    plan_offline,
)
from .model import NO_LEADER, PartitionState

log = logging.getLogger("pybroker.controller")

# Kafka retries a write that lost to a concurrent change (a leader's ISR
# write, a znode created meanwhile) until it goes through, reading the
# state again before each try. Bounded here.
WRITE_ATTEMPTS = 10
# Operations per multi, so that each stays far below ZooKeeper's 1 MB
# request limit (a state znode's creation is about 150 bytes, a deletion 60).
PARTITIONS_PER_MULTI = 500
DELETIONS_PER_MULTI = 2000


class ControllerMoved(Exception):
    """The controller epoch moved on (or the session was lost): this controller must stop acting."""


@dataclass(frozen=True)
class Watches:
    """The driver's watch callbacks (they only queue an event)."""

    brokers: Callable
    topics: Callable
    deletions: Callable
    topic: Callable
    log_dirs: Callable


class ActiveController:
    def __init__(
        self,
        zk,
        node_id: int,
        view: ControllerView,
        *,
        delete_enabled: bool,
        watches: Watches,
        unclean_default: bool = False,
        log_dirs_of: Callable | None = None,
    ):
        self.zk = zk
        self.node_id = node_id
        self.view = view
        self.delete_enabled = delete_enabled
        self.watches = watches
        # unclean.leader.election.enable for topics that do not set it.
        self.unclean_default = unclean_default
        # ``await log_dirs_of(broker)``: (whether a log dir of that broker
        # failed, the partitions in its online dirs); None if it cannot be asked.
        self.log_dirs_of = log_dirs_of

    @classmethod
    async def take_over(
        cls,
        zk,
        node_id: int,
        epoch: int,
        epoch_version: int,
        *,
        delete_enabled: bool,
        watches: Watches,
        unclean_default: bool = False,
        log_dirs_of: Callable | None = None,
    ) -> ActiveController:
        """Kafka's onControllerFailover, first half: watches set, then the
        whole view read from ZooKeeper."""
        # Concurrently: a controller taking over after a failure is what
        # every election waits for, and each read is a round trip.
        paths = (zn.BROKER_IDS, zn.BROKER_TOPICS, zn.DELETE_TOPICS, zn.LOG_DIR_EVENT_NOTIFICATION)
        await gather([lambda p=p: zk.ensure_path(p) for p in paths])
        view = ControllerView(epoch, epoch_version, zk.session_id)

        async def brokers():
            view.live = await read_brokers(zk, watches.brokers)

        async def topics():
            names = await zk.get_children(zn.BROKER_TOPICS, watch=watches.topics)
            for topic in await gather([lambda n=n: read_topic(zk, n, watches.topic) for n in names]):
                if topic is not None:
                    view.topics[topic.name] = topic

        await gather([brokers, topics])
        log.info("Initialized broker epochs cache: %s", view.live)
        return cls(
            zk,
            node_id,
            view,
            delete_enabled=delete_enabled,
            watches=watches,
            unclean_default=unclean_default,
            log_dirs_of=log_dirs_of,
        )

    async def catch_up(self) -> None:
        """The second half: the work the previous controller left undone."""
        log.info("Ready to serve as the new controller with epoch %d", self.view.epoch)
        await self._ensure_topic_ids(list(self.view.topics))
        # First, as Kafka's partition state machine starts before topic
        # deletion resumes: brokers that died while no controller was
        # acting (this one's predecessor among them) still lead or sit in
        # ISRs, and their partitions wait for this.
        await self.offline_elections()
        await self.topic_deletion()
        await self._initialise(self.view.uninitialised())
        await self.log_dir_events()

    # -- fenced writes -------------------------------------------------------

    async def fenced(self, operations: list) -> list:
        """The operations in one multi that first checks the controller
        epoch's version; their results. ControllerMoved if another
        controller has been elected since (nothing is written); any other
        failure as ZooKeeper's, with nothing written either."""
        view = self.view
        if view.fenced or self.zk.session_id != view.session_id:
            raise ControllerMoved("the session this controller was elected in is gone")
        try:
            results = await self.zk.multi([ops.check(zn.CONTROLLER_EPOCH, view.epoch_version), *operations])
        except (BadVersionError, NoNodeError) as exc:
            if getattr(exc, "op_index", None) == 0:
                raise ControllerMoved(
                    f"Controller epoch zkVersion check fails. Expected zkVersion = {view.epoch_version}"
                ) from exc
            raise
        return results[1:]

    # -- topics --------------------------------------------------------------

    async def topic_change(self) -> None:
        view = self.view
        names = set(await self.zk.get_children(zn.BROKER_TOPICS, watch=self.watches.topics))
        new = sorted(names - set(view.topics))
        deleted = sorted(set(view.topics) - names)
        for name in deleted:
            del view.topics[name]
        for topic in await gather([lambda n=n: read_topic(self.zk, n, self.watches.topic) for n in new]):
            if topic is not None:
                view.topics[topic.name] = topic
        if not new and not deleted:
            return
        log.info("New topics: [%s], deleted topics: [%s]", ",".join(new), ",".join(deleted))
        await self._ensure_topic_ids(new)
        await self._initialise({n: ps for n, ps in view.uninitialised().items() if n in new})

    async def partition_modifications(self, name: str) -> None:
        view = self.view
        known = view.topics.get(name)
        if known is None:
            return  # a new topic: the topics event reads it
        fresh = await read_topic(self.zk, name, self.watches.topic, states=False)
        if fresh is None:
            return  # deleted: the topics event follows
        if known.topic_id is None:
            known.topic_id = fresh.topic_id  # given one by a broker meanwhile
        if fresh.topic_id is not None and known.topic_id is not None and fresh.topic_id != known.topic_id:
            # Deleted and created again between two looks: a new topic.
            fresh = await read_topic(self.zk, name, self.watches.topic)
            if fresh is None:
                return
            view.topics[name] = fresh
            log.info("Topic %s was created again with topic id %s", name, zn.topic_id_text(fresh.topic_id))
            await self._initialise({name: sorted(p for p in fresh.assignment if p not in fresh.states)})
            return
        added = {p: r for p, r in fresh.assignment.items() if p not in known.assignment}
        if not added:
            return
        log.info("New partitions to be added %s", {partition_name(name, p): r for p, r in sorted(added.items())})
        known.assignment.update(added)
        found = await read_states(self.zk, [(name, p) for p in added])
        known.states.update({p: s for (_, p), s in found.items() if s is not None})
        await self._initialise({name: sorted(p for p in added if p not in known.states)})

    async def _ensure_topic_ids(self, names: list[str]) -> None:
        """Kafka's controller gives a topic znode written without an id one
        (processTopicIds), so that every broker reports the same id."""
        for name in names:
            topic = self.view.topics.get(name)
            if topic is None or topic.topic_id is not None:
                continue
            try:
                data, stat = await self.zk.get(zn.topic_path(name))
            except NoNodeError:
                continue
            current = zn.decode_topic(data)
            if current.topic_id is not None:
                topic.topic_id = current.topic_id
                continue
            topic_id = uuid.uuid4()
            try:
                await self.fenced(
                    [ops.set(zn.topic_path(name), zn.encode_topic(topic_id, current.assignment), stat.version)]
                )
            except (BadVersionError, NoNodeError):
                continue  # changed meanwhile: its data watch brings it back
            topic.topic_id = topic_id
            log.info("Assigned topic id %s to topic %s", zn.topic_id_text(topic_id), name)

    async def _initialise(self, partitions: dict[str, list[int]]) -> None:
        """Kafka's NewPartition -> OnlinePartition for these partitions, one
        fenced multi per topic."""
        for name, indexes in sorted(partitions.items()):
            await self._initialise_topic(name, indexes)

    async def _initialise_topic(self, name: str, indexes: list[int]) -> None:
        view = self.view
        for _ in range(WRITE_ATTEMPTS):
            topic = view.topics.get(name)
            if topic is None:
                return
            indexes = [p for p in indexes if p not in topic.states and p in topic.assignment]
            live = sorted(view.live)
            states, offline = initial_states(topic, indexes, set(live), view.epoch)
            for p in offline:
                log.warning(
                    "Controller %d epoch %d failed to change state for partition %s from NewPartition to "
                    "OnlinePartition: assigned replicas are [%s], live brokers are [%s]. No assigned replica is alive.",
                    self.node_id,
                    view.epoch,
                    partition_name(name, p),
                    ",".join(map(str, topic.assignment[p])),
                    ",".join(map(str, live)),
                )
            if not states:
                return
            try:
                # Several multis for a large topic: one must stay well under
                # ZooKeeper's 1 MB request limit (jute.maxbuffer).
                for chunk in _chunks(sorted(states), PARTITIONS_PER_MULTI):
                    part = {p: states[p] for p in chunk}
                    await self.fenced(await self._state_creations(name, part))
                    topic.states.update(part)
                    for p, state in part.items():
                        log.info(
                            "Changed partition %s from NewPartition to OnlinePartition with state %s",
                            partition_name(name, p),
                            describe(state),
                        )
            except (NodeExistsError, NoNodeError):
                # Written meanwhile (a first try that went through before a
                # lost connection), or the topic is going: read again.
                found = await read_states(self.zk, [(name, p) for p in states if p not in topic.states])
                topic.states.update({p: s for (_, p), s in found.items() if s is not None})
                if await self.zk.exists(zn.topic_path(name)) is None:
                    return
                continue
            return
        log.error("Gave up creating the partition states of topic %s: they kept changing", name)

    async def _state_creations(self, name: str, states: dict[int, PartitionState]) -> list:
        """Kafka creates /brokers/topics/T/partitions and .../P before the
        state znodes (createTopicPartitionStatesRaw); here they go in the
        same multi, so that a fenced controller leaves not even those."""
        try:
            present = set(await self.zk.get_children(zn.partitions_path(name)))
            creations = []
        except NoNodeError:
            present = set()
            creations = [ops.create(zn.partitions_path(name), b"")]
        for p, state in sorted(states.items()):
            if str(p) not in present:
                creations.append(ops.create(zn.partition_path(name, p), b""))
            creations.append(ops.create(zn.partition_state_path(name, p), zn.encode_partition_state(state)))
        return creations

    # -- deletion ------------------------------------------------------------

    async def topic_deletion(self) -> None:
        view = self.view
        marked = set(await self.zk.get_children(zn.DELETE_TOPICS, watch=self.watches.deletions))
        if any(t not in view.topics for t in marked):
            # A topic created since the last topics event is not unknown.
            await self.topic_change()
        unknown = sorted(t for t in marked if t not in view.topics)
        if unknown:
            log.warning("Ignoring request to delete non-existing topics %s", ",".join(unknown))
            await self._remove_markers(unknown)
        wanted = sorted(t for t in marked if t in view.topics)
        if not wanted:
            return
        if not self.delete_enabled:
            log.info("Removing %s since delete topic is disabled", ",".join(wanted))
            await self._remove_markers(wanted)
            return
        log.info("Starting topic deletion for topics %s", ",".join(wanted))
        for name in wanted:
            await self._delete_topic(name)

    async def _remove_markers(self, names: list[str]) -> None:
        for name in names:
            try:
                await self.fenced([ops.delete(zn.delete_topic_path(name))])
            except NoNodeError:
                pass

    async def _delete_topic(self, name: str) -> None:
        """The topic's znodes (leaves first), its config and its marker, in
        one fenced multi; a topic too large for one loses its partitions'
        znodes in several first, and the rest goes in the last."""
        for _ in range(WRITE_ATTEMPTS):
            tree = await subtree(self.zk, zn.topic_path(name))
            last = tree[-1:]
            for path in (zn.topic_config_path(name), zn.delete_topic_path(name)):
                if await self.zk.exists(path) is not None:
                    last.append(path)
            if not last:
                break
            leaves = tree[:-1]
            if len(leaves) + len(last) <= DELETIONS_PER_MULTI:
                leaves, last = [], leaves + last
            try:
                for chunk in _chunks(leaves, DELETIONS_PER_MULTI):
                    await self.fenced([ops.delete(p) for p in chunk])
                await self.fenced([ops.delete(p) for p in last])
            except (NotEmptyError, NoNodeError):
                continue  # the tree changed between reading and deleting it
            self.view.topics.pop(name, None)
            log.info("Deletion of topic %s successfully completed", name)
            return
        log.error("Gave up deleting topic %s: its znodes kept changing", name)

    # -- brokers -------------------------------------------------------------

    async def broker_change(self) -> None:
        view = self.view
        current = await read_brokers(self.zk, self.watches.brokers)
        changes = broker_changes(view.live, current)
        if not changes:
            return
        log.info(
            "Newly added brokers: %s, deleted brokers: %s, bounced brokers: %s, all live brokers: %s",
            ",".join(map(str, changes.new)),
            ",".join(map(str, changes.dead)),
            ",".join(map(str, changes.bounced)),
            ",".join(map(str, sorted(current))),
        )
        view.live = current
        view.shutting_down -= set(changes.dead) | set(changes.bounced)
        view.forget_offline(set(changes.dead) | set(changes.bounced))
        if changes.dead or changes.bounced:
            # Kafka's onBrokerFailure: a bounced broker is taken as failed
            # first (what it held may not have survived its restart), so it
            # leaves ISRs and leaderships like a dead one, and may only come
            # back as a follower that catches up.
            await self.offline_elections(set(current) - set(changes.bounced))
        if changes.new or changes.bounced:
            # Kafka's onBrokerStartup: new partitions may have a live
            # replica now, and offline ones a live ISR member.
            await self._initialise(view.uninitialised())
            await self.offline_elections()

    async def broker_refused(self, node_id: int, epoch: int) -> None:
        """Crash detection (crash_detection.py) found this registered
        broker's listener refusing connections: its process is gone while
        its session lives on. Its registration is deleted (expecting the
        incarnation probed) and the broker handled as failed, as if the
        session had expired."""
        if self.view.live.get(node_id) != epoch:
            return
        path = zn.broker_path(node_id)
        stat = await self.zk.exists(path)
        if stat is None or stat.czxid != epoch:
            return  # gone or registered again meanwhile: the brokers watch tells
        log.warning(
            "Broker %d (epoch %d) refuses connections while registered: deleting its registration "
            "rather than waiting for its ZooKeeper session to expire",
            node_id,
            epoch,
        )
        try:
            await self.fenced([ops.delete(path, stat.version)])
        except (NoNodeError, BadVersionError):
            pass
        await self.broker_change()

    async def log_dir_events(self) -> None:
        """Kafka's processLogDirEventNotification: a broker announced a
        failed log dir. Its replicas there are offline (it is asked which
        partitions its online dirs still hold, as Kafka's controller learns
        them from its LeaderAndIsr answers): what it led there goes to
        another in-sync replica and it leaves those ISRs, as if it were
        dead for those partitions only, until it registers again. The
        notifications are deleted once handled (fenced), so a controller
        that fails meanwhile leaves them to the next."""
        names = sorted(await self.zk.get_children(zn.LOG_DIR_EVENT_NOTIFICATION, watch=self.watches.log_dirs))
        if not names:
            return
        brokers = set()
        for name in names:
            try:
                data, _ = await self.zk.get(f"{zn.LOG_DIR_EVENT_NOTIFICATION}/{name}")
                brokers.add(zn.decode_log_dir_event(data))
            except NoNodeError:
                pass
            except zn.ZnodeFormatError as exc:
                log.warning("Ignoring log dir event %s: %s", name, exc)
        log.info("Log dir events from brokers %s", ",".join(map(str, sorted(brokers))))
        for broker in sorted(b for b in brokers if b in self.view.live):
            await self._log_dirs_failed(broker)
        for name in names:
            try:
                await self.fenced([ops.delete(f"{zn.LOG_DIR_EVENT_NOTIFICATION}/{name}")])
            except NoNodeError:
                pass

    async def _log_dirs_failed(self, broker: int) -> None:
        view = self.view
        answer = await self.log_dirs_of(broker) if self.log_dirs_of is not None else None
        if answer is None:
            log.warning("Could not ask broker %d which of its replicas are offline", broker)
            return
        failed, online = answer
        if not failed:
            return
        offline = [
            (name, p)
            for name, topic in sorted(view.topics.items())
            for p, replicas in sorted(topic.assignment.items())
            if broker in replicas and p in topic.states and (name, p) not in online
        ]
        if not offline:
            return
        log.info("Replicas of broker %d in failed log dirs: %s", broker, _names(offline))
        for tp in offline:
            view.offline_replicas.setdefault(tp, set()).add(broker)
        await self.offline_elections()

    async def controlled_shutdown(self, broker_id: int, broker_epoch: int) -> list[tuple[str, int]]:
        """Kafka's doControlledShutdown: every replicated partition this
        live broker leads goes to another in-sync replica, and it leaves
        the ISRs it is in; the partitions it still leads are returned (it
        is their last in-sync replica). KafkaError BROKER_NOT_AVAILABLE for
        a broker not registered, STALE_BROKER_EPOCH for an older epoch."""
        view = self.view
        if broker_id not in view.live:
            raise KafkaError(ErrorCode.BROKER_NOT_AVAILABLE, f"Broker id {broker_id} does not exist.")
        if broker_epoch != -1 and broker_epoch < view.live[broker_id]:
            raise KafkaError(
                ErrorCode.STALE_BROKER_EPOCH,
                f"Received controlled shutdown request from an old broker epoch {broker_epoch} for broker "
                f"{broker_id}. Current broker epoch is {view.live[broker_id]}.",
            )
        view.shutting_down.add(broker_id)
        log.info("Shutting down broker %d; brokers shutting down: %s", broker_id, sorted(view.shutting_down))
        live, leaving = set(view.live), set(view.shutting_down)
        # Every partition with a replica there, read afresh: the leaders'
        # ISR writes (its rejoining) do not reach the view.
        pending = [
            (name, p)
            for name, topic in sorted(view.topics.items())
            for p, replicas in sorted(topic.assignment.items())
            if broker_id in replicas and len(replicas) > 1 and p in topic.states
        ]

        def plan(tp, replicas, state):
            if state is None:
                return None
            return plan_controlled_shutdown(replicas, state, view.live_for(tp, live), leaving, view.epoch)

        await self._replan(pending, plan)
        remaining = []
        for name, p in pending:
            topic = view.topics.get(name)
            state = topic.states.get(p) if topic is not None else None
            if state is not None and state.leader == broker_id:
                remaining.append((name, p))
        return remaining

    # -- leader elections ----------------------------------------------------

    async def elect(self, partitions: list[tuple[str, int]] | None, preferred: bool) -> dict:
        """Kafka's processReplicaLeaderElection for an administrator's request."""
        view = self.view
        # A broker shutting down is not elected (Kafka's isReplicaOnline).
        live = set(view.live) - view.shutting_down
        pending, results = election_targets(view, partitions)

        def plan(tp, replicas, state):
            return plan_election(*tp, replicas, state, view.live_for(tp, live), view.epoch, preferred)

        written, gave_up = await self._replan(pending, plan)
        for tp, outcome in written.items():
            results[tp] = outcome if isinstance(outcome, KafkaError) else None
        for tp in gave_up:
            results[tp] = KafkaError(ErrorCode.UNKNOWN_SERVER_ERROR, None)
        return results

    async def auto_rebalance(self, percentage: int) -> None:
        """Kafka's auto leader rebalance: preferred elections where a
        broker leads too few of the partitions it is the preferred replica
        of (imbalanced_partitions); one whose preferred replica is not in
        sync yet is simply tried again next time."""
        due = imbalanced_partitions(self.view, percentage)
        if not due:
            return
        log.info("Starting auto leader rebalance of %d partitions: %s", len(due), _names(due))
        results = await self.elect(due, preferred=True)
        moved = [tp for tp, error in results.items() if error is None]
        if moved:
            log.info("Auto leader rebalance moved the leadership of %s to their preferred replicas", _names(moved))

    async def offline_elections(self, live: set[int] | None = None) -> None:
        """Kafka's onReplicasBecomeOffline and its OfflinePartition
        elections: every partition whose state names a broker outside
        ``live`` (the registered brokers by default) gets a live leader if
        it can and loses its dead ISR members (plan_offline)."""
        view = self.view
        live = set(view.live) if live is None else live
        # By assignment as well as by the view's states: a leader's ISR
        # writes (a dead broker that had come back and rejoined) do not
        # reach the view, and _replan plans from the states read afresh.
        pending = [
            (name, p)
            for name, topic in sorted(view.topics.items())
            for p, state in sorted(topic.states.items())
            if needs_offline_plan(state, view.live_for((name, p), live))
            or any(r not in view.live_for((name, p), live) for r in topic.assignment.get(p, ()))
        ]
        if not pending:
            return
        unclean = await self._unclean_topics({name for name, _ in pending})

        def plan(tp, replicas, state):
            return plan_offline(replicas, state, view.live_for(tp, live), view.epoch, tp[0] in unclean)

        written, _ = await self._replan(pending, plan)
        for tp, state in written.items():
            if isinstance(state, PartitionState) and state.leader == NO_LEADER:
                log.error(
                    "Partition %s has no live in-sync replica (ISR %s, live brokers %s): it stays offline",
                    partition_name(*tp),
                    ",".join(map(str, state.isr)),
                    ",".join(map(str, sorted(live))),
                )

    async def _unclean_topics(self, names: set[str]) -> set[str]:
        """The topics among ``names`` whose unclean.leader.election.enable
        is true (their config, else the broker's default). Read for every
        affected topic: which partitions lack a live ISR member is known
        only from the states read afresh, the view's may be behind a
        leader's ISR writes."""
        configs = await gather([lambda n=n: self._topic_config(n) for n in sorted(names)])
        found = set()
        for name, config in zip(sorted(names), configs):
            value = config.get("unclean.leader.election.enable")
            if (value.strip().lower() == "true") if value is not None else self.unclean_default:
                found.add(name)
        return found

    async def _topic_config(self, name: str) -> dict[str, str]:
        try:
            data, _ = await self.zk.get(zn.topic_config_path(name))
        except NoNodeError:
            return {}
        return zn.decode_topic_config(data)

    async def _replan(self, pending: list[tuple[str, int]], plan) -> tuple[dict, list]:
        """Read each partition's state as it is now, ask ``plan(tp,
        replicas, state)`` for its next one (a PartitionState, the
        KafkaError to answer, or None when nothing is to be done), and
        write it expecting the version read; again, from a fresh read, for
        those a leader's ISR write overtook. Returns ({tp: the state
        written, or the KafkaError}, the partitions given up on)."""
        view = self.view
        results: dict = {}
        for _ in range(WRITE_ATTEMPTS):
            if not pending:
                break
            # From the states as they are now: Kafka's cache of them is kept
            # current by its brokers' notifications, this view is not.
            fresh = await read_states(self.zk, pending)
            planned = {}
            for tp in pending:
                topic = view.topics.get(tp[0])
                if topic is None or tp[1] not in topic.assignment:
                    continue
                if fresh[tp] is not None:
                    topic.states[tp[1]] = fresh[tp]
                outcome = plan(tp, topic.assignment[tp[1]], fresh[tp])
                if isinstance(outcome, KafkaError):
                    results[tp] = outcome
                elif outcome is not None:
                    planned[tp] = outcome
            written = await gather([lambda tp=tp, s=s: self._write_state(tp, s) for tp, s in planned.items()])
            pending = []
            for tp, outcome in zip(planned, written):
                if outcome is None:
                    pending.append(tp)  # a leader changed the state meanwhile: read it again
                    continue
                results[tp] = outcome
                if not isinstance(outcome, KafkaError):
                    old = view.topics[tp[0]].states[tp[1]]
                    view.topics[tp[0]].states[tp[1]] = outcome
                    log.info(
                        "Changed partition %s from %s to %s with state %s",
                        partition_name(*tp),
                        _partition_state_name(old, view.live),
                        "OfflinePartition" if outcome.leader == NO_LEADER else "OnlinePartition",
                        describe(outcome),
                    )
        for tp in pending:
            log.error("Gave up changing the state of %s: it kept changing", partition_name(*tp))
        return results, pending

    async def _write_state(self, tp: tuple[str, int], state: PartitionState):
        """Write the new state expecting the version it was planned from:
        the state as written (with its new version), None when the version
        moved, or the partition's error."""
        try:
            (stat,) = await self.fenced(
                [ops.set(zn.partition_state_path(*tp), zn.encode_partition_state(state), state.version)]
            )
        except BadVersionError:
            return None
        except NoNodeError:
            return KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, NO_SUCH_PARTITION)
        return PartitionState(state.leader, state.leader_epoch, list(state.isr), state.controller_epoch, stat.version)


def _names(partitions) -> str:
    return ",".join(f"{t}-{p}" for t, p in sorted(partitions))


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _partition_state_name(state: PartitionState, live) -> str:
    return "OnlinePartition" if state.leader in live else "OfflinePartition"


def describe(state: PartitionState) -> str:
    return (
        f"LeaderAndIsr(leader={state.leader}, leaderEpoch={state.leader_epoch}, "
        f"isr=[{','.join(map(str, state.isr))}], partitionEpoch={state.version})"
    )
