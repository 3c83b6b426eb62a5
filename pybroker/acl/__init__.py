"""ACL authorization with Apache Kafka's semantics (AclAuthorizer and
AuthorizerUtils of Kafka 3.x): pure data and rules, no I/O.

- ``model``: resource types, pattern types, operations and permissions
  under Kafka's numeric codes and names; ACL bindings and the filters of
  DescribeAcls and DeleteAcls, with their validation.
- ``table``: the ACLs by resource pattern and the decision rules (super
  users, wildcards, prefixes, DENY before ALLOW, implied operations,
  ``allow.everyone.if.no.acl.found``, authorize-by-resource-type).
- ``codec``: the JSON of Kafka's ACL znodes and change notifications, and
  of the single-node ACL file.
- ``authorizer``: what the handlers call, with a request's principal and
  host, and the audit line of every denial.

Where the ACLs are kept (a file, ZooKeeper) lives in pybroker.cluster.
"""

from .authorizer import Authorizer, AuthorizerConfigError, authorizer_settings
from .model import (
    CLUSTER_NAME,
    Binding,
    BindingFilter,
    Entry,
    Operation,
    PatternType,
    Permission,
    ResourcePattern,
    ResourceType,
)
from .table import AclTable

__all__ = [
    "CLUSTER_NAME",
    "AclTable",
    "Authorizer",
    "AuthorizerConfigError",
    "Binding",
    "BindingFilter",
    "Entry",
    "Operation",
    "PatternType",
    "Permission",
    "ResourcePattern",
    "ResourceType",
    "authorizer_settings",
]
