"""FrameDecoder's receive-into path (get_buffer / buffer_updated) and the
pool of frame buffers: frames must come out exactly as ``feed`` gives them,
a large frame's bytes must land in the frame's own buffer, and a frame still
held anywhere must never be reused."""

from __future__ import annotations

import random
import struct
import tracemalloc

import pytest

from pybroker.protocol.errors import DecodeError, FrameTooLargeError
from pybroker.protocol.framing import FRAME_RESERVE, OWN_BUFFER_FROM, FrameBuffers, FrameDecoder


def frame(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def receive(dec: FrameDecoder, data: bytes, most: int) -> list[bytes]:
    return [bytes(f) for f in receive_views(dec, data, most)]


def receive_views(dec: FrameDecoder, data: bytes, most: int) -> list[memoryview]:
    """Deliver ``data`` as a socket would with recv_into: at most ``most``
    bytes a time, never more than the decoder's buffer offers, taking
    frames out after every receive."""
    out = []
    pos = 0
    while pos < len(data):
        with dec.get_buffer() as buf:
            assert len(buf) > 0
            n = min(len(buf), most, len(data) - pos)
            buf[:n] = data[pos : pos + n]
        dec.buffer_updated(n)
        pos += n
        while (f := dec.next_frame()) is not None:
            out.append(f)
    return out


RNG = random.Random(7)
PAYLOADS = [b"", b"a", bytes(200), RNG.randbytes(40_000), RNG.randbytes(300_000), b"tail", RNG.randbytes(70_000)]
STREAM = b"".join(frame(p) for p in PAYLOADS)


@pytest.mark.parametrize("most", [1, 3, 4, 5, 1000, 65536, 1 << 20])
@pytest.mark.parametrize("pooled", [False, True])
def test_received_in_any_pieces_the_frames_come_out_whole(most, pooled):
    dec = FrameDecoder(receive_size=4096, buffers=FrameBuffers() if pooled else None)
    assert receive(dec, STREAM, most) == PAYLOADS
    assert dec.buffered == 0


def test_the_rest_of_a_large_frame_is_received_into_the_frame_itself():
    dec = FrameDecoder(receive_size=4096)
    payload = RNG.randbytes(100_000)
    data = frame(payload)
    with dec.get_buffer() as buf:
        buf[:4096] = data[:4096]
    dec.buffer_updated(4096)
    assert dec.next_frame() is None
    with dec.get_buffer() as buf:
        target = buf.obj
        assert len(buf) == len(data) - 4096  # exactly the frame's remainder, no more
        buf[:] = data[4096:]
    dec.buffer_updated(len(data) - 4096)
    got = dec.next_frame()
    assert got.obj is target and bytes(got) == payload
    assert dec.buffered == 0


def test_held_frames_are_never_reused_and_released_ones_are():
    dec = FrameDecoder(receive_size=4096, buffers=FrameBuffers())
    held = [receive_views(dec, frame(bytes([i]) * 100_000), 4096)[0] for i in range(5)]
    assert len({id(h.obj) for h in held}) == 5
    kept = held[2][10:20]  # a slice keeps its frame as busy as the frame itself
    released = {id(h.obj) for h in held} - {id(held[2].obj)}
    del held
    again = [receive_views(dec, frame(b"z" * 100_000), 4096)[0] for _ in range(4)]
    assert {id(f.obj) for f in again} == released
    assert bytes(kept) == bytes([2]) * 10
    assert all(bytes(f) == b"z" * 100_000 for f in again)


def test_a_buffer_given_back_is_taken_again_once_unviewed():
    pool = FrameBuffers()
    a = pool.take(100_000)
    assert len(a) >= 100_000
    assert pool.take(100_000) is not a  # taken: not the pool's to give
    view = memoryview(a)[:10]
    pool.give_back(a)
    assert pool.take(90_000) is not a  # a view of it is alive
    view.release()
    assert pool.take(90_000) is a
    assert pool.take(90_000) is not a


def test_the_pool_keeps_no_more_than_its_limit():
    pool = FrameBuffers(limit=256 * 1024)
    held = [pool.take(100_000) for _ in range(4)]  # 128 KiB each: two fit
    views = [memoryview(b) for b in held]
    for b in held:
        pool.give_back(b)
    assert sum(len(b) for b in pool._kept) <= 256 * 1024
    del views
    taken = [pool.take(100_000) for _ in range(4)]
    assert sum(any(t is h for h in held) for t in taken) == 2
    assert len({id(t) for t in taken}) == 4


def test_a_declared_size_reserves_no_more_than_the_reserve():
    dec = FrameDecoder(max_frame_size=2**31 - 1)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        dec.feed(struct.pack(">i", 2**31 - 1) + b"x" * 1000)
        assert dec.next_frame() is None
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert peak < FRAME_RESERVE + 64 * 1024


def test_a_frame_above_the_reserve_grows_as_it_arrives():
    payload = RNG.randbytes(3 * FRAME_RESERVE + 17)
    dec = FrameDecoder(buffers=FrameBuffers())
    assert receive(dec, frame(payload) + frame(b"after"), 200_000) == [payload, b"after"]


def test_frames_up_to_pooled_up_to_reuse_a_whole_buffer():
    """A peer's answers bounded by our request (a follower's Fetch answers,
    several MiB) may take a pooled buffer of their full size at once: the
    second such frame arrives in the first one's buffer, with no growth."""
    size = 3 * FRAME_RESERVE
    dec = FrameDecoder(buffers=FrameBuffers(limit=4 * size), pooled_up_to=size + 64)
    first = receive_views(dec, frame(b"a" * size), 200_000)[0]
    target = first.obj
    assert len(target) >= size and bytes(first) == b"a" * size
    del first
    second = receive_views(dec, frame(b"b" * size), 200_000)[0]
    assert second.obj is target and bytes(second) == b"b" * size


def test_frames_over_the_reserve_are_not_pooled_by_default():
    size = 3 * FRAME_RESERVE
    dec = FrameDecoder(buffers=FrameBuffers(limit=4 * size))
    first = receive_views(dec, frame(b"a" * size), 200_000)[0]
    target = first.obj
    del first
    assert receive_views(dec, frame(b"b" * size), 200_000)[0].obj is not target


@pytest.mark.parametrize(
    "prefix,error", [(b"\xff\xff\xff\xff", DecodeError), (struct.pack(">i", 11), FrameTooLargeError)]
)
def test_bad_prefixes_through_the_receive_path(prefix, error):
    dec = FrameDecoder(max_frame_size=10)
    with pytest.raises(error):
        receive(dec, prefix + b"abc", 2)


def test_small_frames_cut_by_a_receive_wait_in_the_receive_buffer():
    """A frame under OWN_BUFFER_FROM cut off at the end of a receive stays
    in the receive buffer: the next receive still has room for many frames
    instead of stopping at the end of that one."""
    payloads = [RNG.randbytes(RNG.randint(100, OWN_BUFFER_FROM - 100)) for _ in range(300)]
    data = b"".join(frame(p) for p in payloads)
    dec = FrameDecoder()
    out, pos, offered = [], 0, []
    while pos < len(data):
        with dec.get_buffer() as buf:
            offered.append(len(buf))
            n = min(len(buf), len(data) - pos)
            buf[:n] = data[pos : pos + n]
        dec.buffer_updated(n)
        pos += n
        while (f := dec.next_frame()) is not None:
            out.append(bytes(f))
    assert out == payloads
    assert min(offered) >= OWN_BUFFER_FROM
