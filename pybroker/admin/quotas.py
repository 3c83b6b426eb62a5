"""``pybroker configs describe|alter --entity-type users|clients``: client
quotas through DescribeClientQuotas and AlterClientQuotas (KIP-546), as
``kafka-configs.sh --bootstrap-server`` reads and sets them. A user and a
client id together are two ``--entity-type``s, each followed by its
``--entity-name`` or ``--entity-default``, in order:

    pybroker configs alter --entity-type users --entity-name alice \\
        --entity-type clients --entity-default --add-config producer_byte_rate=1048576
"""

from __future__ import annotations

from pybroker.protocol.messages.alter_client_quotas_request import (
    AlterClientQuotasRequest,
    EntityData,
    EntryData,
    OpData,
)
from pybroker.protocol.messages.describe_client_quotas_request import ComponentData, DescribeClientQuotasRequest

from .client import AdminError, Client, check
from .tables import out, out_json

ENTITY_TYPES = {"users": "user", "clients": "client-id"}
# DescribeClientQuotas match types.
EXACT, DEFAULT, ANY = 0, 1, 2
_WHO = {"user": "user-principal", "client-id": "client-id"}


def is_quota_entity(types: list[str]) -> bool:
    return bool(types) and all(t in ENTITY_TYPES for t in types)


def _entity(args, need_names: bool) -> list[tuple[str, str | None, bool]]:
    """[(entity type, name, named)]: named False is "any" (describe without a name)."""
    types = [ENTITY_TYPES[t] for t in args.entity_type]
    names = list(args.entity_names or [])
    if len(set(types)) != len(types):
        raise AdminError("INVALID_REQUEST", "each --entity-type may be given once")
    if len(names) > len(types) or (need_names and len(names) < len(types)):
        raise AdminError("INVALID_REQUEST", "give one --entity-name or --entity-default per --entity-type")
    return [(t, names[i] if i < len(names) else None, i < len(names)) for i, t in enumerate(types)]


def _label(parts) -> str:
    return ", ".join(f"{_WHO[t]} {'<default>' if n is None else repr(n)}" for t, n in parts)


def describe_command(client: Client, args) -> int:
    components = [ComponentData(entity_type=t, match_type=(EXACT if n is not None else DEFAULT) if named else ANY,
                                match=n if named else None)
                  for t, n, named in _entity(args, need_names=False)]
    # kafka-configs.sh asks for these entities only (a strict filter).
    response, _ = client.any().call(DescribeClientQuotasRequest(components=components, strict=True), 0, 1)
    check(response.error_code, response.error_message, "DescribeClientQuotas")
    found = [{"entity": [{"type": e.entity_type, "name": e.entity_name} for e in entry.entity],
              "quotas": {v.key: v.value for v in entry.values}} for entry in response.entries or ()]
    if args.json:
        out_json(found)
        return 0
    for f in found:
        values = ", ".join(f"{k}={v}" for k, v in sorted(f["quotas"].items()))
        out(f"Quota configs for {_label([(e['type'], e['name']) for e in f['entity']])} are {values}")
    return 0


def alter_command(client: Client, args, sets: list[tuple[str, str]], deletes: list[str]) -> int:
    parts = [(t, n) for t, n, _ in _entity(args, need_names=True)]
    ops = []
    for key, value in sets:
        try:
            number = float(value)
        except ValueError:
            raise AdminError("INVALID_CONFIG", f"{key}={value}: a quota is a number") from None
        ops.append(OpData(key=key, value=number, remove=False))
    ops += [OpData(key=key, value=0.0, remove=True) for key in deletes]
    entry = EntryData(entity=[EntityData(entity_type=t, entity_name=n) for t, n in parts], ops=ops)
    response, _ = client.any().call(AlterClientQuotasRequest(entries=[entry], validate_only=False), 0, 1)
    for e in response.entries:
        check(e.error_code, e.error_message, _label(parts))
    out(f"Completed updating config for {_label(parts)}.")
    return 0
