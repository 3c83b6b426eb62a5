"""What handlers ask: may this request's principal, from its host, do
this operation on this resource? With Kafka's configuration:
``authorizer.class.name`` (AclAuthorizer, or KRaft's StandardAuthorizer,
both served by the same rules; empty: no authorizer, and handlers are
given None), ``super.users`` (``User:a;User:b``) and
``allow.everyone.if.no.acl.found``.

Every denial the caller wants logged is one INFO line on the
``pybroker.authorizer`` logger (Kafka's audit logger, kafka.authorizer.logger);
an allowed action is a DEBUG line.

Decisions are remembered until the ACLs change (the table's generation),
so a producer's every Produce costs one dictionary look-up per topic.
"""

from __future__ import annotations

import logging

from .model import CLUSTER_NAME, SUPPORTED_OPERATIONS, Operation, ResourceType, principal_problem
from .table import AclTable

log = logging.getLogger("pybroker.authorizer")

# The class names that switch authorization on (ZooKeeper mode's and KRaft's).
AUTHORIZER_CLASSES = (
    "kafka.security.authorizer.AclAuthorizer",
    "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
)
# The bit field of authorized operations when the client did not ask.
NOT_REQUESTED = -2147483648
# Remembered decisions, at most (then forgotten all at once).
DECISIONS_KEPT = 65536
# A name for authorize-by-resource-type's first check: no ACL names it.
_HARDCODE = "hardcode"


class AuthorizerConfigError(ValueError):
    pass


def super_users_problem(text: str | None) -> str | None:
    for item in (text or "").split(";"):
        if item.strip() and principal_problem(item.strip()):
            return principal_problem(item.strip())
    return None


def authorizer_settings(config) -> tuple[frozenset[str], bool] | None:
    """(super users, allow everyone if no ACL found) when the config turns
    authorization on, else None."""
    name = (config["authorizer.class.name"] or "").strip()
    if not name:
        return None
    if name not in AUTHORIZER_CLASSES:
        raise AuthorizerConfigError(f"authorizer.class.name: class {name} could not be found")
    supers = frozenset(s.strip() for s in (config["super.users"] or "").split(";") if s.strip())
    return supers, bool(config["allow.everyone.if.no.acl.found"])


def client_host(peer: str) -> str:
    """The client's address of a ``host:port`` peer, as Kafka matches ACL hosts."""
    host = peer.rsplit(":", 1)[0] if ":" in peer else peer
    return host.strip("[]")


class Authorizer:
    def __init__(self, table: AclTable, super_users=frozenset(), allow_if_none: bool = False):
        self.table = table
        self.super_users = frozenset(super_users)
        self.allow_if_none = allow_if_none
        self._decisions: dict = {}
        self._generation = -1

    # -- the rules ------------------------------------------------------------------------

    def decide(self, principal: str, host: str, op: Operation, rtype: ResourceType, name: str) -> bool:
        table = self.table
        if table.generation != self._generation or len(self._decisions) > DECISIONS_KEPT:
            self._decisions = {}
            self._generation = table.generation
        key = (principal, host, op, rtype, name)
        found = self._decisions.get(key)
        if found is None:
            found = self._decisions[key] = principal in self.super_users or table.decide(
                principal, host, op, rtype, name, self.allow_if_none
            )
        return found

    # -- with a request's context ----------------------------------------------------------

    def allowed(self, ctx, op: Operation, rtype: ResourceType, name: str, audit: bool = True) -> bool:
        host = client_host(ctx.peer)
        ok = self.decide(ctx.principal, host, op, rtype, name)
        if not ok and audit:
            self._denied(ctx, host, op, rtype, name)
        return ok

    def cluster(self, ctx, op: Operation, audit: bool = True) -> bool:
        return self.allowed(ctx, op, ResourceType.CLUSTER, CLUSTER_NAME, audit)

    def allowed_names(self, ctx, op: Operation, rtype: ResourceType, names, audit: bool = True) -> set[str]:
        """The names of ``names`` the request may ``op`` (each decided once)."""
        return {n for n in set(names) if n is not None and self.allowed(ctx, op, rtype, n, audit)}

    def any_of_type(self, ctx, op: Operation, rtype: ResourceType) -> bool:
        """Authorizer.authorizeByResourceType: may the principal ``op`` some
        resource of the type (InitProducerId without a transactional id:
        WRITE on any topic)."""
        host = client_host(ctx.peer)
        if self.decide(ctx.principal, host, op, rtype, _HARDCODE):
            return True
        ok = self.table.any_allowed(ctx.principal, host, op, rtype)
        if not ok:
            self._denied(ctx, host, op, rtype, "*", by_type=True)
        return ok

    def operations(self, ctx, rtype: ResourceType, name: str) -> int:
        """The authorized-operations bit field of a resource (bit = operation code)."""
        host = client_host(ctx.peer)
        bits = 0
        for op in SUPPORTED_OPERATIONS[rtype]:
            if self.decide(ctx.principal, host, op, rtype, name):
                bits |= 1 << op
        return bits

    def _denied(self, ctx, host: str, op: Operation, rtype: ResourceType, name: str, by_type: bool = False) -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        what = f"any {rtype.name} resource" if by_type else f"{rtype.name} {name!r}"
        api = getattr(getattr(ctx, "header", None), "request_api_key", None)
        log.info(
            "denied: %s from %s may not %s %s (request %s)",
            ctx.principal, host, op.name, what, api if api is None else _api_name(api),
        )


def all_operations(rtype: ResourceType) -> int:
    """The bit field with no authorizer: every operation the type supports."""
    bits = 0
    for op in SUPPORTED_OPERATIONS[rtype]:
        bits |= 1 << op
    return bits


def _api_name(key: int) -> str:
    try:
        from pybroker.protocol.registry import ApiKey

        return ApiKey(key).name
    except ValueError:
        return str(key)
