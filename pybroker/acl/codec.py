"""ACLs as Kafka stores them in ZooKeeper (ZkData's ZkAclStore), and
the single-node ACL file.

- ``/kafka-acl/<Type>/<name>``: a literal pattern's entries;
  ``/kafka-acl-extended/prefixed/<Type>/<name>``: a prefixed one's. Both
  hold ``{"version":1,"acls":[{"principal":"User:alice",
  "permissionType":"Allow","operation":"Read","host":"*"}]}``, ``<Type>``
  and the names PascalCase (SecurityUtils).
- Changes: a sequential ``/kafka-acl-changes/acl_changes_N`` holding
  ``TOPIC:name`` (the Java enum's name, read in any case) for a literal
  pattern; ``/kafka-acl-extended-changes/acl_changes_N`` holding
  ``{"version":1,"resourceType":"TOPIC","name":...,"patternType":"PREFIXED"}``
  for the others.
- The single-node file: ``{"version":1,"resources":[{"resourceType":"Topic",
  "patternType":"Prefixed","name":...,"acls":[...]}]}``, the entries as in
  a znode.
"""

from __future__ import annotations

import json

from .model import Entry, Operation, PatternType, Permission, ResourcePattern, ResourceType, parse_enum, pascal

LITERAL_ROOT = "/kafka-acl"
EXTENDED_ROOT = "/kafka-acl-extended"
LITERAL_CHANGES = "/kafka-acl-changes"
EXTENDED_CHANGES = "/kafka-acl-extended-changes"
CHANGE_PREFIX = "acl_changes_"
# The types a znode folder exists for (ZkAclStore.path of each ResourceType but UNKNOWN/ANY).
STORED_TYPES = tuple(t for t in ResourceType if t > ResourceType.ANY)
STORED_PATTERNS = (PatternType.LITERAL, PatternType.PREFIXED)
VERSION = 1


def root(pattern_type: PatternType) -> str:
    if pattern_type == PatternType.LITERAL:
        return LITERAL_ROOT
    return f"{EXTENDED_ROOT}/{pattern_type.name.lower()}"


def type_path(pattern_type: PatternType, resource_type: ResourceType) -> str:
    return f"{root(pattern_type)}/{pascal(resource_type)}"


def resource_path(pattern: ResourcePattern) -> str:
    return f"{type_path(pattern.pattern_type, pattern.resource_type)}/{pattern.name}"


def changes_path(pattern_type: PatternType) -> str:
    return LITERAL_CHANGES if pattern_type == PatternType.LITERAL else EXTENDED_CHANGES


def all_paths() -> list[str]:
    """The persistent znodes AclAuthorizer creates at start (createAclPaths)."""
    paths = [LITERAL_CHANGES, EXTENDED_CHANGES]
    for kind in STORED_PATTERNS:
        paths += [type_path(kind, t) for t in STORED_TYPES]
    return paths


# -- entries ---------------------------------------------------------------------------


def _entry_json(e: Entry) -> dict:
    return {"principal": e.principal, "permissionType": pascal(e.permission), "operation": pascal(e.operation),
            "host": e.host}


def _entry(obj: dict) -> Entry:
    return Entry(
        str(obj["principal"]),
        str(obj["host"]),
        parse_enum(Operation, obj["operation"]),
        parse_enum(Permission, obj["permissionType"]),
    )


def _sorted(entries) -> list[Entry]:
    return sorted(entries, key=lambda e: (e.principal, e.host, e.operation, e.permission))


def encode_acls(entries) -> bytes:
    return json.dumps({"version": VERSION, "acls": [_entry_json(e) for e in _sorted(entries)]},
                      separators=(",", ":")).encode()


def decode_acls(data: bytes) -> frozenset[Entry]:
    """A resource znode's entries; ValueError if it is not Kafka's JSON."""
    if not data:
        return frozenset()
    try:
        obj = json.loads(data)
        return frozenset(_entry(a) for a in obj.get("acls", []))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not an ACL znode: {exc}") from None


# -- change notifications -----------------------------------------------------------------


def encode_change(pattern: ResourcePattern) -> bytes:
    if pattern.pattern_type == PatternType.LITERAL:
        return f"{pattern.resource_type.name}:{pattern.name}".encode()
    return json.dumps({"version": VERSION, "resourceType": pattern.resource_type.name, "name": pattern.name,
                       "patternType": pattern.pattern_type.name}, separators=(",", ":")).encode()


def decode_change(data: bytes, literal: bool) -> ResourcePattern:
    """The pattern a notification names; ValueError if it names none."""
    text = data.decode("utf-8", "replace")
    if literal:
        kind, sep, name = text.partition(":")
        if not sep:
            raise ValueError(f"expected a string in format ResourceType:ResourceName but got {text}")
        return ResourcePattern(parse_enum(ResourceType, kind), name, PatternType.LITERAL)
    try:
        obj = json.loads(text)
        if int(obj.get("version", 1)) > VERSION:
            raise ValueError(f"Acl change event received for unsupported version: {obj['version']}")
        return ResourcePattern(
            parse_enum(ResourceType, obj["resourceType"]), str(obj["name"]), parse_enum(PatternType, obj["patternType"])
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"Failed to parse ACL change event: {exc}") from None


# -- the single-node file -------------------------------------------------------------------


def encode_file(acls: dict[ResourcePattern, frozenset[Entry]]) -> bytes:
    resources = [
        {"resourceType": pascal(p.resource_type), "patternType": pascal(p.pattern_type), "name": p.name,
         "acls": [_entry_json(e) for e in _sorted(entries)]}
        for p, entries in sorted(acls.items(), key=lambda kv: (kv[0].resource_type, kv[0].pattern_type, kv[0].name))
        if entries
    ]
    return (json.dumps({"version": VERSION, "resources": resources}, indent=1) + "\n").encode()


def decode_file(data: bytes) -> dict[ResourcePattern, frozenset[Entry]]:
    try:
        obj = json.loads(data)
        found = {}
        for r in obj["resources"]:
            pattern = ResourcePattern(
                parse_enum(ResourceType, r["resourceType"]), str(r["name"]), parse_enum(PatternType, r["patternType"])
            )
            found[pattern] = frozenset(_entry(a) for a in r["acls"])
        return found
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not an ACL file: {exc}") from None
