"""``pybroker acls list|add|remove``: kafka-acls.sh's options over
DescribeAcls, CreateAcls and DeleteAcls.

``add`` makes one binding per resource, principal, host and operation:
ALLOW for ``--allow-principal`` (from each ``--allow-host``, default
``*``), DENY for ``--deny-principal`` (each ``--deny-host``). ``remove``
deletes exactly those; without principals it deletes every ACL of the
resources named. ``list`` shows the ACLs of the resources named (all
without one), optionally only ``--principal``'s. Resources: ``--topic``,
``--group``, ``--transactional-id`` (repeatable) and ``--cluster``;
``--resource-pattern-type`` literal (the default of add and remove),
prefixed, or for list and remove also any (list's default) and match.
"""

from __future__ import annotations

from pybroker.acl.model import CLUSTER_NAME, Operation, PatternType, Permission, ResourceType, parse_enum
from pybroker.protocol.messages.create_acls_request import AclCreation, CreateAclsRequest
from pybroker.protocol.messages.delete_acls_request import DeleteAclsFilter, DeleteAclsRequest
from pybroker.protocol.messages.describe_acls_request import DescribeAclsRequest

from .client import AdminError, Client, check
from .tables import out, out_json

OPERATIONS = ("All", "Read", "Write", "Create", "Delete", "Alter", "Describe", "ClusterAction", "DescribeConfigs",
              "AlterConfigs", "IdempotentWrite", "CreateTokens", "DescribeTokens")
PATTERN_TYPES = ("literal", "prefixed", "any", "match")


def add_arguments(actions, read, write) -> None:
    for name, parent in (("list", read), ("add", write), ("remove", write)):
        action = actions.add_parser(name, parents=[parent], help={
            "list": "ACLs of the resources named (default: all)",
            "add": "allow or deny principals operations on resources",
            "remove": "delete those ACLs (without principals: every ACL of the resources)",
        }[name])
        action.add_argument("--topic", action="append", default=[], help="repeatable")
        action.add_argument("--group", action="append", default=[], help="repeatable")
        action.add_argument("--transactional-id", action="append", default=[], help="repeatable")
        action.add_argument("--cluster", action="store_true", help="the cluster resource")
        action.add_argument("--resource-pattern-type", choices=PATTERN_TYPES,
                            help="default: literal (list: any)")
        if name == "list":
            action.add_argument("--principal", help="only this principal's ACLs (Type:name)")
            continue
        action.add_argument("--allow-principal", action="append", default=[], metavar="Type:name")
        action.add_argument("--deny-principal", action="append", default=[], metavar="Type:name")
        action.add_argument("--allow-host", action="append", default=[], help="default: * (any host)")
        action.add_argument("--deny-host", action="append", default=[], help="default: * (any host)")
        action.add_argument("--operation", action="append", default=[], type=_operation_name,
                            help=f"repeatable; one of {', '.join(OPERATIONS)} (default All)")
        action.add_argument("--force", action="store_true", help="accepted for kafka-acls.sh scripts (no prompt)")


def _operation_name(text: str) -> Operation:
    try:
        return parse_enum(Operation, text)
    except ValueError:
        raise ValueError(f"unknown operation {text!r}") from None


def _resources(args) -> list[tuple[ResourceType, str]]:
    found = [(ResourceType.TOPIC, t) for t in args.topic]
    found += [(ResourceType.GROUP, g) for g in args.group]
    found += [(ResourceType.TRANSACTIONAL_ID, t) for t in args.transactional_id]
    if args.cluster:
        found.append((ResourceType.CLUSTER, CLUSTER_NAME))
    return found


def _pattern_type(args, default: PatternType) -> PatternType:
    return default if args.resource_pattern_type is None else parse_enum(PatternType, args.resource_pattern_type)


def _entries(args) -> list[tuple[str, str, Operation, Permission]]:
    ops = args.operation or [Operation.ALL]
    entries = []
    for principals, hosts, permission in ((args.allow_principal, args.allow_host, Permission.ALLOW),
                                          (args.deny_principal, args.deny_host, Permission.DENY)):
        entries += [(p, h, op, permission) for p in principals for h in hosts or ["*"] for op in ops]
    return entries


def _row(rtype, name, pattern_type, principal, host, op, permission) -> dict:
    return {"resource_type": ResourceType(rtype).name, "name": name, "pattern_type": PatternType(pattern_type).name,
            "principal": principal, "host": host, "operation": Operation(op).name,
            "permission": Permission(permission).name}


def list_command(client: Client, args) -> int:
    resources = _resources(args) or [(ResourceType.ANY, None)]
    pattern_type = _pattern_type(args, PatternType.ANY)
    rows = []
    for rtype, name in resources:
        answer, _ = client.any().call(DescribeAclsRequest(
            resource_type_filter=rtype, resource_name_filter=name, pattern_type_filter=pattern_type,
            principal_filter=args.principal, host_filter=None, operation=Operation.ANY, permission_type=Permission.ANY,
        ), 1)
        check(answer.error_code, answer.error_message or None)
        rows += [_row(r.resource_type, r.resource_name, r.pattern_type, a.principal, a.host, a.operation,
                      a.permission_type) for r in answer.resources for a in r.acls]
    if args.json:
        out_json(rows)
        return 0
    _print(rows)
    return 0


def _print(rows: list[dict]) -> None:
    by_resource: dict[tuple, list[dict]] = {}
    for r in rows:
        by_resource.setdefault((r["resource_type"], r["name"], r["pattern_type"]), []).append(r)
    for (rtype, name, pattern_type), entries in by_resource.items():
        out(f"Current ACLs for resource `ResourcePattern(resourceType={rtype}, name={name}, "
            f"patternType={pattern_type})`:")
        for e in entries:
            out(f"\t(principal={e['principal']}, host={e['host']}, operation={e['operation']}, "
                f"permissionType={e['permission']})")
        out("")


def add_command(client: Client, args) -> int:
    resources, entries = _resources(args), _entries(args)
    if not resources:
        raise AdminError("INVALID_REQUEST", "name a resource: --topic, --group, --transactional-id or --cluster")
    if not entries:
        raise AdminError("INVALID_REQUEST", "name a principal: --allow-principal or --deny-principal")
    pattern_type = _pattern_type(args, PatternType.LITERAL)
    if pattern_type not in (PatternType.LITERAL, PatternType.PREFIXED):
        raise AdminError("INVALID_REQUEST", "--resource-pattern-type must be literal or prefixed to add ACLs")
    creations = [
        AclCreation(resource_type=rtype, resource_name=name, resource_pattern_type=pattern_type, principal=principal,
                    host=host, operation=op, permission_type=permission)
        for rtype, name in resources for principal, host, op, permission in entries
    ]
    answer, _ = client.any().call(CreateAclsRequest(creations=creations), 1)
    for creation, result in zip(creations, answer.results):
        check(result.error_code, result.error_message or None,
              f"{creation.principal} {Operation(creation.operation).name} on {creation.resource_name}")
    out(f"Added {len(creations)} ACLs.")
    return 0


def remove_command(client: Client, args) -> int:
    resources = _resources(args)
    if not resources:
        raise AdminError("INVALID_REQUEST", "name a resource: --topic, --group, --transactional-id or --cluster")
    pattern_type = _pattern_type(args, PatternType.LITERAL)
    entries = _entries(args) or [(None, None, Operation.ANY, Permission.ANY)]
    filters = [
        DeleteAclsFilter(resource_type_filter=rtype, resource_name_filter=name, pattern_type_filter=pattern_type,
                         principal_filter=principal, host_filter=host, operation=op, permission_type=permission)
        for rtype, name in resources for principal, host, op, permission in entries
    ]
    answer, _ = client.any().call(DeleteAclsRequest(filters=filters), 1)
    removed = 0
    for result in answer.filter_results:
        check(result.error_code, result.error_message or None)
        for m in result.matching_acls:
            check(m.error_code, m.error_message or None, m.resource_name)
        removed += len(result.matching_acls)
    out(f"Removed {removed} ACLs.")
    return 0
