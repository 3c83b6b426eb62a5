"""``pybroker cluster describe``: brokers, controller, cluster id, and the
partitions that need attention (under-replicated: fewer in-sync replicas
than replicas; offline: no live leader)."""

from __future__ import annotations

from .client import Client
from .tables import nodes, out, out_json, table


def describe(client: Client) -> dict:
    meta = client.metadata(None)
    brokers = [{"id": b.node_id, "host": b.host, "port": b.port, "rack": b.rack}
               for b in sorted(meta.brokers, key=lambda b: b.node_id)]
    live = {b["id"] for b in brokers}
    under, offline = [], []
    for t in sorted(meta.topics, key=lambda t: t.name):
        for p in sorted(t.partitions, key=lambda p: p.partition_index):
            row = {"topic": t.name, "partition": p.partition_index, "leader": p.leader_id,
                   "replicas": list(p.replica_nodes), "isr": list(p.isr_nodes)}
            if p.leader_id < 0 or p.leader_id not in live:
                offline.append(row)
            elif len(p.isr_nodes) < len(p.replica_nodes):
                under.append(row)
    return {"cluster_id": meta.cluster_id, "controller": meta.controller_id, "brokers": brokers,
            "under_replicated_partitions": under, "offline_partitions": offline}


def describe_command(client: Client, args) -> int:
    info = describe(client)
    if args.json:
        out_json(info)
        return 0
    out(f"Cluster ID: {info['cluster_id']}")
    out(f"Controller: {info['controller']}")
    out(table(["ID", "HOST:PORT", "RACK"], [[b["id"], f"{b['host']}:{b['port']}", b["rack"]] for b in info["brokers"]]))
    for title, rows in (("Under-replicated partitions", info["under_replicated_partitions"]),
                        ("Offline partitions", info["offline_partitions"])):
        out(f"{title}: {len(rows)}")
        if rows:
            out(table(["TOPIC", "PARTITION", "LEADER", "REPLICAS", "ISR"],
                      [[r["topic"], r["partition"], r["leader"], nodes(r["replicas"]), nodes(r["isr"])] for r in rows]))
    return 0
