"""ElectLeaders v0-2 (api key 43).

v0 elects preferred leaders; v1 adds ElectionType (0 preferred, 1
unclean) and a top-level error code; v2 is flexible. Answered as Kafka's
broker in ZooKeeper mode does (KafkaApis.handleElectLeaders,
ReplicaManager.electLeaders, DelayedElectLeader):

- the ``controller`` service decides each partition; on a broker that is
  not the controller every partition asked is NOT_CONTROLLER and the
  top-level code is NONE (Kafka's ZooKeeper-mode broker does not forward
  the request; admin clients send it to the controller);
- a null topic list asks for every partition this broker knows, and the
  answer then leaves out those that needed no election (ELECTION_NOT_NEEDED);
- a partition whose new leader was written is answered once this broker's
  metadata shows that leader (``metadata.wait_until``, which cluster mode's
  metadata has; on a single node no election ever takes place),
  REQUEST_TIMED_OUT if it does not within the request's ``timeout_ms``;
- an election type other than 0 or 1 fails the whole request as Kafka's
  does (its ``ElectionType.valueOf`` throws): UNKNOWN_SERVER_ERROR at the top
  (v1+) and for every partition asked.
"""

from __future__ import annotations

import trio

from pybroker.acl import Operation
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import KafkaError
from pybroker.protocol.messages.elect_leaders_response import (
    ElectLeadersResponse,
    PartitionResult,
    ReplicaElectionResult,
)
from pybroker.protocol.registry import ApiKey

from ..cluster.metadata import MetadataView
from . import Later, handles

PREFERRED, UNCLEAN = 0, 1


@handles(ApiKey.ELECT_LEADERS, 0, 2)
def elect_leaders(ctx, req, *, controller, metadata: MetadataView, authorizer):
    asked = None
    if req.topic_partitions is not None:
        asked = list(dict.fromkeys((t.topic, p) for t in req.topic_partitions for p in t.partitions))
    if authorizer is not None and not authorizer.cluster(ctx, Operation.ALTER):
        failed = KafkaError(ErrorCode.CLUSTER_AUTHORIZATION_FAILED, None)
        return _response(ctx.api_version, {tp: failed for tp in asked or []}, ErrorCode.CLUSTER_AUTHORIZATION_FAILED)
    if req.election_type not in (PREFERRED, UNCLEAN):
        failed = KafkaError(ErrorCode.UNKNOWN_SERVER_ERROR, None)
        return _response(ctx.api_version, {tp: failed for tp in asked or []}, ErrorCode.UNKNOWN_SERVER_ERROR)
    preferred = req.election_type == PREFERRED
    partitions = asked if asked is not None else _all_partitions(metadata)
    leaders_before = {tp: _leader(metadata, tp) for tp in partitions}

    async def elect():
        try:
            results = await controller.elect_leaders(partitions, preferred=preferred)
        except KafkaError as exc:
            results = {tp: exc for tp in partitions}
        elected = [tp for tp, error in results.items() if error is None]
        if elected:
            await _until_visible(metadata, elected, preferred, leaders_before, req.timeout_ms, results)
        if asked is None:
            results = {tp: e for tp, e in results.items() if e is None or e.code != ErrorCode.ELECTION_NOT_NEEDED}
        return _response(ctx.api_version, results, ErrorCode.NONE)

    return Later(elect)


def _all_partitions(metadata: MetadataView) -> list[tuple[str, int]]:
    return [(t.name, p.index) for t in metadata.all_topics() for p in t.partitions]


def _leader(metadata: MetadataView, tp: tuple[str, int]) -> int | None:
    state = metadata.partition_state(*tp)
    return None if state is None else state.leader


def _shown(metadata: MetadataView, tp, preferred: bool, before: int | None) -> bool:
    """Whether this broker's metadata shows the election's outcome: the
    preferred replica leading, or (unclean) a leader other than the one
    it had before."""
    leader = _leader(metadata, tp)
    if leader is None:
        return False
    if preferred:
        topic = metadata.topic(tp[0])
        replicas = next((p.replicas for p in topic.partitions if p.index == tp[1]), None) if topic else None
        return bool(replicas) and leader == replicas[0]
    return leader != before


async def _until_visible(metadata, elected, preferred, leaders_before, timeout_ms, results) -> None:
    """Kafka's DelayedElectLeader: wait for this broker's metadata to show
    each elected leader; the ones it does not show in time time out."""

    def shown(tp) -> bool:
        return _shown(metadata, tp, preferred, leaders_before.get(tp))

    deadline = trio.current_time() + max(timeout_ms, 0) / 1000
    await metadata.wait_until(lambda: all(shown(tp) for tp in elected), deadline)
    for tp in elected:
        if not shown(tp):
            results[tp] = KafkaError(ErrorCode.REQUEST_TIMED_OUT, None)


def _response(version: int, results: dict, top_level: ErrorCode) -> ElectLeadersResponse:
    by_topic: dict[str, list[PartitionResult]] = {}
    for (topic, index), error in results.items():
        by_topic.setdefault(topic, []).append(
            PartitionResult(
                partition_id=index,
                error_code=ErrorCode.NONE if error is None else error.code,
                error_message=None if error is None else error.message,
            )
        )
    return ElectLeadersResponse(
        error_code=top_level if version >= 1 else ErrorCode.NONE,
        replica_election_results=[ReplicaElectionResult(topic=t, partition_result=ps) for t, ps in by_topic.items()],
    )
