"""The broker's HTTP/1.1 server, for the web console (``console.listener``)
and the Prometheus endpoint (``metrics.listener``): h11 on Trio sockets,
in the broker's nursery.

h11 is the protocol alone (parsing and framing, bodies, keep-alive) with
no I/O and no dependencies, so the server stays a page of code on the
broker's own event loop; a web framework would bring an ASGI server and
a second way of running tasks for a dozen routes.

An ``HttpServer`` is a ``handle(request)`` coroutine answering each
``Request`` with a ``Response``, plus the settings its site wants: a name
and a logger for its log lines, headers for every answer, and bounds.
Each connection has its own task. A request's head and body must arrive
within ``timeout_s`` (a connection idle that long is closed) and an
answer must be taken within ``timeout_s``; a head is bounded by
``max_head`` bytes and a body by ``max_body``. Connections are kept
alive between requests unless the client or the answer's headers
(``Connection: close``) say otherwise.

The server answers some requests itself, in the JSON of
``Response.error``, and then closes the connection: what is not HTTP
gets 400 (431 for a head over ``max_head``), a body over ``max_body``
413. An exception in ``handle`` is logged with its traceback and costs
that request a 500, never the connection's neighbours. The answer to a
HEAD request carries the headers a GET would get, and no body.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

import h11
import trio

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


@dataclass(frozen=True)
class HttpServer:
    handle: Callable[[Request], Awaitable[Response]]
    name: str  # starts its log lines: "<name> request GET / failed"
    log: logging.Logger
    headers: tuple[tuple[str, str], ...] = ()  # on every answer, the server's own ones too
    timeout_s: float = TIMEOUT_S
    max_head: int = MAX_HEAD
    max_body: int = MAX_BODY

    async def serve(self, listeners: list) -> None:
        """Answer on ``listeners`` until cancelled; they close on the way out."""
        try:
            await trio.serve_listeners(self.serve_connection, listeners)
        finally:
            for listener in listeners:
                await trio.aclose_forcefully(listener)

    async def serve_connection(self, stream: trio.abc.Stream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.max_head)
        try:
            while True:
                try:
                    with trio.move_on_after(self.timeout_s) as idle:
                        request = await self._read_request(stream, conn)
                except _Refused as refused:  # answered, then closed: the rest of it is not read
                    if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                        await self._send(stream, conn, refused.response, refused.head_only)
                    return
                if idle.cancelled_caught or request is None:
                    return
                try:
                    response = await self.handle(request)
                except Exception:
                    self.log.exception("%s request %s %s failed", self.name, request.method, request.path)
                    response = Response.error(500, "INTERNAL", "the request failed; see the broker's log")
                if not await self._send(stream, conn, response, head_only=request.method == "HEAD"):
                    return
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        except Exception:
            # Ours to fix, and this connection's alone: the broker and the
            # other connections carry on.
            self.log.exception("%s connection failed", self.name)
        finally:
            await trio.aclose_forcefully(stream)

    async def _read_request(self, stream, conn: h11.Connection) -> Request | None:
        """The next request; None when the client closed between requests;
        _Refused when it is answered before its end."""
        head = None
        body = bytearray()
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                # h11 still lets the server answer a request it could not read.
                status = HTTPStatus(exc.error_status_hint)
                raise _Refused(Response.error(status.value, status.name, str(exc))) from None
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
                continue
            if isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > self.max_body:
                    too_large = Response.error(413, "REQUEST_TOO_LARGE", f"bodies are limited to {self.max_body} bytes")
                    raise _Refused(too_large, head_only=head.method == b"HEAD")
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                return None
        target = urlsplit(head.target.decode("ascii", "replace"))
        query = {k: v[-1] for k, v in parse_qs(target.query).items()}
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in head.headers}
        return Request(head.method.decode("ascii"), target.path, query, headers, bytes(body))

    async def _send(self, stream, conn: h11.Connection, response: Response, head_only: bool = False) -> bool:
        """Send ``response`` (its headers alone for a HEAD request: h11
        refuses a body there); False if the client did not take it in time."""
        headers = [
            ("Content-Type", response.content_type),
            ("Content-Length", str(len(response.body))),
            *self.headers,
            *response.headers,
        ]
        data = conn.send(h11.Response(status_code=response.status, headers=headers, reason=_reason(response.status)))
        if not head_only:
            data += conn.send(h11.Data(data=response.body)) or b""
        data += conn.send(h11.EndOfMessage()) or b""
        with trio.move_on_after(self.timeout_s) as late:
            await stream.send_all(data)
        return not late.cancelled_caught


async def open_listeners(setting: str, value: str, host: str, port: int, error: type[Exception]) -> list:
    """Bind ``value`` of the property ``setting`` (its ``host`` and ``port``)
    now, so that a taken port stops the broker at its start: ``error``
    saying which property could not be served, and why."""
    try:
        return await trio.open_tcp_listeners(port, host=host)
    except OSError as exc:
        raise error(f"cannot listen on {value.strip()} ({setting}): {exc.strerror or exc}") from None


def url_host(host: str) -> str:
    """``host`` as a URL writes it: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host


class _Refused(Exception):
    """A request answered before its end (``response``): not HTTP, or too large."""

    def __init__(self, response: Response, head_only: bool = False):
        super().__init__(response.status)
        self.response = response
        self.head_only = head_only


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:  # a status of the handler's own: a reason is optional
        return b""
