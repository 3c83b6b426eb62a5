"""DescribeCluster v0-1 (api key 60).

v0: the brokers, the controller id, the cluster id and, on request, the
cluster's authorized operations; v1 adds endpoint_type (1 brokers, 2
controllers; KIP-919). We are a broker endpoint, so as Kafka (apache/kafka
AuthHelper ``computeDescribeClusterResponse``) a request for controllers
gets MISMATCHED_ENDPOINT_TYPE and any other type UNSUPPORTED_ENDPOINT_TYPE
(both INVALID_REQUEST at v0, where the field cannot be sent). Without an
authorizer every cluster operation is allowed, as Metadata reports it.
"""

from __future__ import annotations

from pybroker.acl import CLUSTER_NAME, Operation, ResourceType
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.describe_cluster_response import DescribeClusterBroker, DescribeClusterResponse
from pybroker.protocol.registry import ApiKey

from ..cluster.metadata import MetadataView
from . import handles
from .metadata import CLUSTER_OPERATIONS, NOT_REQUESTED

BROKERS, CONTROLLERS = 1, 2


@handles(ApiKey.DESCRIBE_CLUSTER, 0, 1)
def describe_cluster(ctx, req, *, metadata: MetadataView, authorizer):
    v0 = ctx.api_version == 0
    if req.endpoint_type not in (BROKERS, CONTROLLERS):
        return DescribeClusterResponse(
            error_code=ErrorCode.INVALID_REQUEST if v0 else ErrorCode.UNSUPPORTED_ENDPOINT_TYPE,
            error_message=f"Unsupported endpoint type {req.endpoint_type}",
        )
    if req.endpoint_type != BROKERS:
        return DescribeClusterResponse(
            error_code=ErrorCode.INVALID_REQUEST if v0 else ErrorCode.MISMATCHED_ENDPOINT_TYPE,
            error_message="The request was sent to an endpoint of type BROKER, but we wanted an endpoint of type CONTROLLER",
        )
    md = metadata
    brokers = [
        DescribeClusterBroker(broker_id=b.node_id, host=address[0], port=address[1], rack=b.rack)
        for b in md.brokers()
        if (address := b.address(ctx.listener)) is not None
    ]
    controller = md.controller_id if any(b.broker_id == md.controller_id for b in brokers) else -1
    ops = CLUSTER_OPERATIONS if req.include_cluster_authorized_operations else NOT_REQUESTED
    if authorizer is not None and req.include_cluster_authorized_operations:
        ops = authorizer.operations(ctx, ResourceType.CLUSTER, CLUSTER_NAME) if authorizer.cluster(
            ctx, Operation.DESCRIBE) else 0
    return DescribeClusterResponse(
        cluster_id=md.cluster_id,
        controller_id=controller,
        brokers=brokers,
        cluster_authorized_operations=ops,
    )
