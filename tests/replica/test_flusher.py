"""The group-commit flusher: where a round's fsyncs run (on the event loop
for a small round on a quick disk, else in a worker thread), and that a
round makes what it covered durable either way."""

import os
import threading

import pytest
import trio

from pybroker.protocol.records import NewRecord, build_batch
from pybroker.replica.flusher import INLINE_SYNC_BYTES, INLINE_SYNC_SECONDS, Flusher, SyncPlacement
from pybroker.storage import flush as storage_flush
from pybroker.storage.config import LogConfig
from pybroker.storage.log import PartitionLog

T0 = 1_700_000_000_000


def batch(size: int) -> bytes:
    return build_batch([NewRecord(b"k", b"v" * size, (), T0)])


# -- placement ----------------------------------------------------------------------------


def test_a_small_round_on_a_quick_disk_syncs_inline():
    place = SyncPlacement()
    assert place.inline(0) and place.inline(INLINE_SYNC_BYTES)
    assert not place.inline(INLINE_SYNC_BYTES + 1)


def test_slow_rounds_move_to_the_thread_until_the_disk_is_quick_again():
    place = SyncPlacement()
    place.observe(0.05)  # one slow fsync (writeback, a slow disk)
    assert not place.inline(100)
    quick = 0
    while not place.inline(100):
        place.observe(0.0002)
        quick += 1
        assert quick < 50
    assert quick > 1  # not at the first quick round: the average remembers
    assert place.recent < INLINE_SYNC_SECONDS


def test_a_disk_that_stays_slow_keeps_its_rounds_in_the_thread():
    place = SyncPlacement()
    rounds = 0
    while place.inline(1):  # a few rounds pass before the average knows
        place.observe(2 * INLINE_SYNC_SECONDS)
        rounds += 1
    assert rounds <= 3
    for _ in range(100):
        place.observe(2 * INLINE_SYNC_SECONDS)
        assert not place.inline(1)


# -- rounds ---------------------------------------------------------------------------------


@pytest.fixture
def fsync_threads(monkeypatch):
    """The thread each fsync of a segment's data ran on."""
    seen = []
    real = os.fsync

    def fsync(fd):
        seen.append(threading.get_ident())
        real(fd)

    monkeypatch.setattr(storage_flush.os, "fsync", fsync)
    return seen


def flushed(plog: PartitionLog | list, flusher: Flusher) -> dict:
    """One round of ``flusher`` over ``plog`` (or a list of logs): what failed."""
    logs = plog if isinstance(plog, list) else [plog]

    async def main():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(flusher.run)
            with trio.fail_after(10):
                failed = await flusher.flush(logs)
            nursery.cancel_scope.cancel()
        return failed

    return trio.run(main)


def test_a_small_round_fsyncs_on_the_event_loop(tmp_path, fsync_threads):
    plog = PartitionLog(tmp_path / "t-0", LogConfig())
    plog.append(batch(1000), now=T0)
    flusher = Flusher()
    assert flushed(plog, flusher) == {}
    assert fsync_threads and set(fsync_threads) == {threading.get_ident()}
    assert flusher.inline_rounds == 1 and plog.recovery_point == plog.log_end_offset == 1
    assert plog.unflushed_bytes == 0
    plog.close()


def test_a_large_round_fsyncs_in_a_worker_thread(tmp_path, fsync_threads):
    plog = PartitionLog(tmp_path / "t-0", LogConfig())
    plog.append(batch(INLINE_SYNC_BYTES), now=T0)
    flusher = Flusher()
    assert flushed(plog, flusher) == {}
    assert fsync_threads and threading.get_ident() not in fsync_threads
    assert flusher.inline_rounds == 0 and plog.recovery_point == 1
    plog.close()


def test_after_slow_rounds_a_small_one_goes_to_the_thread(tmp_path, fsync_threads):
    plog = PartitionLog(tmp_path / "t-0", LogConfig())
    plog.append(batch(10), now=T0)
    flusher = Flusher()
    flusher.placement.observe(1.0)
    assert flushed(plog, flusher) == {}
    assert threading.get_ident() not in fsync_threads and flusher.inline_rounds == 0
    plog.close()


def test_a_failed_inline_fsync_fails_only_its_log(tmp_path, monkeypatch):
    good = PartitionLog(tmp_path / "a-0", LogConfig())
    bad = PartitionLog(tmp_path / "b-0", LogConfig())
    good.append(batch(10), now=T0)
    bad.append(batch(10), now=T0)
    bad_fds = {seg.file.fd for seg in bad.segments}
    real = os.fsync

    def fsync(fd):
        if fd in bad_fds:
            raise OSError(5, "Input/output error")
        real(fd)

    monkeypatch.setattr(storage_flush.os, "fsync", fsync)
    flusher = Flusher()
    failed = flushed([good, bad], flusher)
    assert flusher.inline_rounds == 1
    assert list(failed) == [bad] and "Input/output error" in failed[bad]
    assert good.recovery_point == 1 and bad.recovery_point == 0 and bad.offline is not None
    good.close()

