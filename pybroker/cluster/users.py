"""Per-user configs, as Kafka's ZooKeeper mode keeps them in
``/config/users/<user>``: SCRAM credentials, one key per mechanism
(``SCRAM-SHA-512`` = ``salt=...,stored_key=...,server_key=...,iterations=N``).

The service ``users``: ``configs(user)`` and ``all()`` read the cache,
``await set_many({user: configs})`` stores new configs (an empty dict
removes the user's node). Single node: the metadata file, done on
return. Cluster mode: each user's znode rewritten, then a change
notification (``users/<sanitized user>``) so every broker re-reads it;
the call returns once this broker has seen it back.
"""

from __future__ import annotations

import logging

import trio

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import KafkaError
from pybroker.zk import ConnectionLossError, NodeExistsError, NoNodeError, SessionExpiredError

from ..sasl.scram import HASHES, ScramCredential, decode_credential
from . import znodes

log = logging.getLogger("pybroker.cluster")

# How long a change may take to be written and seen back here.
WRITE_WAIT_S = 10.0


def credential_of(configs: dict[str, str] | None, mechanism: str) -> ScramCredential | None:
    text = (configs or {}).get(mechanism)
    if text is None or mechanism not in HASHES:
        return None
    try:
        return decode_credential(text)
    except ValueError as exc:
        log.warning("ignoring a stored %s credential: %s", mechanism, exc)
        return None


class _Users:
    store: dict[str, dict[str, str]]

    def configs(self, user: str) -> dict[str, str]:
        return dict(self.store.get(user, {}))

    def all(self) -> dict[str, dict[str, str]]:
        return {u: dict(c) for u, c in self.store.items()}

    def scram_credential(self, user: str, mechanism: str) -> ScramCredential | None:
        return credential_of(self.store.get(user), mechanism)


class LocalUsers(_Users):
    def __init__(self, metadata):
        self.metadata = metadata

    @property
    def store(self) -> dict[str, dict[str, str]]:
        return self.metadata.users

    async def set_many(self, changes: dict[str, dict[str, str]]) -> None:
        for user, configs in changes.items():
            self.metadata.set_user_configs(user, configs)


class ZkUsers(_Users):
    def __init__(self, zk, metadata):
        self.zk = zk
        self.metadata = metadata

    @property
    def store(self) -> dict[str, dict[str, str]]:
        return self.metadata.users

    async def set_many(self, changes: dict[str, dict[str, str]]) -> None:
        last = -1
        try:
            with trio.fail_after(WRITE_WAIT_S):
                for user, configs in changes.items():
                    await self._write(user, configs)
                    created = await self.zk.create(
                        znodes.config_change_path(),
                        znodes.encode_config_change(f"users/{znodes.sanitize(user)}"),
                        sequence=True,
                    )
                    last = int(created.rsplit("_", 1)[1])
        except (ConnectionLossError, SessionExpiredError, trio.TooSlowError) as exc:
            raise KafkaError(ErrorCode.REQUEST_TIMED_OUT, f"could not store user configs in ZooKeeper: {exc}") from None
        deadline = trio.current_time() + WRITE_WAIT_S
        if last >= 0 and not await self.metadata.wait_until(lambda: self.metadata.config_changes.seen >= last,
                                                            deadline):
            log.warning("user config change %d written but not seen back in time", last)

    async def _write(self, user: str, configs: dict[str, str]) -> None:
        # Kafka keeps a user's node when its last config goes (it may
        # hold quotas later); an empty config map is what it writes.
        await write_config_node(self.zk, znodes.user_config_path(user), znodes.encode_topic_config(configs))


async def write_config_node(zk, path: str, data: bytes) -> None:
    """Set a /config entity's node, made with its parents if missing."""
    try:
        await zk.set(path, data)
    except NoNodeError:
        try:
            await zk.create(path, data, makepath=True)
        except NodeExistsError:
            await zk.set(path, data)
