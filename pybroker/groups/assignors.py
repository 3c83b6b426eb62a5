"""Server-side partition assignors of the consumer group protocol (KIP-848).

With KIP-848 the coordinator, not a group leader, decides which member gets
which partition. An assignor is a pure function: given the members in a
stable order (each with the existing topics it subscribes to and its
previous *target* assignment) and every subscribed topic's partition count,
it returns the new target assignment of every member. Members may then take
a while to get there; that is reconciliation, in ``consumer.py``.

Two assignors, named as in Apache Kafka (``group.consumer.assignors``;
the first is the default a member gets when it names none):

``uniform``
    Balance first, then stickiness. When every member subscribes to the
    same topics, member sizes differ by at most one; with different
    subscriptions no partition stays with a member while another member
    that could take it has two or more fewer partitions. Partitions stay
    where the previous target put them unless balance needs them moved.
    The algorithm is ours: keep what is still valid, give each partition
    nobody holds to the least loaded member that can take it (topics with
    fewest subscribers first, as they have fewest choices), then move
    partitions from the fullest to the emptiest eligible members until no
    move improves balance. Racks are not considered.

``range``
    Per topic, contiguous ranges of partitions over the topic's
    subscribers, ordered static members first (by instance id), then by
    member id; the first ``count % subscribers`` members get one extra.
    When all members subscribe to the same topics with equal partition
    counts, each member gets the same partition numbers of every topic
    (co-partitioning), and a static member keeps its range across restarts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from uuid import UUID

Assignment = dict[UUID, frozenset[int]]
TopicPartition = tuple[UUID, int]


@dataclass(frozen=True)
class MemberSpec:
    member_id: str
    instance_id: str | None
    topics: frozenset[UUID]
    previous: Mapping[UUID, frozenset[int]] = field(default_factory=dict)


Assignor = Callable[[Sequence[MemberSpec], Mapping[UUID, int]], dict[str, Assignment]]


def uniform(members: Sequence[MemberSpec], partitions: Mapping[UUID, int]) -> dict[str, Assignment]:
    order = {m.member_id: i for i, m in enumerate(members)}
    eligible = {tid: [m.member_id for m in members if tid in m.topics] for tid in partitions}
    held: dict[str, set[TopicPartition]] = {m.member_id: set() for m in members}
    taken: set[TopicPartition] = set()

    def lightest(candidates: list[str]) -> str:
        return min(candidates, key=lambda mid: (len(held[mid]), order[mid]))

    for m in members:
        for tid, parts in m.previous.items():
            if tid not in m.topics or tid not in partitions:
                continue
            for p in parts:
                if p < partitions[tid] and (tid, p) not in taken:
                    taken.add((tid, p))
                    held[m.member_id].add((tid, p))

    for tid in sorted(partitions, key=lambda t: (len(eligible[t]), t)):
        if not eligible[tid]:
            continue
        for p in range(partitions[tid]):
            if (tid, p) not in taken:
                taken.add((tid, p))
                held[lightest(eligible[tid])].add((tid, p))

    # One partition at a time, from the fullest member that can give one to
    # the emptiest that can take it: with equal subscriptions that is the
    # fewest moves. Every move lowers the sum of squared sizes, so this ends.
    while (move := _improving_move(held, eligible, order, lightest)) is not None:
        giver, tp, taker = move
        held[giver].discard(tp)
        held[taker].add(tp)
    return {mid: _grouped(tps) for mid, tps in held.items()}


def _improving_move(held, eligible, order, lightest):
    for mid in sorted(held, key=lambda x: (-len(held[x]), order[x])):
        for tp in sorted(held[mid]):
            to = lightest(eligible[tp[0]])
            if len(held[mid]) - len(held[to]) >= 2:
                return mid, tp, to
    return None


def range_assignor(members: Sequence[MemberSpec], partitions: Mapping[UUID, int]) -> dict[str, Assignment]:
    ordered = sorted(members, key=lambda m: (m.instance_id is None, m.instance_id or "", m.member_id))
    result: dict[str, Assignment] = {m.member_id: {} for m in members}
    for tid in sorted(partitions):
        subscribers = [m for m in ordered if tid in m.topics]
        if not subscribers:
            continue
        quota, extra = divmod(partitions[tid], len(subscribers))
        start = 0
        for i, m in enumerate(subscribers):
            size = quota + (1 if i < extra else 0)
            if size:
                result[m.member_id][tid] = frozenset(range(start, start + size))
            start += size
    return result


def _grouped(tps: set[TopicPartition]) -> Assignment:
    out: dict[UUID, set[int]] = {}
    for tid, p in tps:
        out.setdefault(tid, set()).add(p)
    return {tid: frozenset(ps) for tid, ps in out.items()}


ASSIGNORS: dict[str, Assignor] = {"uniform": uniform, "range": range_assignor}
