"""CreateAcls v0-3 (api key 30).

v1 resource pattern types (PREFIXED; v0 is LITERAL only); v2 flexible;
v3 no change. Needs ALTER on the cluster (else every result is
CLUSTER_AUTHORIZATION_FAILED); without an authorizer every result is
SECURITY_DISABLED, as Kafka's. A creation Kafka refuses (unknown or ANY
elements, a CLUSTER resource not named ``kafka-cluster``, an empty
name, a principal not ``Type:name``) is INVALID_REQUEST on its own
result; the others are written (pybroker/cluster/acls.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pybroker.acl import Binding, Entry, Operation, PatternType, Permission, ResourcePattern, ResourceType
from pybroker.acl.model import of
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.create_acls_response import AclCreationResult, CreateAclsResponse
from pybroker.protocol.registry import ApiKey

from . import Hold, handles

if TYPE_CHECKING:
    from pybroker.acl import Authorizer

    from ..cluster.acls import AclStore

NO_AUTHORIZER = "No Authorizer is configured on the broker"


def binding_of(c) -> Binding:
    return Binding(
        ResourcePattern(of(ResourceType, c.resource_type), c.resource_name, of(PatternType, c.resource_pattern_type)),
        Entry(c.principal, c.host, of(Operation, c.operation), of(Permission, c.permission_type)),
    )


@handles(ApiKey.CREATE_ACLS, 0, 3)
def create_acls(ctx, req, *, authorizer: Authorizer | None, acls: AclStore):
    def all_failed(code: ErrorCode, message: str) -> CreateAclsResponse:
        return CreateAclsResponse(
            results=[AclCreationResult(error_code=code, error_message=message) for _ in req.creations]
        )

    if authorizer is None:
        return all_failed(ErrorCode.SECURITY_DISABLED, NO_AUTHORIZER)
    if not authorizer.cluster(ctx, Operation.ALTER):
        return all_failed(ErrorCode.CLUSTER_AUTHORIZATION_FAILED, ErrorCode.CLUSTER_AUTHORIZATION_FAILED.message)
    results: list = [None] * len(req.creations)
    valid = []
    for i, creation in enumerate(req.creations):
        binding = binding_of(creation)
        problem = binding.problem()
        if problem is not None:
            results[i] = AclCreationResult(error_code=ErrorCode.INVALID_REQUEST, error_message=problem)
        else:
            valid.append((i, binding))

    async def write():
        failures = await acls.create([b for _, b in valid])
        for (i, _), failed in zip(valid, failures):
            code, message = failed if failed is not None else (ErrorCode.NONE, None)
            results[i] = AclCreationResult(error_code=code, error_message=message)
        return CreateAclsResponse(results=results)

    return Hold(write)
