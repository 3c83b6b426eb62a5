"""The configs of quota entities, as Kafka's ZooKeeper mode keeps them:
``/config/users/<user>`` (beside the user's SCRAM credentials, see
users.py), ``/config/clients/<client-id>`` and
``/config/users/<user>/clients/<client-id>``, ``<default>`` for every
user or client id, names sanitized (znodes.entity_segment). One cache
holds all three, in the metadata: ``users``, ``clients``, ``user_clients``.

The service ``client_quotas``: ``entities()`` and ``configs(user, client)``
read the cache (``None`` for a component the entity lacks);
``await set_many({(user, client): configs})`` stores whole config maps.
Single node: the metadata file, done on return. Cluster mode: each
entity's znode rewritten (an empty map, never a deleted node, when its
last config goes, as Kafka leaves it), then a change notification
(``users/<u>``, ``clients/<c>``, ``users/<u>/clients/<c>``) so every
broker re-reads it; the call returns once this broker has seen it back.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import trio

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import KafkaError
from pybroker.zk import ConnectionLossError, SessionExpiredError

from . import znodes
from .users import write_config_node

log = logging.getLogger("pybroker.cluster")

WRITE_WAIT_S = 10.0
Entity = tuple[str | None, str | None]


class _EntityConfigs:
    def __init__(self, metadata):
        self.metadata = metadata

    def entities(self) -> Iterator[tuple[Entity, dict[str, str]]]:
        m = self.metadata
        for user, configs in m.users.items():
            yield (user, None), dict(configs)
        for client, configs in m.clients.items():
            yield (None, client), dict(configs)
        for user, by_client in m.user_clients.items():
            for client, configs in by_client.items():
                yield (user, client), dict(configs)

    def configs(self, user: str | None, client: str | None) -> dict[str, str]:
        m = self.metadata
        if client is None:
            return dict(m.users.get(user, {}))
        if user is None:
            return dict(m.clients.get(client, {}))
        return dict(m.user_clients.get(user, {}).get(client, {}))


class LocalClientQuotas(_EntityConfigs):
    async def set_many(self, changes: dict[Entity, dict[str, str]]) -> None:
        self.metadata.set_entity_configs(changes)


class ZkClientQuotas(_EntityConfigs):
    def __init__(self, zk, metadata):
        super().__init__(metadata)
        self.zk = zk

    async def set_many(self, changes: dict[Entity, dict[str, str]]) -> None:
        last = -1
        try:
            with trio.fail_after(WRITE_WAIT_S):
                for (user, client), configs in changes.items():
                    await write_config_node(self.zk, _path(user, client), znodes.encode_topic_config(configs))
                    created = await self.zk.create(
                        znodes.config_change_path(),
                        znodes.encode_config_change(znodes.entity_change(user, client)),
                        sequence=True,
                    )
                    last = int(created.rsplit("_", 1)[1])
        except (ConnectionLossError, SessionExpiredError, trio.TooSlowError) as exc:
            raise KafkaError(ErrorCode.REQUEST_TIMED_OUT, f"could not store quotas in ZooKeeper: {exc}") from None
        deadline = trio.current_time() + WRITE_WAIT_S
        seen = self.metadata.config_changes
        if last >= 0 and not await self.metadata.wait_until(lambda: seen.seen >= last, deadline):
            log.warning("quota config change %d written but not seen back in time", last)


def _path(user: str | None, client: str | None) -> str:
    if client is None:
        return znodes.user_config_path(user)
    if user is None:
        return znodes.client_config_path(client)
    return znodes.user_client_config_path(user, client)
