"""The console's HTTP/1.1 server: h11 on Trio sockets, in the broker's
nursery.

h11 is the protocol alone (parsing and framing, bodies, keep-alive) with
no I/O and no dependencies, so the server stays a page of code on the
broker's own event loop; a web framework would bring an ASGI server and
a second way of running tasks for a dozen routes. Each connection has its
own task; every request must arrive within ``TIMEOUT_S``, and a request
body is bounded by ``MAX_BODY``.

``handle(request)`` answers each request with a ``Response``; an
exception in it is logged with its traceback and costs that request a
500, never the connection's neighbours.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import h11
import trio

log = logging.getLogger("pybroker.console")

TIMEOUT_S = 30.0
MAX_BODY = 1 << 20
MAX_HEAD = 16384


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""

    def json(self):
        return json.loads(self.body or b"{}")


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def of_json(cls, data, status: int = 200) -> Response:
        return cls(status, json.dumps(data).encode(), "application/json")

    @classmethod
    def error(cls, status: int, name: str, message: str) -> Response:
        return cls.of_json({"error": name, "message": message}, status)


async def serve_connection(stream: trio.SocketStream, handle) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
    try:
        while True:
            with trio.move_on_after(TIMEOUT_S) as idle:
                request = await _read_request(stream, conn)
            if idle.cancelled_caught or request is None:
                return
            if isinstance(request, Response):  # refused before its end: answered, then closed
                await _send(stream, conn, request)
                return
            try:
                response = await handle(request)
            except Exception:
                log.exception("console request %s %s failed", request.method, request.path)
                response = Response.error(500, "INTERNAL", "the request failed; see the broker's log")
            await _send(stream, conn, response)
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()
    except (h11.RemoteProtocolError, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    except Exception:
        # Ours to fix, and this connection's alone: the broker and the
        # other connections carry on.
        log.exception("console connection failed")
    finally:
        await trio.aclose_forcefully(stream)


async def _read_request(stream, conn: h11.Connection) -> Request | Response | None:
    head = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(65536)
            conn.receive_data(data)
            continue
        if isinstance(event, h11.Request):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > MAX_BODY:
                return Response.error(413, "REQUEST_TOO_LARGE", f"bodies are limited to {MAX_BODY} bytes")
        elif isinstance(event, h11.EndOfMessage):
            break
        elif isinstance(event, h11.ConnectionClosed):
            return None
    target = urlsplit(head.target.decode("ascii", "replace"))
    query = {k: v[-1] for k, v in parse_qs(target.query).items()}
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in head.headers}
    return Request(head.method.decode("ascii"), target.path, query, headers, bytes(body))


async def _send(stream, conn: h11.Connection, response: Response) -> None:
    headers = [
        ("Content-Type", response.content_type),
        ("Content-Length", str(len(response.body))),
        # Everything the console shows comes from this server: the page may
        # load nothing from anywhere else.
        ("Content-Security-Policy", "default-src 'self'; img-src 'self' data:"),
        ("Cache-Control", "no-store"),
        *response.headers,
    ]
    data = conn.send(h11.Response(status_code=response.status, headers=headers))
    data += conn.send(h11.Data(data=response.body)) or b""
    data += conn.send(h11.EndOfMessage()) or b""
    await stream.send_all(data)
