"""The controller's decisions as pure functions: no ZooKeeper, no Trio."""

from __future__ import annotations

import uuid

from pybroker.cluster.controller_state import (
    ControllerView,
    TopicView,
    broker_changes,
    election_targets,
    imbalanced_partitions,
    initial_states,
    plan_controlled_shutdown,
    plan_election,
    plan_offline,
)
from pybroker.cluster.model import PartitionState
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import KafkaError


def view(**topics: dict[int, list[int]]) -> ControllerView:
    v = ControllerView(epoch=4, epoch_version=3, session_id=1, live={1: 10, 2: 11})
    for name, assignment in topics.items():
        v.topics[name] = TopicView(name, uuid.uuid4(), assignment)
    return v


def test_broker_changes_new_dead_and_bounced():
    changes = broker_changes({1: 10, 2: 11, 3: 12}, {1: 10, 2: 20, 4: 21})
    assert (changes.new, changes.dead, changes.bounced) == ([4], [3], [2])
    assert not broker_changes({1: 10}, {1: 10})


def test_initial_states_lead_with_the_first_live_replica():
    v = view(t={0: [1, 2, 3], 1: [3, 2, 1], 2: [3]})
    states, offline = initial_states(v.topics["t"], [0, 1, 2], set(v.live), v.epoch)
    assert states == {
        0: PartitionState(1, 0, [1, 2], controller_epoch=4, version=0),
        1: PartitionState(2, 0, [2, 1], controller_epoch=4, version=0),
    }
    assert offline == [2]


def test_uninitialised_lists_partitions_without_a_state():
    v = view(t={0: [1], 1: [2]}, u={0: [1]})
    v.topics["t"].states[0] = PartitionState(1, 0, [1])
    v.topics["u"].states[0] = PartitionState(1, 0, [1])
    assert v.uninitialised() == {"t": [1]}


def test_preferred_election_moves_leadership_to_the_head_of_the_assignment():
    state = PartitionState(2, 7, [2, 1], controller_epoch=3, version=5)
    new = plan_election("t", 0, [1, 2], state, {1, 2}, 4, preferred=True)
    # Same ISR, next leader epoch, this controller's epoch, the version it was read at.
    assert new == PartitionState(1, 8, [2, 1], controller_epoch=4, version=5)


def test_preferred_election_answers():
    def code(result):
        return result.code if isinstance(result, KafkaError) else None

    led = PartitionState(1, 0, [1, 2], controller_epoch=4)
    assert code(plan_election("t", 0, [1, 2], led, {1, 2}, 4, True)) == ErrorCode.ELECTION_NOT_NEEDED
    not_in_isr = PartitionState(2, 0, [2], controller_epoch=4)
    assert code(plan_election("t", 0, [1, 2], not_in_isr, {1, 2}, 4, True)) == ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE
    other_led = PartitionState(2, 0, [1, 2], controller_epoch=4)
    assert code(plan_election("t", 0, [1, 2], other_led, {2}, 4, True)) == ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE
    result = plan_election("t", 0, [1, 2], None, {1, 2}, 4, True)
    assert code(result) == ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE
    assert result.message == "LeaderAndIsr information doesn't exist for partition t-0 in NewPartition state"


def test_a_state_written_by_a_newer_controller_is_never_overwritten():
    newer = PartitionState(2, 0, [1, 2], controller_epoch=5)
    result = plan_election("t", 3, [1, 2], newer, {1, 2}, 4, True)
    assert isinstance(result, KafkaError) and result.code == ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE
    assert "t-3" in result.message and "epoch 5" in result.message


def test_unclean_election_only_for_a_partition_without_a_live_leader():
    live_leader = PartitionState(2, 0, [2], controller_epoch=4)
    result = plan_election("t", 0, [1, 2], live_leader, {1, 2}, 4, preferred=False)
    assert isinstance(result, KafkaError) and result.code == ErrorCode.ELECTION_NOT_NEEDED
    # The leader (3) is gone: an ISR member that lives is chosen, the dead leave the ISR.
    gone = PartitionState(3, 2, [3, 2], controller_epoch=4, version=9)
    assert plan_election("t", 0, [1, 3, 2], gone, {1, 2}, 4, False) == PartitionState(2, 3, [2], 4, 9)
    # No live ISR member: any live replica, alone in the ISR.
    alone = PartitionState(3, 2, [3], controller_epoch=4)
    assert plan_election("t", 0, [3, 1], alone, {1, 2}, 4, False) == PartitionState(1, 3, [1], 4, 0)
    nobody = plan_election("t", 0, [3], alone, {1, 2}, 4, False)
    assert isinstance(nobody, KafkaError) and nobody.code == ErrorCode.ELIGIBLE_LEADERS_NOT_AVAILABLE


def test_election_targets():
    v = view(t={0: [1], 1: [2]})
    known, unknown = election_targets(v, [("t", 1), ("t", 1), ("t", 5), ("nope", 0)])
    assert known == [("t", 1)]
    assert {tp: e.code for tp, e in unknown.items()} == {
        ("t", 5): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ("nope", 0): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
    }
    assert election_targets(v, None) == ([("t", 0), ("t", 1)], {})


def offline(replicas, state, live, unclean=False):
    return plan_offline(replicas, state, set(live), 4, unclean)


def test_a_dead_leader_is_replaced_by_the_first_live_isr_member_in_assignment_order():
    # Assignment order decides, not ISR order.
    assert offline([1, 2, 3], PartitionState(1, 5, [1, 3, 2], 4, 9), {2, 3}) == PartitionState(2, 6, [3, 2], 4, 9)
    # A live replica outside the ISR is never chosen cleanly.
    assert offline([1, 2, 3], PartitionState(1, 5, [1, 3], 4, 9), {2, 3}) == PartitionState(3, 6, [3], 4, 9)


def test_a_dead_follower_leaves_the_isr_and_the_epoch_moves():
    assert offline([1, 2, 3], PartitionState(1, 5, [1, 2, 3], 4, 9), {1, 3}) == PartitionState(1, 6, [1, 3], 4, 9)
    # Nothing to do: every named broker is live, or the dead one is not in the ISR.
    assert offline([1, 2, 3], PartitionState(1, 5, [1, 2, 3], 4, 9), {1, 2, 3}) is None
    assert offline([1, 2, 3], PartitionState(1, 5, [1, 3], 4, 9), {1, 3}) is None


def test_without_a_live_isr_member_the_partition_keeps_no_leader_and_its_last_isr_member():
    gone = offline([1, 2, 3], PartitionState(2, 5, [2], 4, 9), {1, 3})
    assert gone == PartitionState(-1, 6, [2], 4, 9)
    # Offline already: nothing more to write until a replica of its ISR is back.
    assert offline([1, 2, 3], gone, {1, 3}) is None
    assert offline([1, 2, 3], gone, {1, 2, 3}) == PartitionState(2, 7, [2], 4, 9)
    # Several ISR members dying at once: the last of them stays.
    assert offline([1, 2, 3], PartitionState(1, 5, [1, 2], 4, 9), {3}) == PartitionState(-1, 6, [2], 4, 9)


def test_unclean_takes_the_first_live_replica_alone():
    state = PartitionState(2, 5, [2], 4, 9)
    assert offline([1, 2, 3], state, {1, 3}, unclean=True) == PartitionState(1, 6, [1], 4, 9)
    # A clean choice is still preferred when there is one.
    assert offline([1, 2, 3], PartitionState(2, 5, [2, 3], 4, 9), {1, 3}, unclean=True) == PartitionState(
        3, 6, [3], 4, 9
    )
    # No live replica at all: no leader, unclean or not.
    assert offline([2], state, {1, 3}, unclean=True) == PartitionState(-1, 6, [2], 4, 9)


def test_a_state_of_a_newer_controller_is_left_alone():
    assert offline([1, 2], PartitionState(1, 5, [1, 2], 7, 9), {2}) is None


def leaving(replicas, state, live, shutting_down):
    return plan_controlled_shutdown(replicas, state, set(live), set(shutting_down), 4)


def test_a_leader_shutting_down_hands_over_to_the_first_in_sync_replica_not_leaving():
    state = PartitionState(1, 5, [1, 3, 2], 4, 9)
    assert leaving([1, 2, 3], state, {1, 2, 3}, {1}) == PartitionState(2, 6, [3, 2], 4, 9)
    # Two leaving at once: neither is chosen, both leave the ISR.
    assert leaving([1, 2, 3], state, {1, 2, 3}, {1, 2}) == PartitionState(3, 6, [3], 4, 9)
    # No in-sync replica to take over: it keeps leading ("remaining").
    assert leaving([1, 2, 3], PartitionState(1, 5, [1], 4, 9), {1, 2, 3}, {1}) is None


def test_a_follower_shutting_down_leaves_the_isr_unless_it_is_its_last_member():
    assert leaving([1, 2, 3], PartitionState(1, 5, [1, 2, 3], 4, 9), {1, 2, 3}, {3}) == PartitionState(
        1, 6, [1, 2], 4, 9
    )
    # Not in the ISR, or not a replica: nothing to write.
    assert leaving([1, 2, 3], PartitionState(1, 5, [1, 2], 4, 9), {1, 2, 3}, {3}) is None
    assert leaving([1, 2], PartitionState(1, 5, [1, 2], 4, 9), {1, 2, 3}, {3}) is None


def test_a_single_replica_and_a_newer_controllers_state_are_left_alone():
    assert leaving([1], PartitionState(1, 5, [1], 4, 9), {1}, {1}) is None
    assert leaving([1, 2], PartitionState(1, 5, [1, 2], 7, 9), {1, 2}, {1}) is None


def test_imbalance_is_counted_per_preferred_broker_against_the_threshold():
    # Broker 1 is preferred for 10 partitions and leads 9: 10 % is not more
    # than 10 %. Broker 2 is preferred for 2 and leads 1: 50 %.
    v = view(a={p: [1, 2] for p in range(10)}, b={0: [2, 1], 1: [2, 1]})
    v.topics["a"].states = {p: PartitionState(1, 1, [1, 2]) for p in range(10)}
    v.topics["a"].states[3] = PartitionState(2, 2, [2, 1])
    v.topics["b"].states = {0: PartitionState(2, 1, [2, 1]), 1: PartitionState(1, 2, [1, 2])}
    assert imbalanced_partitions(v, 10) == [("b", 1)]
    assert imbalanced_partitions(v, 9) == [("a", 3), ("b", 1)]
    assert imbalanced_partitions(v, 50) == []


def test_imbalance_skips_absent_leaving_and_unreplicated_preferred_replicas():
    v = view(a={0: [3, 1], 1: [2, 1], 2: [1]}, b={0: [1, 2]})
    v.topics["a"].states = {0: PartitionState(1, 1, [1, 3]), 1: PartitionState(1, 1, [1, 2]), 2: PartitionState(2, 0, [2])}
    # Broker 3 is not registered; broker 2 is shutting down; a[2] has one replica.
    v.shutting_down.add(2)
    assert imbalanced_partitions(v, 0) == []
    v.shutting_down.clear()
    assert imbalanced_partitions(v, 0) == [("a", 1)]
    # No state yet: a new partition, left to its initial election.
    assert ("b", 0) not in imbalanced_partitions(v, 0)


def test_a_replica_in_a_failed_dir_counts_as_dead_for_its_partition_only():
    v = view(t={0: [1, 2], 1: [1, 2]})
    v.offline_replicas[("t", 0)] = {1}
    live = set(v.live)
    assert v.live_for(("t", 0), live) == {2} and v.live_for(("t", 1), live) == {1, 2}
    state = PartitionState(1, 3, [1, 2], controller_epoch=4, version=7)
    assert plan_offline([1, 2], state, v.live_for(("t", 0), live), 4, False) == PartitionState(
        2, 4, [2], controller_epoch=4, version=7
    )
    assert plan_offline([1, 2], state, v.live_for(("t", 1), live), 4, False) is None
    # Registered again (or dead): its dirs are asked afresh.
    v.forget_offline([1])
    assert v.offline_replicas == {}
