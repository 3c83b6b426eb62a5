"""Where a new partition's replicas go when the client does not say.

Kafka's placement (apache/kafka ``AdminUtils.assignReplicasToBrokers``).
Without racks: brokers in id order, the first replica of consecutive
partitions round-robin from a random start, the others following it at a
shift that grows by one each time the partitions have gone once round the
brokers, so that leaders and followers spread evenly.

With racks (every broker has one): the same round-robin over a
rack-alternated broker list (the racks in name order, taking each rack's
next broker in id order in turn), so that consecutive brokers sit on
different racks; each follower is the next candidate at the growing shift
that is on a rack holding no replica of the partition yet, until every
rack holds one, and on a broker holding none, until every broker does.
Replicas of a partition thus land on distinct racks when there are at
least as many racks as replicas.
"""

from __future__ import annotations

import random
from collections.abc import Mapping


def assign_replicas(
    broker_ids: list[int],
    partitions: int,
    factor: int,
    *,
    racks: Mapping[int, str | None] | None = None,
    first_partition: int = 0,
    start: int | None = None,
) -> list[list[int]]:
    """The replicas of partitions ``first_partition`` onwards, ``partitions``
    of them; ``start`` fixes the otherwise random starting point and shift
    (tests). ``racks`` maps broker id to its rack (or None)."""
    n = len(broker_ids)
    if factor <= 0:
        raise ValueError("Replication factor must be larger than 0.")
    if factor > n:
        raise ValueError(f"Replication factor: {factor} larger than available brokers: {n}.")
    rack_of = {b: (racks or {}).get(b) for b in broker_ids}
    if all(r is None for r in rack_of.values()):
        return _rack_unaware(sorted(broker_ids), partitions, factor, first_partition, start)
    if any(r is None for r in rack_of.values()):
        raise ValueError("Not all brokers have rack information for replica rack aware assignment.")
    return _rack_aware(rack_of, partitions, factor, first_partition, start)  # type: ignore[arg-type]


def _replica_index(first: int, shift: int, j: int, n: int) -> int:
    return (first + 1 + (shift + j) % (n - 1)) % n


def _first_replicas(n: int, partitions: int, first_partition: int, start: int | None):
    """(index of the first replica, shift of the others) for each partition,
    as both of Kafka's placements walk them: round-robin from a random
    start, the shift growing by one each time the partitions have gone
    once round the brokers."""
    first_index = random.randrange(n) if start is None else start
    shift = random.randrange(n) if start is None else start
    for partition in range(first_partition, first_partition + partitions):
        if partition > 0 and partition % n == 0:
            shift += 1
        yield (partition + first_index) % n, shift


def _rack_unaware(
    brokers: list[int], partitions: int, factor: int, first_partition: int, start: int | None
) -> list[list[int]]:
    n = len(brokers)
    result = []
    for leader, shift in _first_replicas(n, partitions, first_partition, start):
        replicas = [brokers[leader]]
        for j in range(factor - 1):
            replicas.append(brokers[_replica_index(leader, shift, j, n)])
        result.append(replicas)
    return result


def rack_alternated(rack_of: Mapping[int, str]) -> list[int]:
    """The brokers taking turns by rack: racks in name order, each rack's
    brokers in id order (``AdminUtils.getRackAlternatedBrokerList``)."""
    by_rack: dict[str, list[int]] = {}
    for broker in sorted(rack_of):
        by_rack.setdefault(rack_of[broker], []).append(broker)
    queues = [by_rack[r] for r in sorted(by_rack)]
    result: list[int] = []
    turn = 0
    while len(result) < len(rack_of):
        queue = queues[turn % len(queues)]
        if queue:
            result.append(queue.pop(0))
        turn += 1
    return result


def _rack_aware(
    rack_of: Mapping[int, str], partitions: int, factor: int, first_partition: int, start: int | None
) -> list[list[int]]:
    brokers = rack_alternated(rack_of)
    n = len(brokers)
    n_racks = len(set(rack_of.values()))
    result = []
    for first, shift in _first_replicas(n, partitions, first_partition, start):
        replicas = [brokers[first]]
        used_racks = {rack_of[brokers[first]]}
        k = 0
        for _ in range(factor - 1):
            while True:
                broker = brokers[_replica_index(first, shift * n_racks, k, n)]
                k += 1
                rack = rack_of[broker]
                if (rack not in used_racks or len(used_racks) == n_racks) and (
                    broker not in replicas or len(replicas) == n
                ):
                    replicas.append(broker)
                    used_racks.add(rack)
                    break
        result.append(replicas)
    return result
