"""Memory stays bounded under overload, measured on a broker process.

Clients that flood and never read must not make the broker buffer without
bound: responses left unread stop the connection's reader once
``queued.max.requests`` of them wait (and a waiting Fetch response holds
file regions, not record data); acks=0 produce, which has no responses, is
held back by the socket; a frame is buffered only as far as its bytes have
arrived, whatever size it declares. Each test samples the broker's resident
set (VmRSS) while it runs and waits only on conditions it can observe.
"""

from __future__ import annotations

import os
import socket
import threading

import pytest

from pybroker.protocol.framing import decode_response, encode_request
from pybroker.protocol.messages.list_offsets_request import ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic
from pybroker.protocol.messages.metadata_request import MetadataRequest
from pybroker.protocol.record_batch import split_batches

from .raw_requests import create, fetch_request, produce, produce_request, slow_reader
from .wire import Wire
from .workload import wait_for

MB = 1_000_000
PARTS = 8


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class PeakRss:
    """The broker's largest resident set while the block runs."""

    def __init__(self, pid: int):
        self.pid = pid
        self.base = rss(pid)
        self.peak = self.base
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        while not self._done.wait(0.005):  # a sampling period, not a wait for anything
            self.peak = max(self.peak, rss(self.pid))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, rss(self.pid))

    @property
    def growth(self) -> int:
        return self.peak - self.base


def log_end(w: Wire, topic: str, partition: int = 0) -> int:
    req = ListOffsetsRequest(
        replica_id=-1,
        topics=[
            ListOffsetsTopic(name=topic, partitions=[ListOffsetsPartition(partition_index=partition, timestamp=-1)])
        ],
    )
    w.send(req, 7, 5)
    (p,) = w.receive(2, 7)[1].topics[0].partitions
    assert p.error_code == 0
    return p.offset


def fill(w: Wire, topic: str) -> None:
    """About 1 MB in each partition, in two batches."""
    for p in range(PARTS):
        for i in range(2):
            produce(w, topic, p, [bytes([p + i]) * 500_000])


def fetch_frame(topic: str, correlation_id: int) -> bytes:
    req = fetch_request(topic, [(p, 0, 1 << 20) for p in range(PARTS)], 50 << 20)
    return encode_request(req, 12, correlation_id, "flood")


def read_frame(sock: socket.socket) -> bytes:
    def exactly(n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            data = sock.recv(min(n - len(out), 1 << 20))
            assert data, "closed by the broker"
            out += data
        return bytes(out)

    return exactly(int.from_bytes(exactly(4), "big"))


def check_fetch_response(frame: bytes) -> None:
    _, resp = decode_response(1, 12, frame)
    (topic,) = resp.responses
    assert len(topic.partitions) == PARTS
    for p in topic.partitions:
        batches, rest = split_batches(bytes(p.records))
        assert rest == 0 and [b.base_offset for b in batches] == [0, 1]
        for b in batches:
            b.validate()


def test_unread_fetch_responses_hold_no_record_data(broker_process):
    """100 Fetch responses of 8 MB each, none read: as bytes they would be
    800 MB; queued as file regions they are a few KB."""
    proc = broker_process({"num.partitions": str(PARTS)})
    w = Wire(proc.bootstrap)
    create(w, "data", "probe")
    fill(w, "data")
    n = 100
    sock = slow_reader(proc.bootstrap)
    with PeakRss(proc.proc.pid) as mem:
        sock.sendall(b"".join(fetch_frame("data", i) for i in range(n)))
        # Requests on a connection run in order: once this acks=0 produce
        # is in the log, every Fetch before it has its response queued.
        sock.sendall(encode_request(produce_request("probe", 0, [b"probe"], acks=0), 9, n, "flood"))
        wait_for(lambda: log_end(w, "probe") == 1, 60, "the probe behind the fetches")
        queued = rss(proc.proc.pid)
    assert mem.growth < 100 * MB, (mem.base, mem.peak)
    assert queued - mem.base < 100 * MB
    frames = [read_frame(sock) for _ in range(n)]
    check_fetch_response(frames[0])
    check_fetch_response(frames[-1])
    assert len({len(f) for f in frames}) == 1
    sock.close()
    w.close()


def test_reading_stops_after_queued_max_requests(broker_process):
    """With 8 responses allowed to wait, a client that stops reading stops
    the broker reading its requests: a produce sent after 40 fetches is
    appended only once the client has read all but about 8 responses."""
    queued_max = 8
    proc = broker_process({"num.partitions": str(PARTS), "queued.max.requests": str(queued_max)})
    w = Wire(proc.bootstrap)
    create(w, "data", "probe")
    fill(w, "data")
    n = 40
    sock = slow_reader(proc.bootstrap)
    sock.sendall(b"".join(fetch_frame("data", i) for i in range(n)))
    sock.sendall(encode_request(produce_request("probe", 0, [b"probe"], acks=0), 9, n, "flood"))
    # Each response (8 MB) is far larger than the socket buffers between the
    # broker and this client, so after j responses read the broker has
    # taken at most j + 1 (being written) + queued_max (waiting) + 1 (in
    # hand) requests: the probe, request n + 1, not before j = n - queued_max - 1.
    appeared_at = None
    for j in range(n):
        if log_end(w, "probe") == 1:
            appeared_at = j
            break
        read_frame(sock)
    assert appeared_at is None or appeared_at >= n - queued_max - 1, appeared_at
    wait_for(lambda: log_end(w, "probe") == 1, 60, "the probe once the responses were read")
    sock.close()
    w.close()


def test_acks0_flood_is_held_back_by_the_socket(broker_process):
    """acks=0 produce has no responses to bound it: 300 MB sent as fast as
    the socket takes them must pass through without piling up."""
    proc = broker_process()
    w = Wire(proc.bootstrap)
    create(w, "flood")
    frame = encode_request(produce_request("flood", 0, [b"x" * MB], acks=0), 9, 1, "flood")
    n = 300
    host, port = proc.bootstrap.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=60)
    sender = threading.Thread(target=lambda: [sock.sendall(frame) for _ in range(n)], daemon=True)
    with PeakRss(proc.proc.pid) as mem:
        sender.start()
        wait_for(lambda: log_end(w, "flood") == n, 120, "every acks=0 batch appended")
        sender.join(60)
    assert mem.growth < 100 * MB, (mem.base, mem.peak)
    sock.close()
    w.close()


def _broker_side(broker_port: int) -> dict[int, tuple[str, int]]:
    """The broker's end of each client connection, by client port: its TCP
    state (01 is ESTABLISHED) and the bytes waiting in its receive queue."""
    out = {}
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local_port = int(fields[1].split(":")[1], 16)
            remote_port = int(fields[2].split(":")[1], 16)
            if local_port == broker_port:
                out[remote_port] = (fields[3], int(fields[4].split(":")[1], 16))
    return out


def _broker_side_rx_queues(broker_port: int, client_ports: set[int]) -> list[int]:
    """Bytes waiting in the broker's receive queue of each client connection."""
    return [rx for port, (_, rx) in _broker_side(broker_port).items() if port in client_ports]


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="needs /proc/net/tcp")
def test_declared_frame_sizes_reserve_only_what_arrived(broker_process):
    """16 connections each declare a 100 MB frame and send 3 MB of it: the
    broker holds what arrived (about 4 MB a connection), not 1.6 GB."""
    proc = broker_process({"socket.request.max.bytes": str(100 * MB)})
    host, port = proc.bootstrap.rsplit(":", 1)
    head = (100 * MB - 1).to_bytes(4, "big") + encode_request(MetadataRequest(topics=[]), 9, 1, "big")[4:]
    body = head + bytes(3 * MB)
    socks = [socket.create_connection((host, int(port)), timeout=60) for _ in range(16)]
    ports = {s.getsockname()[1] for s in socks}
    with PeakRss(proc.proc.pid) as mem:
        for s in socks:
            s.sendall(body)

        def all_read():
            queues = _broker_side_rx_queues(int(port), ports)
            return len(queues) == len(socks) and not any(queues)

        wait_for(all_read, 60, "the broker to read every byte sent")
    assert mem.growth < 16 * 5 * MB + 30 * MB, (mem.base, mem.peak)
    for s in socks:
        s.close()
    w = Wire(proc.bootstrap)
    create(w, "still-serving")
    w.close()


def _deleted_files_open(pid: int) -> int:
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").endswith(" (deleted)")
        except FileNotFoundError:
            pass  # closed while listed
    return count


def _open_on_broker_side(broker_port: int, client_port: int) -> bool:
    """Whether the broker has not closed its end of this connection."""
    return _broker_side(broker_port).get(client_port, ("",))[0] == "01"


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="needs /proc/net/tcp")
def test_a_client_that_never_reads_is_closed_when_idle(broker_process):
    """Kafka's idle timer counts socket I/O only: a client that sends
    Fetches and never reads their answers is closed after
    connections.max.idle.ms, which also lets go of the segment files those
    answers would have been sent from, though their topic was deleted."""
    from confluent_kafka.admin import AdminClient

    proc = broker_process({"num.partitions": str(PARTS), "connections.max.idle.ms": "1000"})
    w = Wire(proc.bootstrap)
    create(w, "data", "probe")
    fill(w, "data")
    sock = slow_reader(proc.bootstrap)
    n = 20
    sock.sendall(b"".join(fetch_frame("data", i) for i in range(n)))
    sock.sendall(encode_request(produce_request("probe", 0, [b"probe"], acks=0), 9, n, "flood"))
    wait_for(lambda: log_end(w, "probe") == 1, 60, "every fetch before the probe answered")
    w.close()
    admin = AdminClient({"bootstrap.servers": proc.bootstrap})
    assert admin.delete_topics(["data"])["data"].result(30) is None
    wait_for(
        lambda: not _open_on_broker_side(proc.port, sock.getsockname()[1]) and _deleted_files_open(proc.pid) == 0,
        30,
        "the never-reading connection closed and the deleted segments let go",
    )
    sock.close()
