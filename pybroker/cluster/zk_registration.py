"""Cluster mode: joining the cluster, as Kafka's ZooKeeper-mode broker does
at start (``KafkaServer.startup``, ``KafkaZkClient``).

* ``ensure_persistent_paths``: the znodes every broker creates if missing.
* ``cluster_id``: ``/cluster/id``, read, or created with a new random id
  (Kafka's Uuid text) by the first broker; whoever creates it first wins.
* ``check_cluster_id``: the log dirs' meta.properties must name the same
  cluster (a broker pointed at another cluster's data refuses to start,
  with Kafka's InconsistentClusterIdException message).
* ``register``: the ephemeral ``/brokers/ids/<id>``; its czxid is the
  broker's epoch. A registration held by another live session refuses the
  start with Kafka's message; one left by this broker's own expired session
  (ZOOKEEPER-2985, the workaround of KAFKA-7165) is deleted and made again.
"""

from __future__ import annotations

import logging

from pybroker.storage.dirs import LogDirError, new_kafka_uuid
from pybroker.zk import NodeExistsError, NoNodeError, ZkClient, ops

from . import znodes

log = logging.getLogger("pybroker.cluster")


class ClusterJoinError(Exception):
    """This broker cannot join the cluster (its id is taken): the operator's to fix."""


class InconsistentClusterIdError(LogDirError):
    """The log dirs belong to another cluster (Kafka's InconsistentClusterIdException)."""


async def ensure_persistent_paths(zk: ZkClient) -> None:
    for path in znodes.PERSISTENT_PATHS:
        await zk.ensure_path(path)


async def cluster_id(zk: ZkClient) -> str:
    """The cluster's id, made up by whichever broker gets here first."""
    while True:
        try:
            data, _ = await zk.get(znodes.CLUSTER_ID)
            return znodes.decode_cluster_id(data)
        except NoNodeError:
            pass
        proposed = new_kafka_uuid()
        try:
            await zk.create(znodes.CLUSTER_ID, znodes.encode_cluster_id(proposed), makepath=True)
            log.info("created the cluster id %s", proposed)
            return proposed
        except NodeExistsError:
            continue


def check_cluster_id(cluster: str, stored: str | None) -> None:
    """Refuse log dirs whose meta.properties name another cluster."""
    if stored is not None and stored != cluster:
        raise InconsistentClusterIdError(
            f"The Cluster ID {cluster} doesn't match stored clusterId Some({stored}) in meta.properties. "
            "The broker is trying to join the wrong cluster. Configured zookeeper.connect may be wrong."
        )


async def register(zk: ZkClient, registration: znodes.BrokerRegistration, previous_session: int | None = None) -> int:
    """Create ``/brokers/ids/<id>`` for this session; the broker epoch (its czxid).

    As Kafka's CheckedEphemeral: created empty and filled in one multi (so
    the stat returned is the data's), and when the node exists already,
    kept if this session owns it, replaced if an earlier session of this
    broker left it, refused otherwise."""
    path = znodes.broker_path(registration.node_id)
    data = znodes.encode_broker(registration)
    while True:
        try:
            results = await zk.multi([ops.create(path, b"", ephemeral=True), ops.set(path, data, 0)])
            stat = results[1]
        except NodeExistsError:
            try:
                _, stat = await zk.get(path)
            except NoNodeError:
                continue  # went away meanwhile: create it again
            owner = stat.ephemeralOwner
            if owner == zk.session_id:
                pass
            elif previous_session is not None and owner == previous_session:
                log.info(
                    "Was not possible to create the ephemeral at %s, node already exists and owner '0x%x' does "
                    "not match current session '0x%x', trying to delete and re-create it with the newest "
                    "Zookeeper session",
                    path,
                    owner,
                    zk.session_id,
                )
                try:
                    await zk.delete(path)
                except NoNodeError:
                    pass
                continue
            else:
                raise ClusterJoinError(
                    f"Error while creating ephemeral at {path}, node already exists and owner '0x{owner:x}' "
                    f"does not match current session '0x{zk.session_id:x}'"
                ) from None
        log.info(
            "Registered broker %d at path %s with addresses: %s://%s:%d, czxid (broker epoch): %d",
            registration.node_id,
            path,
            registration.listener,
            registration.host,
            registration.port,
            stat.czxid,
        )
        return stat.czxid
