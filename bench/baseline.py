"""The physical baseline, measured in the same run as the brokers: what
this machine's loopback TCP and filesystem do with no broker in the way.

* loopback: one process writes fixed-size chunks to a socket, another
  reads them into a reused buffer, for the write sizes the clients use
  (1 KiB messages, 64 KiB produce requests, 1 MiB fetch responses);
* file: sequential 1 MiB writes to a new file (page cache, then with the
  fsync at the end counted) and sequential 1 MiB reads of it back (from
  the page cache: dropping the cache would disturb the rest of a shared
  machine);
* fsynced writers: three processes at once, each appending 1 MiB to its
  own file and fsyncing it, again and again. That is what a cluster's
  durable high watermark asks of the machine (three replicas, each
  fsyncing every round of about that size before it counts), with no
  broker work beside it: the ceiling for acks=all on three replicas, and
  what the kernel's copying and writeback cost in CPU per MB.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import socket
import tempfile
import time
from pathlib import Path


@contextlib.contextmanager
def _forked(target, args: tuple, count: int = 1):
    """``count`` forked processes, each running ``target(queue, *args)``:
    yields the queue they answer on, and on the way out joins them,
    killing any still running 30 s later."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=target, args=(queue, *args)) for _ in range(count)]
    for proc in procs:
        proc.start()
    try:
        yield queue
    finally:
        for proc in procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()


def _sink(port_q, total: int) -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port_q.put(srv.getsockname()[1])
    conn, _ = srv.accept()
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    got = 0
    while got < total:
        n = conn.recv_into(view)
        if not n:
            break
        got += n
    conn.sendall(b"k")
    conn.close()
    srv.close()


def loopback(write_size: int, total: int) -> float:
    """MB/s through loopback TCP writing ``write_size`` chunks."""
    with _forked(_sink, (total,)) as q:
        port = q.get(timeout=30)
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        chunk = os.urandom(write_size)
        n = total // write_size
        start = time.perf_counter()
        for _ in range(n):
            s.sendall(chunk)
        s.recv(1)  # the reader has everything
        elapsed = time.perf_counter() - start
        s.close()
    return n * write_size / elapsed / 1e6


def file_io(directory: Path, total: int) -> dict:
    """MB/s of sequential 1 MiB writes (to cache, and including the final
    fsync) and reads of a new file."""
    chunk = os.urandom(1 << 20)
    n = max(1, total >> 20)
    with tempfile.TemporaryDirectory(dir=directory) as d:
        path = Path(d) / "baseline.bin"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        start = time.perf_counter()
        for _ in range(n):
            os.write(fd, chunk)
        cached = time.perf_counter() - start
        os.fsync(fd)
        synced = time.perf_counter() - start
        os.close(fd)
        fd = os.open(path, os.O_RDONLY)
        start = time.perf_counter()
        while os.read(fd, 1 << 20):
            pass
        read = time.perf_counter() - start
        os.close(fd)
    mb = n * len(chunk) / 1e6
    return {"write_cached": mb / cached, "write_fsync": mb / synced, "read_cached": mb / read}


def _fsync_writer(results, directory: str, chunk_size: int, seconds: float) -> None:
    chunk = os.urandom(chunk_size)
    written = 0
    with tempfile.NamedTemporaryFile(dir=directory) as f:
        fd = f.fileno()
        cpu = os.times()
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            os.write(fd, chunk)
            os.fsync(fd)
            written += chunk_size
        elapsed = time.perf_counter() - start
        used = os.times()
        cpu_s = used.user - cpu.user + used.system - cpu.system
        results.put((written / 1e6, elapsed, cpu_s))


def fsynced_writers(directory: Path, writers: int, seconds: float, chunk_size: int = 1 << 20) -> dict:
    """``writers`` processes at once, each fsyncing every ``chunk_size``
    write to its own file: their MB/s summed, and the CPU time (user and
    system, the fsync's writeback included) they spent per MB."""
    with _forked(_fsync_writer, (str(directory), chunk_size, seconds), writers) as results:
        done = [results.get(timeout=seconds + 60) for _ in range(writers)]
    mb = sum(m for m, _, _ in done)
    return {
        "mb_s": sum(m / elapsed for m, elapsed, _ in done),
        "cpu_ms_per_mb": 1000 * sum(cpu for _, _, cpu in done) / mb if mb else None,
    }


def measure(directory: Path, quick: bool) -> dict:
    total = (64 if quick else 512) << 20
    out = {
        f"loopback_{size}": loopback(size, total if size >= 65536 else total // 8) for size in (1024, 65536, 1 << 20)
    }
    out.update(file_io(directory, total))
    writers = fsynced_writers(directory, 3, 0.5 if quick else 3)
    out["fsync_writers_3"] = writers["mb_s"]
    out["fsync_cpu_ms_per_mb"] = writers["cpu_ms_per_mb"]
    return out
