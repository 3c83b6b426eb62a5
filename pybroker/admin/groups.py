"""``pybroker groups list|describe|delete|reset-offsets``, as
kafka-consumer-groups.sh.

Groups live on their coordinators: list asks every broker, the others ask
the group's coordinator (FindCoordinator). Lag is the partition's latest
offset (from its leader) minus the group's committed offset.
reset-offsets prints its plan unless ``--execute`` is given, and refuses
a group that still has members, with Kafka's tool's message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from pybroker.groups.embedded import decode_assignment
from pybroker.protocol.errors import DecodeError
from pybroker.protocol.messages.delete_groups_request import DeleteGroupsRequest
from pybroker.protocol.messages.describe_groups_request import DescribeGroupsRequest
from pybroker.protocol.messages.list_groups_request import ListGroupsRequest

from . import group_offsets
from .client import AdminError, Client, check
from .offsets import EARLIEST, LATEST, list_offsets, topic_leaders
from .tables import out, out_json, report, table

INACTIVE = ("Empty", "Dead")


def list_groups(client: Client) -> list[dict]:
    """Every group of every broker (each lists the groups it coordinates)."""
    client.metadata([])
    groups = {}
    for node in sorted(client.brokers):
        response, _ = client.broker(node).call(ListGroupsRequest(), 0, 4)
        check(response.error_code, subject=f"broker {node}")
        for g in response.groups:
            groups[g.group_id] = {"group": g.group_id, "protocol_type": g.protocol_type,
                                  "state": getattr(g, "group_state", None) or None}
    return [groups[g] for g in sorted(groups)]


def list_command(client: Client, args) -> int:
    rows = list_groups(client)
    if args.json:
        out_json(rows)
    else:
        for row in rows:
            out(row["group"])
    return 0


def _describe_one(client: Client, group: str):
    response, _ = client.coordinator(group).call(DescribeGroupsRequest(groups=[group]), 0, 5)
    (described,) = response.groups
    check(described.error_code, subject=f"group {group}")
    return described


def _members(described) -> list[dict]:
    members = []
    for m in described.members:
        assignment: list[tuple[str, int]] = []
        if described.protocol_type == "consumer" and m.member_assignment:
            try:
                parts = decode_assignment(m.member_assignment)[0]
                assignment = sorted((t, p) for t, ps in parts.items() for p in ps)
            except DecodeError:
                pass
        members.append({"member_id": m.member_id, "client_id": m.client_id, "host": m.client_host,
                        "assignment": [f"{t}-{p}" for t, p in assignment], "_owned": assignment})
    return members


def describe_group(client: Client, group: str) -> dict:
    described = _describe_one(client, group)
    members = _members(described)
    committed = group_offsets.fetch_committed(client.coordinator(group), group)
    owner = {tp: m for m in members for tp in m.pop("_owned")}
    partitions = set(committed) | set(owner)
    leaders = {}
    for topic in sorted({t for t, _ in partitions}):
        leaders.update(topic_leaders(client, topic, sorted(p for t, p in partitions if t == topic)))
    latest = list_offsets(client, leaders, LATEST)
    rows = []
    for tp in sorted(partitions):
        current, end = committed.get(tp), latest.get(tp)
        member = owner.get(tp)
        rows.append({"topic": tp[0], "partition": tp[1], "current_offset": current, "log_end_offset": end,
                     "lag": None if current is None or end is None else max(end - current, 0),
                     "member_id": member and member["member_id"], "host": member and member["host"],
                     "client_id": member and member["client_id"]})
    return {"group": group, "state": described.group_state, "protocol_type": described.protocol_type,
            "protocol": described.protocol_data, "members": members, "offsets": rows}


def describe_command(client: Client, args) -> int:
    return report([describe_group(client, g) for g in args.group], args.json, _show_group)


def _show_group(r: dict) -> None:
    out(f"Group: {r['group']}  State: {r['state']}  Protocol: {r['protocol'] or '-'}  Members: {len(r['members'])}")
    if r["offsets"]:
        out(table(
            ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID", "HOST",
             "CLIENT-ID"],
            [[r["group"], o["topic"], o["partition"], o["current_offset"], o["log_end_offset"], o["lag"],
              o["member_id"], o["host"], o["client_id"]] for o in r["offsets"]],
        ))
    if r["members"]:
        out(table(["CONSUMER-ID", "HOST", "CLIENT-ID", "ASSIGNMENT"],
                  [[m["member_id"], m["host"], m["client_id"], ",".join(m["assignment"]) or "-"]
                   for m in r["members"]]))


def delete_command(client: Client, args) -> int:
    deleted = []
    for group in args.group:
        response, _ = client.coordinator(group).call(DeleteGroupsRequest(groups_names=[group]), 0, 2)
        (result,) = response.results
        if result.error_code == 68:  # NON_EMPTY_GROUP: say it as Kafka's tool does
            raise AdminError("NON_EMPTY_GROUP", f"The group '{group}' is not empty.")
        check(result.error_code, subject=f"group {group}")
        deleted.append(group)
    if args.json:
        out_json({"deleted": deleted})
    else:
        out(f"Deletion of requested consumer groups ({', '.join(repr(g) for g in deleted)}) was successful.")
    return 0


def _scope(client: Client, args, committed) -> dict[tuple[str, int], int]:
    """The partitions to reset, with their leaders."""
    if args.all_topics:
        topics = {t: None for t, _ in committed}
    else:
        topics = {}
        for item in args.topic:
            name, sep, parts = item.partition(":")
            try:
                topics[name] = [int(p) for p in parts.split(",")] if sep else None
            except ValueError:
                raise AdminError("INVALID_REQUEST", f"--topic '{item}' is not TOPIC[:P,P...]") from None
    leaders = {}
    for topic, parts in sorted(topics.items()):
        leaders.update(topic_leaders(client, topic, parts))
    return leaders


def _timestamp_ms(text: str) -> int:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise AdminError("INVALID_REQUEST", f"--to-datetime '{text}' is not ISO 8601 (YYYY-MM-DDTHH:mm:SS.sss)") from None
    return int(when.timestamp() * 1000)  # without a zone: local time, as Kafka's tool


def _targets(client: Client, args, leaders, committed) -> dict[tuple[str, int], int]:
    earliest = list_offsets(client, leaders, EARLIEST)
    latest = list_offsets(client, leaders, LATEST)
    if args.to_datetime is not None:
        found = list_offsets(client, leaders, _timestamp_ms(args.to_datetime))
        return {tp: o if o >= 0 else latest[tp] for tp, o in found.items()}
    targets = {}
    for tp in leaders:
        if args.to_earliest:
            target = earliest[tp]
        elif args.to_latest:
            target = latest[tp]
        elif args.to_offset is not None:
            target = args.to_offset
        elif args.to_current:
            target = committed.get(tp, latest[tp])
        else:
            target = committed.get(tp, latest[tp]) + args.shift_by
        # Out of range moves to the nearer end, as Kafka's tool does.
        targets[tp] = min(max(target, earliest[tp]), latest[tp])
    return targets


@dataclass
class ResetSpec:
    """What to reset and to where, as reset-offsets' options say it (its
    parsed arguments have these attributes too)."""

    all_topics: bool = False
    topic: list[str] = field(default_factory=list)  # TOPIC or TOPIC:P,P...
    to_earliest: bool = False
    to_latest: bool = False
    to_offset: int | None = None
    to_current: bool = False
    to_datetime: str | None = None
    shift_by: int = 0


def reset_offsets(client: Client, group: str, spec, execute: bool) -> list[dict]:
    """The new offsets of ``spec``'s partitions, committed with ``execute``;
    a group with members is refused with Kafka's tool's message."""
    described = _describe_one(client, group)
    if described.group_state not in INACTIVE:
        raise AdminError(
            "NON_EMPTY_GROUP",
            f"Assignments can only be reset if the group '{group}' is inactive, "
            f"but the current state is {described.group_state}.",
        )
    conn = client.coordinator(group)
    committed = group_offsets.fetch_committed(conn, group)
    leaders = _scope(client, spec, committed)
    targets = _targets(client, spec, leaders, committed)
    if execute:
        group_offsets.commit(conn, group, targets)
    return [{"group": group, "topic": t, "partition": p, "new_offset": o} for (t, p), o in sorted(targets.items())]


def reset_offsets_command(client: Client, args) -> int:
    plan = reset_offsets(client, args.group, args, args.execute)
    if args.json:
        out_json({"executed": bool(args.execute), "offsets": plan})
    else:
        out(table(["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"],
                  [[r["group"], r["topic"], r["partition"], r["new_offset"]] for r in plan]))
        if not args.execute:
            out("(dry run: nothing committed; add --execute to commit these offsets)")
    return 0
