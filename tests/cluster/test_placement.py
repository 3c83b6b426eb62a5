"""Replica placement, checked against apache/kafka's own expectations:
core/src/test/scala/unit/kafka/admin/AdminRackAwareTest.scala and the
checks of RackAwareTest.scala (checkReplicaDistribution)."""

from collections import Counter

import pytest

from pybroker.cluster.placement import assign_replicas, rack_alternated

RACKS_A = {0: "rack1", 1: "rack3", 2: "rack3", 3: "rack2", 4: "rack2", 5: "rack1"}
RACKS_B = {0: "rack1", 1: "rack2", 2: "rack2", 3: "rack3", 4: "rack3", 5: "rack1"}


def test_rack_alternated_broker_list():
    # testGetRackAlternatedBrokerListAndAssignReplicasToBrokers
    assert rack_alternated(RACKS_A) == [0, 3, 1, 5, 4, 2]
    assert rack_alternated({b: r for b, r in RACKS_A.items() if b != 5}) == [0, 3, 1, 4, 2]


def test_rack_aware_assignment_is_kafkas():
    # Same test: 7 partitions, factor 3, fixed start 0.
    assert assign_replicas(list(RACKS_A), 7, 3, racks=RACKS_A, start=0) == [
        [0, 3, 1],
        [3, 1, 5],
        [1, 5, 4],
        [5, 4, 2],
        [4, 2, 0],
        [2, 0, 3],
        [0, 4, 2],
    ]


def test_rack_unaware_assignment_is_kafkas():
    # AdminRackAwareTest.testReplicaAssignment: 5 brokers, 10 partitions, factor 3, start 0.
    assert assign_replicas([0, 1, 2, 3, 4], 10, 3, start=0) == [
        [0, 1, 2],
        [1, 2, 3],
        [2, 3, 4],
        [3, 4, 0],
        [4, 0, 1],
        [0, 2, 3],
        [1, 3, 4],
        [2, 4, 0],
        [3, 0, 1],
        [4, 1, 2],
    ]
    # All racks None is rack-unaware.
    none = {b: None for b in range(5)}
    assert assign_replicas([0, 1, 2, 3, 4], 10, 3, racks=none, start=0) == assign_replicas(
        [0, 1, 2, 3, 4], 10, 3, start=0
    )


def check_distribution(assignment, racks, factor, *, rack_aware=True, leaders=True, replicas=True):
    """RackAwareTest.checkReplicaDistribution."""
    n = len(racks)
    for brokers in assignment:
        assert len(set(brokers)) == len(brokers) == factor
    if rack_aware:
        assert all(len({racks[b] for b in brokers}) == factor for brokers in assignment)
    if leaders:
        counts = Counter(brokers[0] for brokers in assignment)
        assert sorted(counts.values()) == [len(assignment) // n] * n
    if replicas:
        counts = Counter(b for brokers in assignment for b in brokers)
        assert sorted(counts.values()) == [len(assignment) * factor // n] * n


@pytest.mark.parametrize("start", [None, 0, 1, 2, 3, 4, 5])
def test_rack_aware_distribution(start):
    # testAssignmentWithRackAware (start 2) / ...WithRandomStartIndex
    check_distribution(assign_replicas(list(RACKS_B), 6, 3, racks=RACKS_B, start=start), RACKS_B, 3)
    # testAssignmentWith2ReplicasRackAware, ...With6Partitions
    check_distribution(assign_replicas(list(RACKS_B), 12, 2, racks=RACKS_B, start=start), RACKS_B, 2)
    check_distribution(assign_replicas(list(RACKS_B), 6, 2, racks=RACKS_B, start=start), RACKS_B, 2)


def test_rack_aware_uneven_cases():
    # testAssignmentWithRackAwareWithUnevenReplicas: 13 partitions, only rack-distinct.
    check_distribution(
        assign_replicas(list(RACKS_B), 13, 3, racks=RACKS_B, start=0), RACKS_B, 3, leaders=False, replicas=False
    )
    # testAssignmentWithRackAwareWithUnevenRacks
    uneven = {0: "rack1", 1: "rack1", 2: "rack2", 3: "rack3", 4: "rack3", 5: "rack1"}
    check_distribution(assign_replicas(list(uneven), 12, 3, racks=uneven), uneven, 3, replicas=False)
    # testAssignmentWith2ReplicasRackAwareWith6PartitionsAnd3Brokers
    three = {0: "rack1", 1: "rack2", 4: "rack3"}
    check_distribution(assign_replicas(list(three), 3, 2, racks=three), three, 2)
    # testLargeNumberPartitionsAssignment
    large = {0: "rack1", 1: "rack2", 2: "rack2", 3: "rack3", 4: "rack3", 5: "rack1",
             6: "rack1", 7: "rack2", 8: "rack2", 9: "rack3", 10: "rack1", 11: "rack3"}  # fmt: skip
    check_distribution(assign_replicas(list(large), 96, 3, racks=large), large, 3)


def test_rack_aware_expansion():
    # testRackAwareExpansion: partitions 12.. of a topic on brokers 6..11.
    racks = {6: "rack1", 7: "rack2", 8: "rack2", 9: "rack3", 10: "rack3", 11: "rack1"}
    check_distribution(assign_replicas(list(racks), 12, 2, racks=racks, first_partition=12), racks, 2)


def test_more_or_fewer_replicas_than_racks():
    racks = {0: "rack1", 1: "rack2", 2: "rack2", 3: "rack3", 4: "rack3", 5: "rack2"}
    # testMoreReplicasThanRacks: every rack holds a replica.
    more = assign_replicas(list(racks), 6, 5, racks=racks)
    assert all(len(p) == 5 and len(set(p)) == 5 and len({racks[b] for b in p}) == 3 for p in more)
    # testLessReplicasThanRacks: no rack holds two.
    fewer = assign_replicas(list(racks), 6, 2, racks=racks)
    assert all(len({racks[b] for b in p}) == 2 for p in fewer)


def test_single_rack():
    # testSingleRack: one rack, leaders still even.
    racks = dict.fromkeys(range(6), "rack1")
    result = assign_replicas(list(racks), 6, 3, racks=racks)
    assert all(len(set(p)) == 3 for p in result)
    assert sorted(Counter(p[0] for p in result).values()) == [1] * 6


def test_skip_broker_with_replica_already_assigned():
    # testSkipBrokerWithReplicaAlreadyAssigned: factor 4 on 3 racks.
    racks = {0: "a", 1: "b", 2: "c", 3: "a", 4: "a"}
    result = assign_replicas(list(racks), 6, 4, racks=racks, start=2)
    assert all(len(set(p)) == 4 and len({racks[b] for b in p}) == 3 for p in result)


def test_refusals_carry_kafkas_messages():
    # AdminUtils.assignReplicasToBrokers
    with pytest.raises(
        ValueError, match=r"^Not all brokers have rack information for replica rack aware assignment\.$"
    ):
        assign_replicas([1, 2, 3], 3, 2, racks={1: "a", 2: None, 3: "b"})
    with pytest.raises(ValueError, match=r"^Not all brokers have rack information"):
        assign_replicas([1, 2, 3], 3, 2, racks={1: "a", 2: "b"})  # a broker missing from the map
    with pytest.raises(ValueError, match=r"^Replication factor: 6 larger than available brokers: 5\.$"):
        assign_replicas([0, 1, 2, 3, 4], 10, 6)
    with pytest.raises(ValueError, match=r"^Replication factor must be larger than 0\.$"):
        assign_replicas([0, 1, 2, 3, 4], 10, 0)
