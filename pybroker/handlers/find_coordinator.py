"""FindCoordinator v0-6 (api key 10).

v0 takes a group id; v1 adds the key type (0 group, 1 transaction) and an
error message; v3 is flexible; v4 batches several keys per request (a v4+
response answers each key in ``coordinators``). The coordinator of a group
is the leader of partition abs(hash(group)) % offsets.topic.num.partitions
of __consumer_offsets, which is created on first use, as Kafka does; on a
single node that is this broker. In cluster mode it is the broker the
partition's state names as leader, and COORDINATOR_NOT_AVAILABLE while
there is none (the topic being created, or fewer live brokers than
``offsets.topic.replication.factor`` to create it on). A transactional
id (key type 1) is found the same way in __transaction_state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pybroker.acl import Operation, ResourceType
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.find_coordinator_response import Coordinator, FindCoordinatorResponse
from pybroker.protocol.registry import ApiKey

from . import handles

if TYPE_CHECKING:
    from ..groups.coordinator import GroupCoordinator
    from ..txn.coordinator import TransactionCoordinator

GROUP, TRANSACTION = 0, 1


@handles(ApiKey.FIND_COORDINATOR, 0, 6)
def find_coordinator(ctx, req, *, groups: GroupCoordinator, txns: TransactionCoordinator, authorizer):
    version = ctx.api_version
    keys = req.coordinator_keys if version >= 4 else [req.key]
    answers = [
        _refused(ctx, authorizer, key, req.key_type)
        or _find(txns if req.key_type == TRANSACTION else groups, key, req.key_type, ctx.listener)
        for key in keys
    ]
    if version >= 4:
        return FindCoordinatorResponse(
            coordinators=[
                Coordinator(key=key, node_id=node, host=host, port=port, error_code=code, error_message=msg)
                for key, (code, msg, node, host, port) in zip(keys, answers)
            ]
        )
    code, msg, node, host, port = answers[0]
    return FindCoordinatorResponse(
        error_code=code, error_message=msg if version >= 1 else None, node_id=node, host=host, port=port
    )


def _refused(ctx, authorizer, key: str, key_type: int):
    """DESCRIBE on the group or the transactional id, checked first (Kafka's getCoordinator)."""
    if authorizer is None:
        return None
    if key_type == GROUP and not authorizer.allowed(ctx, Operation.DESCRIBE, ResourceType.GROUP, key):
        return ErrorCode.GROUP_AUTHORIZATION_FAILED, None, -1, "", -1
    if key_type == TRANSACTION and not authorizer.allowed(ctx, Operation.DESCRIBE, ResourceType.TRANSACTIONAL_ID, key):
        return ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, None, -1, "", -1
    return None


def _find(coordinator, key: str, key_type: int, listener: str | None):
    if key_type not in (GROUP, TRANSACTION):
        return ErrorCode.INVALID_REQUEST, f"unknown key type {key_type}", -1, "", -1
    if not key:
        what = "group id" if key_type == GROUP else "transactional id"
        return ErrorCode.INVALID_REQUEST, f"the {what} must not be empty", -1, "", -1
    node = coordinator.coordinator_for(key)
    # The address on the client's own listener; a coordinator without one
    # cannot be reached from there.
    address = node.address(listener) if node is not None else None
    if address is None:
        return ErrorCode.COORDINATOR_NOT_AVAILABLE, None, -1, "", -1
    return ErrorCode.NONE, None, node.node_id, address[0], address[1]
