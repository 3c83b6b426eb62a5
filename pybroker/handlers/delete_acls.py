"""DeleteAcls v0-3 (api key 31).

v1 pattern type filters (v0: LITERAL only); v2 flexible; v3 no change.
Needs ALTER on the cluster (else every filter's result is
CLUSTER_AUTHORIZATION_FAILED); without an authorizer every result is
SECURITY_DISABLED. A filter with an unknown element is INVALID_REQUEST
on its own result. Each filter's result lists the bindings it removed
(a binding two filters match is listed under both).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pybroker.acl import Operation
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.delete_acls_response import (
    DeleteAclsFilterResult,
    DeleteAclsMatchingAcl,
    DeleteAclsResponse,
)
from pybroker.protocol.registry import ApiKey

from . import Hold, handles
from .create_acls import NO_AUTHORIZER
from .describe_acls import filter_of

if TYPE_CHECKING:
    from pybroker.acl import Authorizer

    from ..cluster.acls import AclStore


@handles(ApiKey.DELETE_ACLS, 0, 3)
def delete_acls(ctx, req, *, authorizer: Authorizer | None, acls: AclStore):
    def all_failed(code: ErrorCode, message: str | None = None) -> DeleteAclsResponse:
        return DeleteAclsResponse(
            filter_results=[DeleteAclsFilterResult(error_code=code, error_message=message) for _ in req.filters]
        )

    if authorizer is None:
        return all_failed(ErrorCode.SECURITY_DISABLED, NO_AUTHORIZER)
    if not authorizer.cluster(ctx, Operation.ALTER):
        return all_failed(ErrorCode.CLUSTER_AUTHORIZATION_FAILED)
    results: list = [None] * len(req.filters)
    valid = []
    for i, f in enumerate(req.filters):
        flt = filter_of(f)
        problem = flt.problem()
        if problem is not None:
            results[i] = DeleteAclsFilterResult(error_code=ErrorCode.INVALID_REQUEST, error_message=problem)
        else:
            valid.append((i, flt))

    async def delete():
        removed = await acls.delete([f for _, f in valid])
        for (i, _), bindings in zip(valid, removed):
            results[i] = DeleteAclsFilterResult(matching_acls=[_matching(b, failed) for b, failed in bindings])
        return DeleteAclsResponse(filter_results=results)

    return Hold(delete)


def _matching(b, failed) -> DeleteAclsMatchingAcl:
    code, message = failed if failed is not None else (ErrorCode.NONE, None)
    p, e = b.pattern, b.entry
    return DeleteAclsMatchingAcl(
        error_code=code,
        error_message=message,
        resource_type=p.resource_type,
        resource_name=p.name,
        pattern_type=p.pattern_type,
        principal=e.principal,
        host=e.host,
        operation=e.operation,
        permission_type=e.permission,
    )
