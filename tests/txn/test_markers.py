"""The coordinator's marker writes to other leaders: every leader is asked
at the same time, and a partition that failed is asked again alone."""

from types import SimpleNamespace

import trio

from pybroker.protocol.error_codes import ErrorCode
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
