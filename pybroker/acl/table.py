"""The ACLs in force and AclAuthorizer's decision.

Theory of operation. An action is an operation by a principal from a
host on one literal resource (a topic's name, a group id …). The ACLs
that apply to it are those of the literal pattern with its name, of the
literal wildcard ``*`` of its type, and of every prefixed pattern its
name starts with. Then, in order:

1. A super user may do anything (the caller checks, before the table).
2. No ACL applies at all: allowed only with
   ``allow.everyone.if.no.acl.found`` (ACLs of other principals count:
   one ACL on a topic locks everyone else out of it).
3. A DENY entry of the principal (or ``User:*``), from the host (or
   ``*``), for the operation (or ALL) refuses.
4. An ALLOW entry likewise grants; for DESCRIBE an ALLOW of READ, WRITE,
   DELETE or ALTER does too, and for DESCRIBE_CONFIGS one of
   ALTER_CONFIGS, as Kafka implies them.
5. Nothing granted: refused.

``generation`` is bumped on every change, so that callers may keep
decisions until it moves.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from .model import (
    WILDCARD,
    WILDCARD_HOST,
    WILDCARD_PRINCIPAL,
    Binding,
    BindingFilter,
    Entry,
    Operation,
    PatternType,
    Permission,
    ResourcePattern,
    ResourceType,
)

# Operations whose ALLOW also grants the key (AclAuthorizer.aclsAllowAccess).
IMPLIED_BY = {
    Operation.DESCRIBE: (
        Operation.DESCRIBE, Operation.READ, Operation.WRITE, Operation.DELETE, Operation.ALTER, Operation.ALL,
    ),
    Operation.DESCRIBE_CONFIGS: (Operation.DESCRIBE_CONFIGS, Operation.ALTER_CONFIGS, Operation.ALL),
}


class AclTable:
    def __init__(self):
        # Every pattern with its entries; a pattern without entries is absent.
        self._acls: dict[ResourcePattern, frozenset[Entry]] = {}
        # The same, by type then name: what a decision looks up.
        self._literal: dict[ResourceType, dict[str, frozenset[Entry]]] = {}
        self._prefixed: dict[ResourceType, dict[str, frozenset[Entry]]] = {}
        self.generation = 0

    # -- contents ------------------------------------------------------------------

    def get(self, pattern: ResourcePattern) -> frozenset[Entry]:
        return self._acls.get(pattern, frozenset())

    def put(self, pattern: ResourcePattern, entries: Iterable[Entry]) -> None:
        """The entries of ``pattern`` are now exactly ``entries``."""
        entries = frozenset(entries)
        index = (self._literal if pattern.pattern_type == PatternType.LITERAL else self._prefixed).setdefault(
            pattern.resource_type, {}
        )
        if entries:
            self._acls[pattern] = entries
            index[pattern.name] = entries
        else:
            self._acls.pop(pattern, None)
            index.pop(pattern.name, None)
        self.generation += 1

    def replace_all(self, acls: dict[ResourcePattern, frozenset[Entry]]) -> None:
        for pattern in list(self._acls):
            if pattern not in acls:
                self.put(pattern, ())
        for pattern, entries in acls.items():
            self.put(pattern, entries)

    def patterns(self) -> list[ResourcePattern]:
        return list(self._acls)

    def items(self) -> dict[ResourcePattern, frozenset[Entry]]:
        return dict(self._acls)

    def bindings(self, flt: BindingFilter | None = None) -> Iterator[Binding]:
        for pattern, entries in self._acls.items():
            if flt is not None and not flt.matches_pattern(pattern):
                continue
            for entry in entries:
                if flt is None or flt.matches_entry(entry):
                    yield Binding(pattern, entry)

    def __len__(self) -> int:
        return sum(len(e) for e in self._acls.values())

    # -- decisions -------------------------------------------------------------------

    def matching(self, resource_type: ResourceType, name: str) -> list[frozenset[Entry]]:
        """The entries of every pattern that applies to the literal resource."""
        found = []
        literal = self._literal.get(resource_type)
        if literal:
            for key in (name, WILDCARD):
                entries = literal.get(key)
                if entries:
                    found.append(entries)
        prefixed = self._prefixed.get(resource_type)
        if prefixed:
            if len(prefixed) < len(name):
                found += [e for prefix, e in prefixed.items() if name.startswith(prefix)]
            else:
                found += [prefixed[name[:n]] for n in range(1, len(name) + 1) if name[:n] in prefixed]
        return found

    def decide(
        self, principal: str, host: str, op: Operation, resource_type: ResourceType, name: str, allow_if_none: bool
    ) -> bool:
        """Steps 2-5 of the module docstring (the caller handles super users)."""
        found = self.matching(resource_type, name)
        if not found:
            return allow_if_none
        principals = (principal, WILDCARD_PRINCIPAL)
        hosts = (host, WILDCARD_HOST)
        denying = (op, Operation.ALL)
        allowing = IMPLIED_BY.get(op, (op, Operation.ALL))
        granted = False
        for entries in found:
            for e in entries:
                if e.principal not in principals or e.host not in hosts:
                    continue
                if e.permission == Permission.DENY:
                    if e.operation in denying:
                        return False
                elif e.operation in allowing:
                    granted = True
        return granted

    def any_allowed(self, principal: str, host: str, op: Operation, resource_type: ResourceType) -> bool:
        """Authorizer.authorizeByResourceType after its first check (which
        the caller makes with ``decide`` on a made-up name): whether some
        resource of the type is open to the principal for ``op`` by an ALLOW
        that no DENY covers (a literal name denied exactly, or a prefix of
        the allowed name denied as a prefix). A DENY on the wildcard refuses."""
        principals = (principal, WILDCARD_PRINCIPAL)
        hosts = (host, WILDCARD_HOST)
        ops = (op, Operation.ALL)
        deny = {PatternType.LITERAL: set(), PatternType.PREFIXED: set()}
        allow = {PatternType.LITERAL: set(), PatternType.PREFIXED: set()}
        wildcard_allowed = False
        for pattern, entries in self._acls.items():
            if pattern.resource_type != resource_type:
                continue
            for e in entries:
                if e.host not in hosts or e.principal not in principals or e.operation not in ops:
                    continue
                if e.permission == Permission.DENY:
                    if pattern.pattern_type == PatternType.LITERAL and pattern.name == WILDCARD:
                        return False
                    deny[pattern.pattern_type].add(pattern.name)
                elif e.permission == Permission.ALLOW:
                    if pattern.pattern_type == PatternType.LITERAL and pattern.name == WILDCARD:
                        wildcard_allowed = True  # unless a wildcard DENY turns up later
                    else:
                        allow[pattern.pattern_type].add(pattern.name)
        if wildcard_allowed:
            return True
        for kind, names in allow.items():
            for name in names:
                if kind == PatternType.LITERAL and name in deny[PatternType.LITERAL]:
                    continue
                if not any(name[:n] in deny[PatternType.PREFIXED] for n in range(1, len(name) + 1)):
                    return True
        return False
