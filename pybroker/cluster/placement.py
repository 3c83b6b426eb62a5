"""Where a new partition's replicas go when the client does not say.

Kafka's rack-unaware placement (apache/kafka ``AdminUtils
.assignReplicasToBrokersRackUnaware``): brokers in id order, the first
replica of consecutive partitions round-robin from a random start, the
others following it at a shift that grows by one each time the partitions
have gone once round the brokers, so that leaders and followers spread
evenly. Rack awareness comes with the brokers' racks (cluster mode).
"""

from __future__ import annotations

import random


def assign_replicas(
    broker_ids: list[int], partitions: int, factor: int, *, first_partition: int = 0, start: int | None = None
) -> list[list[int]]:
    """The replicas of partitions ``first_partition`` onwards, ``partitions``
    of them; ``start`` fixes the otherwise random starting point (tests)."""
    brokers = sorted(broker_ids)
    n = len(brokers)
    if not 0 < factor <= n:
        raise ValueError(f"cannot place {factor} replica(s) on {n} broker(s)")
    first_index = random.randrange(n) if start is None else start
    shift = random.randrange(n) if start is None else start
    result = []
    for partition in range(first_partition, first_partition + partitions):
        if partition > 0 and partition % n == 0:
            shift += 1
        leader = (partition + first_index) % n
        replicas = [brokers[leader]]
        for j in range(factor - 1):
            replicas.append(brokers[(leader + 1 + (shift + j) % (n - 1)) % n])
        result.append(replicas)
    return result
