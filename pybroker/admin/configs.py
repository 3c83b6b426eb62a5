"""``pybroker configs describe|alter``: topic and broker configs through
DescribeConfigs and IncrementalAlterConfigs, as ``kafka-configs.sh``.

A broker's configs are asked of that broker; a topic's of the controller
(any broker would do for Kafka; the controller is one every cluster has).
"""

from __future__ import annotations

from pybroker.protocol.messages.describe_configs_request import DescribeConfigsRequest, DescribeConfigsResource
from pybroker.protocol.messages.incremental_alter_configs_request import (
    AlterableConfig,
    AlterConfigsResource,
    IncrementalAlterConfigsRequest,
)

from . import quotas
from .client import AdminError, Client, Connection, check
from .tables import out, out_json, table

TOPIC, BROKER = 2, 4
RESOURCE_TYPES = {"topics": TOPIC, "brokers": BROKER}
SET, DELETE = 0, 1
# ConfigSource (DescribeConfigsResponse v1+).
SOURCES = {
    0: "UNKNOWN",
    1: "DYNAMIC_TOPIC_CONFIG",
    2: "DYNAMIC_BROKER_CONFIG",
    3: "DYNAMIC_DEFAULT_BROKER_CONFIG",
    4: "STATIC_BROKER_CONFIG",
    5: "DEFAULT_CONFIG",
    6: "DYNAMIC_BROKER_LOGGER_CONFIG",
}
# Set on the entity itself (not inherited from the broker or a default).
OWN_SOURCES = {TOPIC: {1}, BROKER: {2, 4}}


def describe(conn: Connection, resource_type: int, name: str) -> list[dict]:
    """Every config of one resource: name, value, source, sensitive, read_only."""
    body = DescribeConfigsRequest(
        resources=[DescribeConfigsResource(resource_type=resource_type, resource_name=name, configuration_keys=None)]
    )
    response, version = conn.call(body, 0, 4)
    (result,) = response.results
    check(result.error_code, result.error_message, subject=f"{name}")
    entries = []
    for c in result.configs:
        if version == 0:
            source = 5 if c.is_default else (1 if resource_type == TOPIC else 4)
        else:
            source = c.config_source
        entries.append({"name": c.name, "value": c.value, "source": SOURCES.get(source, str(source)),
                        "own": source in OWN_SOURCES[resource_type], "sensitive": c.is_sensitive,
                        "read_only": c.read_only})
    return entries


def alter(conn: Connection, resource_type: int, name: str, sets: list[tuple[str, str]], deletes: list[str]) -> None:
    configs = [AlterableConfig(name=k, config_operation=SET, value=v) for k, v in sets]
    configs += [AlterableConfig(name=k, config_operation=DELETE, value=None) for k in deletes]
    body = IncrementalAlterConfigsRequest(
        resources=[AlterConfigsResource(resource_type=resource_type, resource_name=name, configs=configs)]
    )
    response, _ = conn.call(body, 0, 1)
    (result,) = response.responses
    check(result.error_code, result.error_message, subject=name)


def split_config_list(text: str) -> list[str]:
    """``a=1,b=[x,y],c=2`` -> items; brackets keep a list value whole, as
    kafka-configs.sh's --add-config does."""
    items, depth, current = [], 0, ""
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "," and depth == 0:
            items.append(current)
            current = ""
            continue
        current += ch
    if current:
        items.append(current)
    return [i.replace("[", "").replace("]", "") if "=[" in i else i for i in items]


def _connection(client: Client, resource_type: int, name: str) -> Connection:
    if resource_type == BROKER:
        if not name.isdigit():
            raise AdminError("INVALID_REQUEST", f"broker name must be a node id, not '{name}'")
        return client.broker(int(name))
    return client.controller()


def _resource(args) -> str | None:
    """The topic or broker entity type, its name on ``args``; None: client quotas."""
    if quotas.is_quota_entity(args.entity_type):
        return None
    if len(args.entity_type) != 1 or len(args.entity_names or [None]) != 1 or None in (args.entity_names or [""]):
        raise AdminError("INVALID_REQUEST", "one --entity-type (and --entity-name) for topics and brokers")
    args.entity_type = args.entity_type[0]
    args.entity_name = (args.entity_names or [None])[0]
    return args.entity_type


def describe_command(client: Client, args) -> int:
    if _resource(args) is None:
        return quotas.describe_command(client, args)
    resource_type = RESOURCE_TYPES[args.entity_type]
    names = [args.entity_name]
    if args.entity_name is None:
        meta = client.metadata(None if resource_type == TOPIC else [])
        names = sorted(t.name for t in meta.topics) if resource_type == TOPIC else [str(b) for b in sorted(client.brokers)]
    report = {}
    for name in names:
        entries = describe(_connection(client, resource_type, name), resource_type, name)
        report[name] = entries if args.all else [e for e in entries if e["own"]]
    if args.json:
        out_json({"entity_type": args.entity_type, "entities": report})
        return 0
    kind = "topic" if resource_type == TOPIC else "broker"
    for name, entries in report.items():
        what = "All" if args.all else "Dynamic"
        out(f"{what} configs for {kind} {name} are:")
        rows = [[e["name"], "<sensitive>" if e["sensitive"] else e["value"], e["source"]] for e in entries]
        if rows:
            out(table(["NAME", "VALUE", "SOURCE"], rows))
    return 0


def alter_command(client: Client, args) -> int:
    quota = _resource(args) is None
    if not quota and args.entity_name is None:
        raise AdminError("INVALID_REQUEST", "--entity-name is required to alter configs")
    sets = []
    for item in (i for text in args.add_config for i in split_config_list(text)):
        key, sep, value = item.partition("=")
        if not sep:
            raise AdminError("INVALID_CONFIG", f"'{item}' is not key=value")
        sets.append((key.strip(), value))
    deletes = [k.strip() for text in args.delete_config for k in text.split(",") if k.strip()]
    if not sets and not deletes:
        raise AdminError("INVALID_REQUEST", "nothing to alter: give --add-config or --delete-config")
    if quota:
        return quotas.alter_command(client, args, sets, deletes)
    resource_type = RESOURCE_TYPES[args.entity_type]
    alter(_connection(client, resource_type, args.entity_name), resource_type, args.entity_name, sets, deletes)
    kind = "topic" if resource_type == TOPIC else "broker"
    out(f"Completed updating config for {kind} {args.entity_name}.")
    return 0
