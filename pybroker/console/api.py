"""The console's JSON API: what its pages show and do, each route a Kafka
client conversation with the cluster through the admin CLI's client
(``pybroker.admin``), so the console shows what any client would see of
the whole cluster, not one broker's memory. The admin client is
synchronous: every call runs in a worker thread.

Routes (``/api/...``):
  GET    cluster                      brokers, controller, partitions needing attention
  GET    topics                       every topic: partitions, leaders, ISR, offsets, size
  POST   topics                       create {name, partitions, replication_factor, configs}
  GET    topics/<name>                one topic, with its configs
  DELETE topics/<name>                delete it
  GET    topics/<name>/messages       ?partition=&offset=|timestamp=&limit=
  GET    groups                       every group: state, members, lag
  GET    groups/<id>                  members, committed offsets, lag per partition
  POST   groups/<id>/reset            {to: earliest|latest|offset|timestamp|shift, value, topic, execute}
  GET    offsets                      {topic: sum of latest offsets}: the throughput charts' samples
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from urllib.parse import unquote

from pybroker.admin import groups as admin_groups
from pybroker.admin import topics as admin_topics
from pybroker.admin.browse import read_messages
from pybroker.admin.client import AdminError, Client
from pybroker.admin.cluster import describe as describe_cluster
from pybroker.admin.logdirs import partition_sizes
from pybroker.admin.offsets import LATEST, list_offsets

from ..http_server import Request, Response

MAX_MESSAGES = 500


class BadRequest(Exception):
    pass


def _int(query: dict, name: str, default=None, low: int | None = None) -> int | None:
    text = query.get(name)
    if text in (None, ""):
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, not {text!r}") from None
    if low is not None and value < low:
        raise BadRequest(f"{name} must be at least {low}")
    return value


def topics(client: Client) -> list[dict]:
    described = admin_topics.describe_topics(client, None)
    sizes = partition_sizes(client)
    for t in described:
        for p in t["partitions"]:
            p["size_bytes"] = sizes.get((t["name"], p["partition"]))
        t["messages"] = sum((p["latest_offset"] or 0) - (p["earliest_offset"] or 0) for p in t["partitions"])
        t["size_bytes"] = sum(p["size_bytes"] or 0 for p in t["partitions"])
    return described


def topic(client: Client, name: str) -> dict:
    (found,) = [t for t in topics(client) if t["name"] == name] or [None]
    if found is None:
        raise AdminError("UNKNOWN_TOPIC_OR_PARTITION", f"topic '{name}' does not exist")
    return found


def create_topic(client: Client, body: dict) -> dict:
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise BadRequest("a topic needs a name")
    partitions = body.get("partitions")
    factor = body.get("replication_factor")
    if not all(v is None or isinstance(v, int) for v in (partitions, factor)):
        raise BadRequest("partitions and replication_factor are integers (or left out: the broker's defaults)")
    configs = body.get("configs") or {}
    if not isinstance(configs, dict):
        raise BadRequest("configs is an object of names and values")
    admin_topics.create_topic(client, name, partitions, factor, [(str(k), str(v)) for k, v in configs.items()])
    return {"created": name}


def groups(client: Client) -> list[dict]:
    """Every group with its state, member count and total lag."""
    out = []
    for listed in admin_groups.list_groups(client):
        described = admin_groups.describe_group(client, listed["group"])
        lags = [o["lag"] for o in described["offsets"] if o["lag"] is not None]
        out.append({"group": listed["group"], "state": described["state"],
                    "protocol_type": described["protocol_type"], "members": len(described["members"]),
                    "partitions": len(described["offsets"]), "lag": sum(lags)})
    return out


def messages(client: Client, name: str, query: dict) -> dict:
    partition = _int(query, "partition", 0, low=0)
    offset = _int(query, "offset", None, low=0)
    timestamp = _int(query, "timestamp", None, low=0)
    limit = min(_int(query, "limit", 50, low=1), MAX_MESSAGES)
    return read_messages(client, name, partition, offset=offset, timestamp=timestamp, limit=limit)


RESET_TO = ("earliest", "latest", "offset", "timestamp", "shift")


def reset(client: Client, group: str, body: dict) -> dict:
    """Kafka's reset-offsets for one topic or all the group's, to
    earliest/latest, an offset, a time (ms) or by a shift; only with
    ``execute`` is anything committed."""
    to = body.get("to")
    if to not in RESET_TO:
        raise BadRequest(f"to must be one of {', '.join(RESET_TO)}")
    value = body.get("value")
    if to in ("offset", "timestamp", "shift") and not isinstance(value, int):
        raise BadRequest(f"resetting to {to} needs an integer value")
    name = body.get("topic")
    spec = admin_groups.ResetSpec(
        all_topics=not name,
        topic=[name] if name else [],
        to_earliest=to == "earliest",
        to_latest=to == "latest",
        to_offset=value if to == "offset" else None,
        to_datetime=datetime.fromtimestamp(value / 1000).isoformat() if to == "timestamp" else None,
        shift_by=value if to == "shift" else 0,
    )
    execute = body.get("execute") is True
    plan = admin_groups.reset_offsets(client, group, spec, execute)
    return {"group": group, "executed": execute, "plan": plan}


def offsets(client: Client) -> dict:
    meta = client.metadata(None)
    leaders = {(t.name, p.partition_index): p.leader_id for t in meta.topics for p in t.partitions
               if p.leader_id >= 0 and not t.is_internal}
    latest = list_offsets(client, leaders, LATEST)
    totals: dict[str, int] = {}
    for (name, _), end in latest.items():
        totals[name] = totals.get(name, 0) + end
    return {"time_ms": int(time.time() * 1000), "topics": totals}


def route(request: Request) -> Callable[[Client], object]:
    """The call that answers ``request``, to run with a client; raises
    LookupError for no such route, BadRequest for a bad one."""
    parts = [unquote(p) for p in request.path.removeprefix("/api/").split("/") if p]
    method = request.method
    match parts, method:
        case ["cluster"], "GET":
            return describe_cluster
        case ["topics"], "GET":
            return topics
        case ["topics"], "POST":
            body = _json(request)
            return lambda c: create_topic(c, body)
        case ["topics", name], "GET":
            return lambda c: topic(c, name)
        case ["topics", name], "DELETE":
            return lambda c: {"deleted": admin_topics.delete_topic(c, name) and name}
        case ["topics", name, "messages"], "GET":
            query = request.query
            _int(query, "partition", 0, low=0)  # refused before a thread is taken
            return lambda c: messages(c, name, query)
        case ["groups"], "GET":
            return groups
        case ["groups", group], "GET":
            return lambda c: admin_groups.describe_group(c, group)
        case ["groups", group, "reset"], "POST":
            body = _json(request)
            return lambda c: reset(c, group, body)
        case ["offsets"], "GET":
            return offsets
    raise LookupError(request.path)


def _json(request: Request) -> dict:
    try:
        body = request.json()
    except ValueError as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("the body is a JSON object")
    return body


def answer(call: Callable[[Client], object], bootstrap: str) -> Response:
    """Run ``call`` with a client of the cluster (in a worker thread)."""
    try:
        with Client(bootstrap, timeout=15) as client:
            return Response.of_json(call(client))
    except BadRequest as exc:
        return Response.error(400, "BAD_REQUEST", str(exc))
    except AdminError as exc:
        status = 404 if exc.name in ("UNKNOWN_TOPIC_OR_PARTITION", "GROUP_ID_NOT_FOUND") else 409
        return Response.error(status, exc.name, str(exc).partition(": ")[2])
    except OSError as exc:
        return Response.error(503, "BROKER_NOT_AVAILABLE", f"cannot reach the cluster at {bootstrap}: {exc}")
