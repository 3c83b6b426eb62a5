"""Batches of transactions as a transactional producer and its coordinator
write them, for the tests of the partition side of transactions."""

from __future__ import annotations

from pybroker.protocol.records import NewRecord, build_batch, build_control_batch


def txn_batch(pid: int, values: list[bytes], base: int, seq: int = 0, epoch: int = 0) -> bytes:
    """One transactional batch of ``values`` at offset ``base``."""
    return build_batch(
        [NewRecord(value=v) for v in values],
        producer_id=pid,
        producer_epoch=epoch,
        base_sequence=seq,
        base_offset=base,
        is_transactional=True,
    )


def marker(pid: int, commit: bool, base: int, coordinator_epoch: int = 0, epoch: int = 0) -> bytes:
    """The commit or abort marker a coordinator writes, at offset ``base``."""
    return build_control_batch(pid, epoch, commit, coordinator_epoch, 1000, base_offset=base)
