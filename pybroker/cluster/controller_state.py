"""The controller's view of the cluster and its decisions, as data.

Nothing here reads or writes ZooKeeper: the driver (``controller.py``)
reads znodes into a ``ControllerView``, asks these functions what to do,
and writes what they answer in fenced multi-ops. Kafka's controller keeps
the same view in its ``ControllerContext`` and decides in its partition
and replica state machines (``PartitionStateMachine.scala``,
``Election.scala``); these are the parts of them this issue needs.

Partition states, as Kafka's partition state machine names them:

- *new*: in a topic's assignment, no state znode yet. It goes online when
  one of its replicas is live: first live replica as leader, every live
  replica in the ISR, leader epoch 0 (``initial_states``). With no live
  replica it stays new, and is tried again when a broker registers.
- *online*: has a state znode and a live leader. A preferred election, or
  an unclean one an administrator asks for, changes it (``plan_election``).
- *offline*: its leader is not live (or is none, -1). When a broker dies
  the controller elects the first live ISR member in assignment order and
  drops the dead from every ISR, bumping the leader epoch
  (``plan_offline``, Kafka's onReplicasBecomeOffline). With no live ISR
  member the partition keeps no leader and its last ISR member, the one
  holding every acknowledged write, until that replica comes back, unless
  unclean election is enabled for the topic.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import KafkaError

from .election import (
    controlled_shutdown_leader,
    initial_leader_and_isr,
    isr_without,
    offline_partition_leader,
    preferred_replica_leader,
)
from .model import NO_LEADER, PartitionState

# Kafka's messages (Errors.java, KafkaController.processReplicaLeaderElection).
ELECTION_NOT_NEEDED = "Leader election not needed for topic partition."
NO_SUCH_PARTITION = "The partition does not exist."
BEING_DELETED = "The topic is being deleted"
PREFERRED_STRATEGY = "PreferredReplicaPartitionLeaderElectionStrategy"
UNCLEAN_STRATEGY = "OfflinePartitionLeaderElectionStrategy(true)"


@dataclass
class TopicView:
    """A topic as the controller last read it: its znode and its partitions' states."""

    name: str
    topic_id: uuid.UUID | None
    assignment: dict[int, list[int]]
    # Only partitions whose state znode exists; the others are new.
    states: dict[int, PartitionState] = field(default_factory=dict)


@dataclass
class ControllerView:
    """Everything the active controller knows; dropped when it resigns."""

    epoch: int
    # The version of /controller_epoch that every write of this controller checks.
    epoch_version: int
    # The ZooKeeper session the controller was elected in: its ephemeral
    # /controller lives and dies with it.
    session_id: int
    # Broker id -> broker epoch (the czxid of its registration).
    live: dict[int, int] = field(default_factory=dict)
    topics: dict[str, TopicView] = field(default_factory=dict)
    # Set when the session is known lost: no write may go out any more.
    fenced: bool = False
    # Brokers that asked for a controlled shutdown and are still registered.
    shutting_down: set[int] = field(default_factory=set)
    # Kafka's replicasOnOfflineDirs: partition -> the live brokers whose
    # replica of it is in a failed log dir, until they register again.
    offline_replicas: dict[tuple[str, int], set[int]] = field(default_factory=dict)

    def live_for(self, tp: tuple[str, int], live: set[int]) -> set[int]:
        """``live`` without the brokers whose replica of ``tp`` is offline."""
        offline = self.offline_replicas.get(tp)
        return live - offline if offline else live

    def forget_offline(self, brokers) -> None:
        """These brokers died or registered again: their dirs are read afresh."""
        for tp in list(self.offline_replicas):
            self.offline_replicas[tp] -= set(brokers)
            if not self.offline_replicas[tp]:
                del self.offline_replicas[tp]

    def uninitialised(self) -> dict[str, list[int]]:
        """Partitions without a state znode, by topic."""
        found = {}
        for name, topic in self.topics.items():
            missing = sorted(p for p in topic.assignment if p not in topic.states)
            if missing:
                found[name] = missing
        return found

    def all_partitions(self) -> list[tuple[str, int]]:
        return [(name, p) for name, topic in sorted(self.topics.items()) for p in sorted(topic.assignment)]


@dataclass(frozen=True)
class BrokerChanges:
    new: list[int]
    dead: list[int]
    # Registered again since we last looked: a higher broker epoch (czxid).
    bounced: list[int]

    def __bool__(self) -> bool:
        return bool(self.new or self.dead or self.bounced)


def broker_changes(known: dict[int, int], current: dict[int, int]) -> BrokerChanges:
    """What changed between two readings of /brokers/ids ({id: broker epoch})."""
    return BrokerChanges(
        new=sorted(set(current) - set(known)),
        dead=sorted(set(known) - set(current)),
        bounced=sorted(b for b in set(current) & set(known) if current[b] > known[b]),
    )


def initial_states(
    topic: TopicView, partitions: list[int], live: set[int], controller_epoch: int
) -> tuple[dict[int, PartitionState], list[int]]:
    """The first state of each new partition that has a live replica, and
    the partitions that have none (they stay new)."""
    states, offline = {}, []
    for p in partitions:
        chosen = initial_leader_and_isr(topic.assignment[p], live)
        if chosen is None:
            offline.append(p)
            continue
        leader, isr = chosen
        states[p] = PartitionState(leader, 0, list(isr), controller_epoch=controller_epoch, version=0)
    return states, offline


def partition_name(topic: str, index: int) -> str:
    return f"{topic}-{index}"


def election_needed(replicas: list[int], state: PartitionState, live: set[int], preferred: bool) -> bool:
    """Kafka's first sorting of the partitions an election was asked for:
    a preferred election is needed unless the preferred replica leads; an
    unclean one only when the leader is gone."""
    if preferred:
        return state.leader != replicas[0]
    return state.leader == NO_LEADER or state.leader not in live


def plan_election(
    topic: str,
    index: int,
    replicas: list[int],
    state: PartitionState | None,
    live: set[int],
    controller_epoch: int,
    preferred: bool,
) -> PartitionState | KafkaError:
    """The partition's next state under a preferred (or, with
    ``preferred=False``, an administrator's unclean) election, from the
    state just read; or the error Kafka answers for it.

    The new state keeps the read one's ``version``: the write expects it,
    so that an ISR change its leader made meanwhile is not overwritten."""
    name = partition_name(topic, index)
    unavailable = ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE if preferred else ErrorCode.ELIGIBLE_LEADERS_NOT_AVAILABLE
    if state is None:
        return KafkaError(
            unavailable, f"LeaderAndIsr information doesn't exist for partition {name} in NewPartition state"
        )
    if state.controller_epoch > controller_epoch:
        # Kafka's check: never overwrite what a newer controller wrote.
        return KafkaError(
            unavailable,
            f"Aborted leader election for partition {name} since the LeaderAndIsr path was already written by "
            "another controller. This probably means that the current controller went through a soft failure "
            f"and another controller was elected with epoch {state.controller_epoch}.",
        )
    if not election_needed(replicas, state, live, preferred):
        return KafkaError(ErrorCode.ELECTION_NOT_NEEDED, ELECTION_NOT_NEEDED)
    if preferred:
        leader = preferred_replica_leader(replicas, state.isr, live)
        isr = list(state.isr)
        strategy = PREFERRED_STRATEGY
    else:
        leader = offline_partition_leader(replicas, state.isr, live, True)
        if leader is None:
            isr = []
        elif leader in state.isr:
            isr = [r for r in state.isr if r in live]
        else:
            isr = [leader]
        strategy = UNCLEAN_STRATEGY
    if leader is None:
        return KafkaError(unavailable, f"Failed to elect leader for partition {name} under strategy {strategy}")
    return PartitionState(leader, state.leader_epoch + 1, isr, controller_epoch=controller_epoch, version=state.version)


def needs_offline_plan(state: PartitionState, live: set[int]) -> bool:
    """Whether a partition's state names brokers that are not live: a
    leader gone (or none), or a dead ISR member."""
    return state.leader not in live or any(r not in live for r in state.isr)


def plan_offline(
    replicas: list[int], state: PartitionState, live: set[int], controller_epoch: int, unclean: bool
) -> PartitionState | None:
    """A partition's next state once the brokers outside ``live`` are
    gone, or None when it needs none. A live leader keeps leading and the
    dead leave its ISR; a dead leader is replaced by the first live ISR
    member in assignment order, the ISR shrinking to the live; with none,
    the first live replica if ``unclean`` (its ISR itself alone), else no
    leader and an ISR that keeps its last member. Every change bumps the
    leader epoch, so that requests of the old epoch are fenced. A state
    written by a newer controller is left alone."""
    if state.controller_epoch > controller_epoch or not needs_offline_plan(state, live):
        return None
    dead = [r for r in state.isr if r not in live]
    if state.leader in live:
        leader, isr = state.leader, isr_without(state.isr, dead)
    else:
        leader = offline_partition_leader(replicas, state.isr, live, unclean)
        if leader is None:
            leader, isr = NO_LEADER, isr_without(state.isr, dead)
            if state.leader == NO_LEADER and isr == state.isr:
                return None  # offline already, and nothing to drop
        elif leader in state.isr:
            isr = [r for r in state.isr if r in live]
        else:
            isr = [leader]
    return PartitionState(leader, state.leader_epoch + 1, isr, controller_epoch=controller_epoch, version=state.version)


def plan_controlled_shutdown(
    replicas: list[int], state: PartitionState, live: set[int], shutting_down: set[int], controller_epoch: int
) -> PartitionState | None:
    """A partition's next state while the brokers in ``shutting_down``
    leave on purpose (Kafka's doControlledShutdown), or None when it needs
    none or none can be had. One they lead goes to the first live, in-sync
    replica not shutting down, and they leave its ISR; with no such replica
    they keep leading (the partition "remains"). One they follow in sync
    loses them from its ISR, unless they are its last member. Either
    bumps the leader epoch, as the controller's ISR changes do. A
    partition with a single replica has nowhere to go and is left alone."""
    if len(replicas) <= 1 or state.controller_epoch > controller_epoch:
        return None
    if state.leader in shutting_down:
        leader = controlled_shutdown_leader(replicas, state.isr, live, shutting_down)
        if leader is None:
            return None
        isr = [r for r in state.isr if r not in shutting_down]
    elif any(r in shutting_down for r in state.isr):
        leader, isr = state.leader, isr_without(state.isr, shutting_down)
        if isr == list(state.isr):
            return None
    else:
        return None
    return PartitionState(leader, state.leader_epoch + 1, isr, controller_epoch=controller_epoch, version=state.version)


def imbalanced_partitions(view: ControllerView, percentage: int) -> list[tuple[str, int]]:
    """Kafka's checkAndTriggerAutoLeaderRebalance: for each live broker not
    shutting down, the partitions it is the preferred (first assigned)
    replica of; when more than ``percentage`` per cent of them are led by
    another broker, those are due a preferred election. Leaders change
    only through the controller, so the view's leaders are current; whether
    the preferred replica is in sync is checked on the state read afresh
    by the election itself."""
    preferred: dict[int, list[tuple[tuple[str, int], bool]]] = {}
    for name, topic in view.topics.items():
        for p, replicas in topic.assignment.items():
            state = topic.states.get(p)
            if not replicas or state is None or len(replicas) <= 1:
                continue
            preferred.setdefault(replicas[0], []).append(((name, p), state.leader == replicas[0]))
    due = []
    for broker, partitions in sorted(preferred.items()):
        if broker not in view.live or broker in view.shutting_down:
            continue
        others = [tp for tp, led in partitions if not led]
        if others and len(others) / len(partitions) > percentage / 100:
            due.extend(sorted(others))
    return due


def election_targets(
    view: ControllerView, partitions: list[tuple[str, int]] | None
) -> tuple[list[tuple[str, int]], dict[tuple[str, int], KafkaError]]:
    """The known partitions an election was asked for (every partition for
    None, as Kafka's ElectLeaders with null topics), and the answers of the
    unknown ones."""
    if partitions is None:
        return view.all_partitions(), {}
    known, unknown = [], {}
    for tp in dict.fromkeys(partitions):
        topic = view.topics.get(tp[0])
        if topic is None or tp[1] not in topic.assignment:
            unknown[tp] = KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, NO_SUCH_PARTITION)
        else:
            known.append(tp)
    return known, unknown


class SingleNodeElections:
    """ElectLeaders' and ControlledShutdown's service on a single node: the answers a one-broker
    cluster's controller gives. Every partition has this broker as its only
    replica, its preferred leader and its leader, so no election is needed;
    an unknown partition is UNKNOWN_TOPIC_OR_PARTITION."""

    active = True

    def __init__(self, metadata):
        self._metadata = metadata

    async def elect_leaders(self, partitions, preferred: bool = True) -> dict:
        if partitions is None:
            partitions = [(t.name, p.index) for t in self._metadata.all_topics() for p in t.partitions]
        results = {}
        for topic, index in dict.fromkeys(partitions):
            info = self._metadata.topic(topic)
            if info is None or not any(p.index == index for p in info.partitions):
                results[(topic, index)] = KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, NO_SUCH_PARTITION)
            else:
                results[(topic, index)] = KafkaError(ErrorCode.ELECTION_NOT_NEEDED, ELECTION_NOT_NEEDED)
        return results

    async def controlled_shutdown(self, broker_id: int, broker_epoch: int) -> list[tuple[str, int]]:
        """A single node is its own controller; its partitions have one
        replica each, which a controlled shutdown leaves alone."""
        if broker_id != self._metadata.node_id:
            raise KafkaError(ErrorCode.BROKER_NOT_AVAILABLE, f"Broker id {broker_id} does not exist.")
        return []
