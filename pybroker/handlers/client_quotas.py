"""DescribeClientQuotas (api key 48) and AlterClientQuotas (49), v0-1
(KIP-546; v1 is the flexible encoding), answered as Kafka's ZooKeeper-mode
brokers answer them (ZkAdminManager.describeClientQuotas,
alterClientQuotas).

Entities are a user, a client id, or a user's client id; a null name is
the default ("<default>" in ZooKeeper). Quotas: producer_byte_rate and
consumer_byte_rate (whole numbers, bytes per second), request_percentage
and controller_mutation_rate (doubles).

Describe: each filter component names an entity type and matches an exact
name (0), the default (1) or any name given (2); an entity type without
a component matches an entity lacking that type, and any entity unless
``strict``. Only entities holding a quota are listed. A duplicate or
empty entity type is INVALID_REQUEST, another type UNSUPPORTED_VERSION;
IP entities match nothing here (no IP quotas).

Alter: per entity, an empty entity, an unknown entity type or an empty
name is INVALID_REQUEST, so is setting an unknown key, a fractional byte
rate, or a value not above 0; a user's SCRAM keys cannot be set here.
Removing drops the key. ``validate_only`` checks without storing. The
other entities' changes are stored whatever one entity's error.
"""

from __future__ import annotations

import math

from pybroker.acl import Operation
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import KafkaError
from pybroker.protocol.messages.alter_client_quotas_response import AlterClientQuotasResponse
from pybroker.protocol.messages.alter_client_quotas_response import EntityData as AlteredEntity
from pybroker.protocol.messages.alter_client_quotas_response import EntryData as AlteredEntry
from pybroker.protocol.messages.describe_client_quotas_response import (
    DescribeClientQuotasResponse,
    EntityData,
    EntryData,
    ValueData,
)
from pybroker.protocol.registry import ApiKey

from ..quotas import DEFAULT, QUOTA_KEYS
from . import Hold, handles

USER = "user"
CLIENT_ID = "client-id"
IP = "ip"
MATCH_EXACT, MATCH_DEFAULT, MATCH_SPECIFIED = 0, 1, 2
# A user's node also holds its SCRAM credentials: Kafka's user config keys
# include them, but they are not quotas (set with AlterUserScramCredentials).
_USER_ONLY_KEYS = ("SCRAM-SHA-256", "SCRAM-SHA-512")


class _Refused(Exception):
    def __init__(self, code: ErrorCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _filter(components) -> dict[str, int | str | None]:
    """{entity type: what its name must be}: a name, DEFAULT, or None for any."""
    found: dict[str, int | str | None] = {}
    for c in components:
        kind = c.entity_type
        if kind in found:
            raise _Refused(ErrorCode.INVALID_REQUEST, f"Duplicate {'client' if kind == CLIENT_ID else kind} "
                                                      "filter component entity type")
        if kind == "":
            raise _Refused(ErrorCode.INVALID_REQUEST, "Unexpected empty filter component entity type")
        if kind not in (USER, CLIENT_ID, IP):
            raise _Refused(ErrorCode.UNSUPPORTED_VERSION, f"Custom entity type '{kind}' not supported")
        if c.match_type == MATCH_EXACT:
            if c.match is None:
                raise _Refused(ErrorCode.INVALID_REQUEST, f"Exact match of {kind} without a name")
            found[kind] = c.match
        elif c.match_type == MATCH_DEFAULT:
            found[kind] = DEFAULT
        elif c.match_type == MATCH_SPECIFIED:
            found[kind] = None
        else:
            raise _Refused(ErrorCode.UNKNOWN_SERVER_ERROR, f"Unexpected match type: {c.match_type}")
    if IP in found and (USER in found or CLIENT_ID in found):
        raise _Refused(ErrorCode.INVALID_REQUEST, "Invalid entity filter component combination, IP filter "
                                                  "component should not be used with user or clientId filter component.")
    return found


def _matches(wanted: dict, kind: str, name: str | None, strict: bool) -> bool:
    if kind not in wanted:
        return name is None or not strict
    want = wanted[kind]
    return name is not None if want is None else name == want


def _public(name: str | None) -> str | None:
    return None if name == DEFAULT else name


@handles(ApiKey.DESCRIBE_CLIENT_QUOTAS, 0, 1)
def describe_client_quotas(ctx, req, *, client_quotas, authorizer):
    if authorizer is not None and not authorizer.cluster(ctx, Operation.DESCRIBE_CONFIGS):
        return DescribeClientQuotasResponse(error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED, entries=None)
    try:
        wanted = _filter(req.components)
    except _Refused as exc:
        return DescribeClientQuotasResponse(error_code=exc.code, error_message=exc.message, entries=None)
    entries = []
    if IP not in wanted:
        for (user, client), configs in sorted(client_quotas.entities(), key=lambda e: (e[0][0] or "", e[0][1] or "")):
            values = [ValueData(key=k, value=float(v)) for k, v in sorted(configs.items()) if k in QUOTA_KEYS]
            if not values:
                continue
            if not (_matches(wanted, USER, user, req.strict) and _matches(wanted, CLIENT_ID, client, req.strict)):
                continue
            entity = []
            if user is not None:
                entity.append(EntityData(entity_type=USER, entity_name=_public(user)))
            if client is not None:
                entity.append(EntityData(entity_type=CLIENT_ID, entity_name=_public(client)))
            entries.append(EntryData(entity=entity, values=values))
    return DescribeClientQuotasResponse(error_code=0, error_message=None, entries=entries)


def _entity(parts) -> tuple[str | None, str | None]:
    """(user, client id) of an AlterClientQuotas entity, "<default>" for null names."""
    if not parts:
        raise _Refused(ErrorCode.INVALID_REQUEST, "Invalid empty client quota entity")
    found: dict[str, str] = {}
    for p in parts:
        if p.entity_type not in (USER, CLIENT_ID, IP):
            raise _Refused(ErrorCode.INVALID_REQUEST, f"Unhandled client quota entity type: {p.entity_type}")
        if p.entity_name is not None and p.entity_name == "":
            raise _Refused(ErrorCode.INVALID_REQUEST, f"Empty {p.entity_type} not supported")
        found[p.entity_type] = DEFAULT if p.entity_name is None else p.entity_name
    if IP in found:
        if len(found) > 1:
            raise _Refused(ErrorCode.INVALID_REQUEST,
                           "Invalid quota entity combination, IP entity should not be used with user/client ID entity.")
        raise _Refused(ErrorCode.INVALID_REQUEST, "IP quotas are not supported by this broker")
    return found.get(USER), found.get(CLIENT_ID)


def _apply(configs: dict[str, str], ops, user_node: bool) -> None:
    for op in ops:
        if op.remove:
            configs.pop(op.key, None)
            continue
        kind = QUOTA_KEYS.get(op.key)
        if kind is None:
            if user_node and op.key in _USER_ONLY_KEYS:
                raise _Refused(ErrorCode.UNKNOWN_SERVER_ERROR, "Unexpected config type PASSWORD")
            raise _Refused(ErrorCode.INVALID_REQUEST, f"Invalid configuration key {op.key}")
        value = op.value
        if not (value > 0) or math.isinf(value):
            raise _Refused(ErrorCode.INVALID_REQUEST, f"Configuration {op.key} must be above 0, not {value}")
        if kind == "LONG":
            whole = int(value + 1e-6)
            if abs(whole - value) > 1e-6:
                raise _Refused(ErrorCode.INVALID_REQUEST, f"Configuration {op.key} must be a LONG value")
            configs[op.key] = str(whole)
        else:
            configs[op.key] = repr(float(value))


@handles(ApiKey.ALTER_CLIENT_QUOTAS, 0, 1)
def alter_client_quotas(ctx, req, *, client_quotas, authorizer):
    if authorizer is not None and not authorizer.cluster(ctx, Operation.ALTER_CONFIGS):
        return AlterClientQuotasResponse(entries=[
            AlteredEntry(error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED, entity=[
                AlteredEntity(entity_type=p.entity_type, entity_name=p.entity_name) for p in entry.entity
            ])
            for entry in req.entries
        ])
    results: list[tuple[list, ErrorCode, str | None]] = []
    changes: dict[tuple[str | None, str | None], dict[str, str]] = {}
    stored: list[int] = []
    for entry in req.entries:
        echo = [AlteredEntity(entity_type=p.entity_type, entity_name=p.entity_name) for p in entry.entity]
        try:
            user, client = _entity(entry.entity)
            configs = dict(changes[user, client]) if (user, client) in changes else client_quotas.configs(user, client)
            _apply(configs, entry.ops, client is None)
        except _Refused as exc:
            results.append((echo, exc.code, exc.message))
            continue
        if not req.validate_only:
            changes[user, client] = configs
            stored.append(len(results))
        results.append((echo, ErrorCode.NONE, None))

    def response():
        return AlterClientQuotasResponse(entries=[
            AlteredEntry(error_code=code, error_message=message, entity=entity) for entity, code, message in results
        ])

    if not changes:
        return response()

    async def store():
        try:
            await client_quotas.set_many(changes)
        except KafkaError as exc:
            for i in stored:
                results[i] = (results[i][0], exc.code, exc.message)
        return response()

    return Hold(store)
