"""The coordinator's marker writes to other leaders: every leader is asked
at the same time, a partition that failed is asked again alone, and the
markers that wait for a leader's answer go to it together in the next
request, which it appends before it waits for any."""

from types import SimpleNamespace

import trio
import trio.testing

from pybroker.handlers.write_txn_markers import write_txn_markers
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.write_txn_markers_request import (
    WritableTxnMarker,
    WritableTxnMarkerTopic,
    WriteTxnMarkersRequest,
)
from pybroker.protocol.messages.write_txn_markers_response import (
    WritableTxnMarkerPartitionResult,
    WritableTxnMarkerResult,
    WritableTxnMarkerTopicResult,
    WriteTxnMarkersResponse,
)
from pybroker.txn import markers as markers_mod
from pybroker.txn.markers import Markers


class Metadata:
    """Topic ``t``: partition i led by broker ``leaders[i]``."""

    def __init__(self, leaders):
        self.partitions = [SimpleNamespace(leader=leader) for leader in leaders]

    def topic(self, name):
        return SimpleNamespace(partitions=self.partitions) if name == "t" else None


class Links:
    """Other brokers: each answers only once every broker in ``together``
    has been asked, so asking them one after the other never ends."""

    def __init__(self, together, errors=None):
        self.together = set(together)
        self.asked: list[tuple[int, list]] = []
        self.errors = dict(errors or {})  # (topic, partition) -> error code, once
        self._all_asked = trio.Event()

    async def call(self, node, request, version):
        marker = request.markers[0]
        tps = [(t.name, p) for t in marker.topics for p in t.partition_indexes]
        self.asked.append((node, tps))
        if self.together <= {n for n, _ in self.asked}:
            self._all_asked.set()
        await self._all_asked.wait()
        results = [
            WritableTxnMarkerTopicResult(
                name=name,
                partitions=[WritableTxnMarkerPartitionResult(partition_index=p, error_code=self.errors.pop((name, p), 0))],
            )
            for name, p in tps
        ]
        return WriteTxnMarkersResponse(markers=[WritableTxnMarkerResult(producer_id=marker.producer_id, topics=results)])


def write(markers, partitions):
    async def main():
        with trio.fail_after(5):
            return await markers.write(partitions, 7, 0, True, 3, still_ours=lambda: True)

    return trio.run(main)


def test_every_leader_is_asked_at_once():
    links = Links(together={2, 3, 4})
    markers = Markers(SimpleNamespace(node_id=1), Metadata([2, 3, 4, 2]), None, links)
    assert write(markers, [("t", 0), ("t", 1), ("t", 2), ("t", 3)]) is False
    assert sorted(links.asked) == [(2, [("t", 0), ("t", 3)]), (3, [("t", 1)]), (4, [("t", 2)])]


def test_a_failed_partition_is_asked_again_alone(monkeypatch):
    monkeypatch.setattr(markers_mod, "RETRY_BACKOFF_S", 0.0)
    links = Links(together={2, 3}, errors={("t", 1): ErrorCode.NOT_LEADER_OR_FOLLOWER})
    markers = Markers(SimpleNamespace(node_id=1), Metadata([2, 3]), None, links)
    assert write(markers, [("t", 0), ("t", 1)]) is False
    assert links.asked[2:] == [(3, [("t", 1)])]


def test_a_fenced_coordinator_stops():
    links = Links(together={2, 3}, errors={("t", 0): ErrorCode.TRANSACTION_COORDINATOR_FENCED})
    markers = Markers(SimpleNamespace(node_id=1), Metadata([2, 3]), None, links)
    assert write(markers, [("t", 0), ("t", 1)]) is True


class GatedLinks:
    """One other broker that holds its first answer until ``release`` is
    set, and answers every marker of a request without error."""

    def __init__(self):
        self.requests: list[list[tuple[int, list]]] = []
        self.first_sent = trio.Event()
        self.release = trio.Event()

    async def call(self, node, request, version):
        self.requests.append(
            [(m.producer_id, [(t.name, p) for t in m.topics for p in t.partition_indexes]) for m in request.markers]
        )
        self.first_sent.set()
        await self.release.wait()
        return WriteTxnMarkersResponse(
            markers=[
                WritableTxnMarkerResult(
                    producer_id=m.producer_id,
                    topics=[
                        WritableTxnMarkerTopicResult(
                            name=t.name,
                            partitions=[WritableTxnMarkerPartitionResult(partition_index=p) for p in t.partition_indexes],
                        )
                        for t in m.topics
                    ],
                )
                for m in request.markers
            ]
        )


def test_markers_waiting_for_a_leader_go_together_in_its_next_request():
    links = GatedLinks()
    markers = Markers(SimpleNamespace(node_id=1), Metadata([2, 2]), None, links)
    fenced = {}

    async def end(producer_id, partitions):
        fenced[producer_id, tuple(partitions)] = await markers.write(
            partitions, producer_id, 0, True, 3, still_ours=lambda: True
        )

    async def main():
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(end, 7, [("t", 0)])
                await links.first_sent.wait()
                # While producer 7's markers are out: 8 and 9 end, and 8 once
                # more (one marker per producer in a request: the answer
                # names each by its producer id).
                nursery.start_soon(end, 8, [("t", 0)])
                nursery.start_soon(end, 9, [("t", 0), ("t", 1)])
                nursery.start_soon(end, 8, [("t", 1)])
                await trio.testing.wait_all_tasks_blocked()
                links.release.set()

    trio.run(main)
    first, together, last = links.requests  # Trio starts the three in any order
    assert first == [(7, [("t", 0)])]
    assert sorted(pid for pid, _ in together) == [8, 9]
    assert [pid for pid, _ in last] == [8]
    assert dict(together)[9] == [("t", 0), ("t", 1)]
    assert sorted(dict(together)[8] + last[0][1]) == [("t", 0), ("t", 1)]
    assert set(fenced.values()) == {False} and len(fenced) == 4


class CountingReplicas:
    """A leader whose appends all succeed; counts the waits for them."""

    node_id = 2

    def __init__(self):
        self.appended: list[tuple] = []
        self.waits: list[int] = []

    def append(self, topic, index, batch, *, now, acks, origin):
        self.appended.append((topic, index))
        return object()

    async def until_committed(self, appended, timeout_ms=None):
        self.waits.append(len(appended))
        return {}


def test_a_leader_appends_every_marker_of_a_request_before_it_waits():
    replicas = CountingReplicas()
    txns = SimpleNamespace(markers=Markers(replicas, Metadata([2, 2]), None, None))
    request = WriteTxnMarkersRequest(
        markers=[
            WritableTxnMarker(
                producer_id=pid,
                producer_epoch=0,
                transaction_result=True,
                coordinator_epoch=3,
                topics=[WritableTxnMarkerTopic(name="t", partition_indexes=[0, 1])],
            )
            for pid in (7, 8)
        ]
    )
    later = write_txn_markers(None, request, txns=txns, authorizer=None)
    response = trio.run(later.run)
    assert replicas.waits == [4]  # one replication round for both transactions
    assert [(m.producer_id, [p.error_code for t in m.topics for p in t.partitions]) for m in response.markers] == [
        (7, [0, 0]),
        (8, [0, 0]),
    ]
