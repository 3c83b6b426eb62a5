"""Kafka's ACL vocabulary: the enums under their wire codes (the byte
fields of CreateAcls, DescribeAcls and DeleteAcls) and their names as
ZooKeeper stores them (``SecurityUtils``: PascalCase), the binding of a
resource pattern to an access control entry, and the filters that
DescribeAcls and DeleteAcls match bindings with (``AclBindingFilter``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

# The one name a CLUSTER resource has (Resource.CLUSTER_NAME).
CLUSTER_NAME = "kafka-cluster"
# A literal resource named so stands for every resource of its type.
WILDCARD = "*"
# An entry for this principal is any principal's; for this host, any host's.
WILDCARD_PRINCIPAL = "User:*"
WILDCARD_HOST = "*"


class ResourceType(IntEnum):
    UNKNOWN = 0
    ANY = 1
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4
    TRANSACTIONAL_ID = 5
    DELEGATION_TOKEN = 6
    USER = 7


class PatternType(IntEnum):
    UNKNOWN = 0
    ANY = 1
    MATCH = 2
    LITERAL = 3
    PREFIXED = 4


class Operation(IntEnum):
    UNKNOWN = 0
    ANY = 1
    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    CLUSTER_ACTION = 9
    DESCRIBE_CONFIGS = 10
    ALTER_CONFIGS = 11
    IDEMPOTENT_WRITE = 12
    CREATE_TOKENS = 13
    DESCRIBE_TOKENS = 14


class Permission(IntEnum):
    UNKNOWN = 0
    ANY = 1
    DENY = 2
    ALLOW = 3


def pascal(member: IntEnum) -> str:
    """SecurityUtils' name: TRANSACTIONAL_ID -> TransactionalId."""
    return "".join(part.capitalize() for part in member.name.split("_"))


def parse_enum(cls, text: str):
    """A member from its enum name or its PascalCase name, any case (Kafka
    reads both: ``fromString`` and SecurityUtils' maps)."""
    key = text.replace("_", "").replace("-", "").upper()
    for member in cls:
        if member.name.replace("_", "") == key:
            return member
    raise ValueError(f"unknown {cls.__name__} {text!r}")


def of(cls, code: int):
    """The member of a wire code; a code Kafka does not know is UNKNOWN."""
    try:
        return cls(code)
    except ValueError:
        return cls(0)


def principal_problem(principal: str) -> str | None:
    """SecurityUtils.parseKafkaPrincipal's rule: ``Type:name``, neither empty."""
    kind, sep, name = principal.partition(":")
    if not sep or not kind or not name:
        return f"expected a string in format principalType:principalName but got {principal}"
    return None


# The operations an ACL on a resource type can grant (AclEntry.supportedOperations),
# in Kafka's order: the authorized-operations bit fields are made of these.
SUPPORTED_OPERATIONS = {
    ResourceType.TOPIC: (
        Operation.READ, Operation.WRITE, Operation.CREATE, Operation.DESCRIBE, Operation.DELETE,
        Operation.ALTER, Operation.DESCRIBE_CONFIGS, Operation.ALTER_CONFIGS,
    ),
    ResourceType.GROUP: (
        Operation.READ, Operation.DESCRIBE, Operation.DELETE, Operation.DESCRIBE_CONFIGS, Operation.ALTER_CONFIGS,
    ),
    ResourceType.CLUSTER: (
        Operation.CREATE, Operation.CLUSTER_ACTION, Operation.DESCRIBE_CONFIGS, Operation.ALTER_CONFIGS,
        Operation.IDEMPOTENT_WRITE, Operation.ALTER, Operation.DESCRIBE,
    ),
    ResourceType.TRANSACTIONAL_ID: (Operation.DESCRIBE, Operation.WRITE),
    ResourceType.DELEGATION_TOKEN: (Operation.DESCRIBE,),
    ResourceType.USER: (Operation.CREATE_TOKENS, Operation.DESCRIBE_TOKENS),
}


@dataclass(frozen=True, slots=True)
class ResourcePattern:
    resource_type: ResourceType
    name: str
    pattern_type: PatternType

    def __str__(self) -> str:
        return f"ResourcePattern(resourceType={self.resource_type.name}, name={self.name}, " \
               f"patternType={self.pattern_type.name})"


@dataclass(frozen=True, slots=True)
class Entry:
    """An access control entry: who, from where, may or may not do what."""

    principal: str
    host: str
    operation: Operation
    permission: Permission


@dataclass(frozen=True, slots=True)
class Binding:
    pattern: ResourcePattern
    entry: Entry

    def problem(self) -> str | None:
        """Why CreateAcls refuses this binding (INVALID_REQUEST), or None."""
        p, e = self.pattern, self.entry
        values = (p.resource_type, p.pattern_type, e.operation, e.permission)
        if any(v == 0 for v in values):  # UNKNOWN
            return "ACL binding contains unknown elements"
        if p.resource_type == ResourceType.ANY:
            return "resourceType must not be ANY"
        if p.pattern_type in (PatternType.ANY, PatternType.MATCH):
            return f"patternType must not be {p.pattern_type.name}"
        if e.operation == Operation.ANY:
            return "operation must not be ANY"
        if e.permission == Permission.ANY:
            return "permissionType must not be ANY"
        if p.resource_type == ResourceType.CLUSTER and p.name != CLUSTER_NAME:
            return f"The only valid name for the CLUSTER resource is {CLUSTER_NAME}"
        if not p.name:
            return "Invalid empty resource name"
        return principal_problem(e.principal)


@dataclass(frozen=True, slots=True)
class BindingFilter:
    """What DescribeAcls and DeleteAcls ask for: None (a null string) and
    ANY match everything; pattern type MATCH matches the patterns that
    would apply to a resource of that name (literal, wildcard, prefixes)."""

    resource_type: ResourceType
    name: str | None
    pattern_type: PatternType
    principal: str | None
    host: str | None
    operation: Operation
    permission: Permission

    def problem(self) -> str | None:
        """Why the filter is refused (INVALID_REQUEST), or None."""
        values = (self.resource_type, self.pattern_type, self.operation, self.permission)
        if any(v == 0 for v in values):
            return "Filter contain UNKNOWN elements"
        return None

    def matches_pattern(self, p: ResourcePattern) -> bool:
        if self.resource_type != ResourceType.ANY and self.resource_type != p.resource_type:
            return False
        kind = self.pattern_type
        if kind not in (PatternType.ANY, PatternType.MATCH) and kind != p.pattern_type:
            return False
        if self.name is None:
            return True
        if kind in (PatternType.ANY, p.pattern_type):
            return self.name == p.name
        if p.pattern_type == PatternType.LITERAL:
            return self.name == p.name or p.name == WILDCARD
        return self.name.startswith(p.name)  # PREFIXED

    def matches_entry(self, e: Entry) -> bool:
        return (
            (self.principal is None or self.principal == e.principal)
            and (self.host is None or self.host == e.host)
            and (self.operation == Operation.ANY or self.operation == e.operation)
            and (self.permission == Permission.ANY or self.permission == e.permission)
        )

    def matches(self, b: Binding) -> bool:
        return self.matches_pattern(b.pattern) and self.matches_entry(b.entry)
