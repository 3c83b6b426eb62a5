"""Replication without a network or a clock, for the deterministic tests.

Each ``Node`` is one broker's replica of partition t-0: a real
PartitionLog in its own directory, a ReplicaManager and the Partition it
hosts. Leaders are changed by hand (``Cluster.elect``, as the controller
would: a new leader epoch each time), and a follower copies its leader
through the very functions the broker uses: the leader's
``replica_fetch.read_for_follower`` (the Fetch handler's), and the
follower's ``follower.apply_answer`` / ``truncate_diverging`` /
``recover_out_of_range`` / ``truncate_without_epochs`` (the fetcher's),
with the leader's offsets for the latter asked of the same Partition
methods ListOffsets and OffsetForLeaderEpoch answer with."""

from __future__ import annotations

import os
from pathlib import Path

from pybroker.cluster.model import PartitionInfo, PartitionState
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.record_batch import RecordBatch, split_batches
from pybroker.protocol.records import Compression, NewRecord, build_batch
from pybroker.replica import ReplicaManager, Role
from pybroker.replica import follower as follower_side
from pybroker.replica.partition import EARLIEST
from pybroker.replica.replica_fetch import read_for_follower
from pybroker.storage.config import LogConfig
from pybroker.storage.log import PartitionLog

T0 = 1_700_000_000_000
TOPIC = "t"


def message_batch(value: bytes, n: int = 1, compression=Compression.NONE, **producer) -> RecordBatch:
    records = [NewRecord(b"k%d" % i, value, (), T0) for i in range(n)]
    return RecordBatch(bytearray(build_batch(records, compression=compression, **producer)))


class Node:
    def __init__(self, node_id: int, root: Path, config: LogConfig | None = None):
        self.id = node_id
        self.dir = root / f"broker{node_id}" / f"{TOPIC}-0"
        self.config = config or LogConfig()
        self.replicas: ReplicaManager | None = None
        self.part = None
        self.up = False

    # -- life ---------------------------------------------------------------

    def start(self, info: PartitionInfo, clean: bool = True) -> None:
        plog = PartitionLog(self.dir, self.config, clean=clean)
        self.replicas = ReplicaManager(self.id, producer_expiration_ms=86_400_000)
        self.part = self.replicas.add(TOPIC, 0, plog, info)
        self.up = True
        self.become(info)

    def stop(self) -> None:
        self.part.log.take_producer_snapshot()
        self.part.log.flush()
        self.part.log.close()
        self.up = False

    def crash_losing(self, nbytes: int) -> None:
        """Stop without a clean shutdown, the log's last ``nbytes`` lost
        (Kafka's test deletes them from the segment file)."""
        self.part.log.close(trim=False)
        self.up = False
        path = self.segment_files()[-1]
        os.truncate(path, max(os.path.getsize(path) - nbytes, 0))

    def become(self, info: PartitionInfo) -> None:
        self.part.become(info, Role.LEADER if info.leader == self.id else Role.FOLLOWER)

    # -- what it holds --------------------------------------------------------

    @property
    def log(self):
        return self.part.log

    @property
    def leo(self) -> int:
        return self.part.log.log_end_offset

    def produce(self, batch: RecordBatch, acks: int = 1):
        return self.replicas.append(TOPIC, 0, batch, now=T0, acks=acks)

    def batches(self) -> list[RecordBatch]:
        """Every batch from the log start to the log end, as stored."""
        plog = self.part.log
        out: list[RecordBatch] = []
        offset = plog.log_start_offset
        while offset < plog.log_end_offset:
            data = plog.read(offset, 1 << 24, plog.log_end_offset).data
            if not data:
                break
            found, rest = split_batches(bytes(data))
            assert rest == 0
            out += found
            offset = found[-1].next_offset
        return out

    def offsets(self) -> list[int]:
        return [rec.offset for b in self.batches() for rec in b.records()]

    def segment_files(self) -> list[Path]:
        return sorted(self.dir.glob("*.log"))

    def file_bytes(self) -> list[bytes]:
        return [p.read_bytes() for p in self.segment_files()]


class Cluster:
    """Two or three Nodes of one partition, and its state as a controller
    would write it."""

    def __init__(self, root: Path, ids=(100, 101), config: LogConfig | None = None):
        self.nodes = {i: Node(i, root, config) for i in ids}
        self.epoch = -1
        self.leader_id = -1
        self.max_bytes = 1 << 20
        self.fetches = 0
        # Followers whose epoch-less log was checked at this epoch (the
        # fetcher's Followed.epoch_checked).
        self.epoch_checked: set[int] = set()

    def __getitem__(self, node_id: int) -> Node:
        return self.nodes[node_id]

    def info(self) -> PartitionInfo:
        live = [i for i, n in self.nodes.items() if n.up]
        return PartitionInfo(0, list(self.nodes), PartitionState(self.leader_id, self.epoch, live))

    def elect(self, leader_id: int) -> None:
        """A new leader (clean or not: the test decides) at the next epoch;
        every running node is told."""
        self.epoch += 1
        self.leader_id = leader_id
        self.epoch_checked.clear()
        info = self.info()
        for n in self.nodes.values():
            if n.up:
                n.become(info)

    def start(self, node_id: int, clean: bool = True) -> None:
        """A node comes back; the state (and epoch) stays as it is."""
        self.epoch_checked.discard(node_id)
        self.nodes[node_id].start(self.info(), clean)

    @property
    def leader(self) -> Node:
        return self.nodes[self.leader_id]

    # -- replication, step by step -----------------------------------------------

    def fetch_once(self, node_id: int) -> follower_side.Outcome:
        """One Fetch of ``node_id`` from the leader, and what it does."""
        f, leader = self.nodes[node_id], self.leader
        assert f.up and leader.up and f.part.role is Role.FOLLOWER
        self.fetches += 1
        if node_id not in self.epoch_checked and follower_side.needs_epoch_check(f.part):
            asked = follower_side.epoch_to_check(f.part)
            epoch, end = leader.part.end_offset_for_epoch(max(asked, 0), self.epoch)
            follower_side.truncate_without_epochs(f.part, epoch, end, asked)
            self.epoch_checked.add(node_id)
            return follower_side.Outcome.TRUNCATED
        pos = follower_side.position(f.part)
        read = read_for_follower(
            leader.part,
            f.id,
            pos.fetch_offset,
            pos.current_leader_epoch,
            pos.last_fetched_epoch,
            self.max_bytes,
            True,
            False,
            T0,
        )
        outcome = follower_side.apply_answer(
            f.replicas,
            f.part,
            read.error,
            read.records,
            read.high_watermark,
            read.log_start_offset,
            read.diverging,
            T0,
        )
        if outcome is follower_side.Outcome.OUT_OF_RANGE:
            _, start, _ = leader.part.fetch_offset_for_timestamp(EARLIEST, 0, f.id, self.epoch)
            _, end = leader.part.end_offset_for_epoch(self.epoch, self.epoch)
            follower_side.recover_out_of_range(f.part, start, end)
        assert outcome is not follower_side.Outcome.REFUSED, read.error
        return outcome

    def sync(self, node_id: int, rounds: int = 1000) -> list[follower_side.Outcome]:
        """Fetch until ``node_id`` holds the leader's log end and a Fetch
        brings nothing; the outcomes, in order."""
        seen = []
        for _ in range(rounds):
            before = self.nodes[node_id].leo
            outcome = self.fetch_once(node_id)
            seen.append(outcome)
            if outcome is follower_side.Outcome.UP_TO_DATE and self.nodes[node_id].leo == before == self.leader.leo:
                return seen
        raise AssertionError(f"broker {node_id} did not catch up: {seen[-5:]}")


__all__ = ["Cluster", "ErrorCode", "Node", "message_batch"]
