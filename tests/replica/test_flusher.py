"""The group-commit flusher: where a round's fsyncs run (on the event loop
for a small round on a quick disk, else in a worker thread), and that a
round makes what it covered durable either way."""

import math
import os
import threading
import time

import pytest
import trio
import trio.testing

from pybroker.protocol.records import NewRecord, build_batch
from pybroker.replica.flusher import (
    INLINE_RETRY_SECONDS,
    INLINE_SYNC_BYTES,
    INLINE_SYNC_SECONDS,
    ROUND_DEFER_PASSES,
    Flusher,
    SyncPlacement,
)
from pybroker.storage import flush as storage_flush
from pybroker.storage.config import LogConfig
from pybroker.storage.log import PartitionLog

T0 = 1_700_000_000_000


def batch(size: int) -> bytes:
    return build_batch([NewRecord(b"k", b"v" * size, (), T0)])


# -- placement ----------------------------------------------------------------------------


def test_a_small_round_on_a_quick_disk_syncs_inline():
    place = SyncPlacement()
    assert place.inline(0, 0.0) and place.inline(INLINE_SYNC_BYTES, 0.0)
    assert not place.inline(INLINE_SYNC_BYTES + 1, 0.0)


def test_a_slow_round_moves_rounds_to_the_thread_and_a_quick_retry_brings_them_back():
    place = SyncPlacement()
    place.observe(0.05, 10.0)  # one slow fsync (writeback, a slow disk)
    assert not place.inline(100, 10.0)
    assert not place.inline(100, 10.0 + INLINE_RETRY_SECONDS - 0.001)
    assert place.inline(100, 10.0 + INLINE_RETRY_SECONDS)  # the retry
    place.observe(0.0002, 10.0 + INLINE_RETRY_SECONDS)
    assert place.recent == 0.0002  # measured afresh, not averaged with the slow one
    assert place.inline(100, 10.0 + INLINE_RETRY_SECONDS)


def test_a_disk_that_stays_slow_gets_one_inline_round_per_retry_interval():
    place = SyncPlacement()
    now, rounds = 0.0, 0
    while place.inline(1, now):  # a few rounds pass before the average knows
        place.observe(2 * INLINE_SYNC_SECONDS, now)
        rounds += 1
    assert rounds <= 3
    inline = 0
    for step in range(1000):  # 10 s in 10 ms steps
        now = step * 0.01
        if place.inline(1, now):
            inline += 1
            place.observe(2 * INLINE_SYNC_SECONDS, now)
    assert 9 <= inline <= 11


def test_a_fsync_slower_than_the_old_1ms_bound_stays_inline():
    # Under load on this machine a quick disk's fsyncs take 0.5-3 ms; the
    # old bound sent them to the thread, where hops cost more than the wait.
    place = SyncPlacement()
    for step in range(100):
        assert place.inline(1, step * 0.01)
        place.observe(0.002, step * 0.01)


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
    flusher.placement.observe(1.0, math.inf)  # no retry due
    assert flushed(plog, flusher) == {}
    assert threading.get_ident() not in fsync_threads and flusher.inline_rounds == 0
    plog.close()


def test_a_slow_round_in_the_thread_leaves_small_rounds_inline(tmp_path, monkeypatch):
    # A worker thread's time includes its wait for the interpreter lock
    # once the fsync returns, so it cannot tell a slow disk from a busy
    # event loop: only inline rounds are timed.
    seen = []
    real = os.fsync

    def fsync(fd):
        seen.append(threading.get_ident())
        if len(seen) == 1:
            time.sleep(8 * INLINE_SYNC_SECONDS)  # the slow fsync itself, not a wait for something
        real(fd)

    monkeypatch.setattr(storage_flush.os, "fsync", fsync)
    flusher = Flusher()
    large = PartitionLog(tmp_path / "a-0", LogConfig())
    large.append(batch(INLINE_SYNC_BYTES), now=T0)
    assert flushed(large, flusher) == {}
    in_thread = len(seen)
    assert threading.get_ident() not in seen
    small = PartitionLog(tmp_path / "b-0", LogConfig())
    small.append(batch(10), now=T0)
    assert flushed(small, flusher) == {}
    assert len(seen) > in_thread and set(seen[in_thread:]) == {threading.get_ident()}
    assert flusher.inline_rounds == 1 and small.recovery_point == 1
    large.close()
    small.close()


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



def test_tasks_woken_with_a_round_run_before_its_inline_fsync(tmp_path, monkeypatch):
    # A leader's append wakes the follower Fetches parked for it and asks
    # for a round in the same step. A parked Fetch needs two passes to
    # answer (its task builds the response, its connection's writer sends
    # it); an inline fsync that ran first would hold the answer back.
    order = []
    real = os.fsync

    def fsync(fd):
        order.append("fsync")
        real(fd)

    monkeypatch.setattr(storage_flush.os, "fsync", fsync)
    plog = PartitionLog(tmp_path / "t-0", LogConfig())

    async def one_append():
        flusher = Flusher()
        appended = trio.Event()
        flushed = trio.Event()

        async def parked_fetch():
            await appended.wait()
            for _ in range(ROUND_DEFER_PASSES - 1):
                await trio.lowlevel.checkpoint()  # the hand-over to the writer
            order.append("answer")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(flusher.run)
            nursery.start_soon(parked_fetch)
            await trio.testing.wait_all_tasks_blocked()
            plog.append(batch(10), now=T0)
            appended.set()
            flusher.request(plog, flushed.set)
            with trio.fail_after(10):
                await flushed.wait()
            nursery.cancel_scope.cancel()

    # trio runs tasks woken together in random order: twenty appends.
    for attempt in range(20):
        order.clear()
        trio.run(one_append)
        assert order[0] == "answer" and "fsync" in order, f"append {attempt}: {order}"
    assert plog.recovery_point == plog.log_end_offset == 20
    plog.close()
