"""DescribeAcls v0-3 (api key 29).

v1 pattern type filter (v0: LITERAL only); v2 flexible; v3 no change.
Needs DESCRIBE on the cluster; without an authorizer the answer is
SECURITY_DISABLED, as Kafka's. A filter with an unknown element is
INVALID_REQUEST. The bindings the filter matches (model.BindingFilter)
come from this broker's table, grouped by resource pattern.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pybroker.acl import BindingFilter, Operation, PatternType, Permission, ResourceType
from pybroker.acl.model import of
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.describe_acls_response import (
    AclDescription,
    DescribeAclsResource,
    DescribeAclsResponse,
)
from pybroker.protocol.registry import ApiKey

from . import handles
from .create_acls import NO_AUTHORIZER

if TYPE_CHECKING:
    from pybroker.acl import Authorizer

    from ..cluster.acls import AclStore


def filter_of(f) -> BindingFilter:
    """DescribeAcls' request, or one of DeleteAcls' filters, as a filter."""
    return BindingFilter(
        of(ResourceType, f.resource_type_filter),
        f.resource_name_filter,
        of(PatternType, f.pattern_type_filter),
        f.principal_filter,
        f.host_filter,
        of(Operation, f.operation),
        of(Permission, f.permission_type),
    )


@handles(ApiKey.DESCRIBE_ACLS, 0, 3)
def describe_acls(ctx, req, *, authorizer: Authorizer | None, acls: AclStore):
    if authorizer is None:
        return DescribeAclsResponse(error_code=ErrorCode.SECURITY_DISABLED, error_message=NO_AUTHORIZER)
    if not authorizer.cluster(ctx, Operation.DESCRIBE):
        return DescribeAclsResponse(
            error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED, error_message=f"{ctx.principal} may not describe ACLs"
        )
    flt = filter_of(req)
    problem = flt.problem()
    if problem is not None:
        return DescribeAclsResponse(error_code=ErrorCode.INVALID_REQUEST, error_message=problem)
    grouped: dict = {}
    for b in acls.table.bindings(flt):
        grouped.setdefault(b.pattern, []).append(b.entry)
    resources = [
        DescribeAclsResource(
            resource_type=p.resource_type,
            resource_name=p.name,
            pattern_type=p.pattern_type,
            acls=[
                AclDescription(principal=e.principal, host=e.host, operation=e.operation, permission_type=e.permission)
                for e in sorted(entries, key=lambda e: (e.principal, e.host, e.operation, e.permission))
            ],
        )
        for p, entries in sorted(grouped.items(), key=lambda kv: (kv[0].resource_type, kv[0].name, kv[0].pattern_type))
    ]
    return DescribeAclsResponse(resources=resources)
