"""A leader's ISR changes, written to the partition's state znode.

Kafka's leaders in ZooKeeper mode before KIP-497 wrote their ISR
themselves (``ZkIsrManager``): a conditional write of
``/brokers/topics/<t>/partitions/<p>/state`` keeping the leader, the
leader epoch and the controller epoch of the state the leader holds,
with the new ISR, expecting the state's version (the partition epoch).

``ZkIsrWriter.propose`` takes the one change a partition has in flight
(isr.py) and writes it in a task of its own, so a slow write holds up no
other partition. Outcomes:

* written: the partition applies the new ISR and version at once
  (``isr_change_committed``); the metadata watch later brings the same
  state, which is then not newer and changes nothing;
* BadVersion (someone wrote the state meanwhile: the controller's
  election, or a state this leader has not seen yet) or NoNode (the topic
  is being deleted): the change is dropped, never written again; it stays
  in flight until the metadata watch delivers the newer state, which
  replaces it (Kafka's leader waits for new metadata the same way);
* connection lost: the write may or may not have happened. Once
  connected again, and only if the partition is still hosted, still
  leader at that epoch and the change still in flight, the znode is read:
  our state at the next version means it was written; the expected
  version means it was not (written again); anything else is a newer
  state, as for BadVersion;
* session expired: every leadership is dropped with it, so is the change.
"""

from __future__ import annotations

import logging

import trio

from pybroker.zk import BadVersionError, ConnectionLossError, NoNodeError, SessionExpiredError, ZkClient

from ..replica import Partition, ReplicaManager, Role
from ..replica.isr import IsrChange
from . import znodes
from .model import PartitionState

log = logging.getLogger("pybroker.replica")

# Pause between tries while ZooKeeper cannot be reached.
RETRY_SECONDS = 0.2


class ZkIsrWriter:
    def __init__(self, zk: ZkClient, replicas: ReplicaManager):
        self.zk = zk
        self.replicas = replicas
        self._queue: dict[Partition, IsrChange] = {}
        self._wake = trio.Event()
        self._connected = trio.Event()
        if zk.connected:
            self._connected.set()
        zk.add_session_listener(self._session_changed)
        # Writes that went through, and that were refused (for tests).
        self.written = self.refused = 0
        self.in_flight = 0  # write tasks running

    def propose(self, part: Partition, change: IsrChange) -> None:
        self._queue[part] = change
        self._wake.set()

    def _session_changed(self, state: str) -> None:
        if state == "connected":
            self._connected.set()
        elif self._connected.is_set():
            self._connected = trio.Event()

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                queue, self._queue = self._queue, {}
                for part, change in queue.items():
                    nursery.start_soon(self._write, part, change)

    def _current(self, part: Partition, change: IsrChange) -> bool:
        """Whether ``change`` is still worth writing."""
        return (
            self.replicas.partition(part.topic, part.index) is part
            and part.role is Role.LEADER
            and part.info.leader_epoch == change.leader_epoch
            and part.pending_isr_change is change
        )

    async def _write(self, part: Partition, change: IsrChange) -> None:
        self.in_flight += 1
        try:
            await self._write_until_known(part, change)
        except Exception:
            # The change stays in flight; the next newer state replaces it.
            log.exception("%s-%d: writing the ISR %s failed", part.topic, part.index, list(change.isr))
        finally:
            self.in_flight -= 1

    async def _write_until_known(self, part: Partition, change: IsrChange) -> None:
        path = znodes.partition_state_path(part.topic, part.index)
        held = part.info.state
        state = PartitionState(part.node_id, change.leader_epoch, list(change.isr), held.controller_epoch)
        data = znodes.encode_partition_state(state)
        uncertain = False  # a write may have happened without our seeing its answer
        while True:
            if not self._current(part, change):
                return
            if not self.zk.connected:
                await self._connected.wait()
                continue
            try:
                if uncertain:
                    found, stat = await self.zk.get(path)
                    if stat.version == change.version + 1 and _same(found, state):
                        self._committed(part, change, stat.version)
                        return
                    if stat.version != change.version:
                        self._refused(part, change, f"the state is at version {stat.version} now")
                        return
                    uncertain = False
                stat = await self.zk.set(path, data, version=change.version)
            except BadVersionError:
                self._refused(part, change, f"the state is no longer at version {change.version}")
                return
            except NoNodeError:
                self._refused(part, change, "the state znode is gone")
                return
            except SessionExpiredError:
                return  # every leadership is dropped with the session
            except ConnectionLossError:
                uncertain = True
                await trio.sleep(RETRY_SECONDS)
                continue
            self._committed(part, change, stat.version)
            return

    def _refused(self, part: Partition, change: IsrChange, why: str) -> None:
        self.refused += 1
        part.isr_change_refused(change, why)

    def _committed(self, part: Partition, change: IsrChange, version: int) -> None:
        self.written += 1
        part.isr_change_committed(change, version)


def _same(data: bytes, state: PartitionState) -> bool:
    try:
        found = znodes.decode_partition_state(data, 0)
    except ValueError:
        return False
    return (found.leader, found.leader_epoch, list(found.isr), found.controller_epoch) == (
        state.leader,
        state.leader_epoch,
        list(state.isr),
        state.controller_epoch,
    )
