"""Leader choice, with the cases of apache/kafka
core/src/test/scala/unit/kafka/controller/PartitionLeaderElectionAlgorithmsTest.scala
(and PartitionStateMachine / ReplicaStateMachine behaviour)."""

from pybroker.cluster.election import (
    controlled_shutdown_leader,
    initial_leader_and_isr,
    isr_without,
    offline_partition_leader,
    preferred_replica_leader,
)


def test_initial_leader_and_isr():
    # initializeLeaderAndIsrForPartitions: live replicas in assignment order.
    assert initial_leader_and_isr([3, 1, 2], {1, 2, 3}) == (3, [3, 1, 2])
    assert initial_leader_and_isr([3, 1, 2], {1, 2}) == (1, [1, 2])
    assert initial_leader_and_isr([3, 1, 2], {2, 9}) == (2, [2])
    assert initial_leader_and_isr([3, 1], {2}) is None
    assert initial_leader_and_isr([], {1}) is None


def test_offline_partition_leader():
    # testOfflinePartitionLeaderElection
    assert offline_partition_leader([2, 4], [2, 4], {4}, unclean=False) == 4
    # ...LastIsrOfflineUncleanLeaderElectionDisabled
    assert offline_partition_leader([2, 4], [2], {4}, unclean=False) is None
    # ...LastIsrOfflineUncleanLeaderElectionEnabled
    assert offline_partition_leader([2, 4], [2], {4}, unclean=True) == 4
    # Assignment order decides, not ISR order.
    assert offline_partition_leader([1, 2, 3], [3, 2], {2, 3}, unclean=False) == 2
    # Unclean still needs a live replica.
    assert offline_partition_leader([1, 2], [1], set(), unclean=True) is None


def test_preferred_replica_leader():
    # testPreferredReplicaPartitionLeaderElection and its three failures.
    assert preferred_replica_leader([2, 4], [2, 4], {2, 4}) == 2
    assert preferred_replica_leader([2, 4], [2], set()) is None
    assert preferred_replica_leader([2, 4], [4], {2, 4}) is None
    assert preferred_replica_leader([2, 4], [], set()) is None
    assert preferred_replica_leader([], [1], {1}) is None


def test_controlled_shutdown_leader():
    # testControlledShutdownPartitionLeaderElection and its two failures.
    assert controlled_shutdown_leader([2, 4], [2, 4], {2, 4}, {2}) == 4
    assert controlled_shutdown_leader([2, 4], [2], {2, 4}, {2}) is None
    assert controlled_shutdown_leader([2, 4], [2, 4], {2, 4}, {2, 4}) is None


def test_isr_without_keeps_the_last_member():
    # ReplicaStateMachine.doRemoveReplicasFromIsr: an ISR of one is left as is.
    assert isr_without([1, 2, 3], {2}) == [1, 3]
    assert isr_without([1], {1}) == [1]
    assert isr_without([1, 2, 3], {1, 2, 3}) == [3]
    assert isr_without([3, 1, 2], {1, 3}) == [2]
    assert isr_without([1, 2], set()) == [1, 2]
    assert isr_without([1, 2], {7}) == [1, 2]
