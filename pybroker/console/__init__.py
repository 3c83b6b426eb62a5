"""The web console (``console.listener``, off by default, on with
``pybroker --dev``): a read-mostly view of the cluster in the browser —
brokers and controller, topics with partitions, leaders, ISR, offsets and
sizes, a message browser, consumer groups with members and lag, live
throughput — and three actions: create a topic, delete one, reset a
group's offsets (each confirmed first).

The page and its script are files of the package (``static/``), served by
the broker itself over the broker's HTTP/1.1 server (``pybroker.http_server``,
connections kept alive); nothing is loaded from anywhere else (every
answer says so to the browser: Content-Security-Policy ``default-src
'self'``, and ``Cache-Control: no-store``). The data comes from ``api``:
Kafka requests to the cluster, as any client.
"""

from __future__ import annotations

import logging
from importlib import resources

import trio

from ..http_server import HttpServer, Request, Response, open_listeners, url_host
from ..listeners import parse_http_url
from . import api

log = logging.getLogger("pybroker.console")

STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/app.css": ("app.css", "text/css; charset=utf-8"),
}

HEADERS = (
    # Everything the console shows comes from this server: the page may
    # load nothing from anywhere else.
    ("Content-Security-Policy", "default-src 'self'; img-src 'self' data:"),
    ("Cache-Control", "no-store"),
)


class ConsoleListenerError(Exception):
    """console.listener cannot be served: a bad value, or a bind that failed."""


def parse_listener(value: str) -> tuple[str, int]:
    example = "http://host:port, e.g. http://127.0.0.1:9021"
    try:
        host, port, path = parse_http_url("console.listener", value, example)
    except ValueError as exc:
        raise ConsoleListenerError(str(exc)) from None
    if path not in ("", "/"):
        raise ConsoleListenerError(f"console.listener {value!r}: the console is served at /; expected {example}")
    return host, port


class Console:
    def __init__(self, listeners: list):
        self.listeners = listeners
        self.bound = [ls.socket.getsockname()[:2] for ls in listeners]
        self.bootstrap: str | None = None  # set by attach, once the broker serves Kafka
        self._files = {path: resources.files(__package__).joinpath("static", name).read_bytes()
                       for path, (name, _) in STATIC.items()}
        self.http = HttpServer(self.handle, "console", log, headers=HEADERS)

    @classmethod
    async def open(cls, value: str | None) -> Console | None:
        if value is None or not value.strip():
            return None
        host, port = parse_listener(value)
        return cls(await open_listeners("console.listener", value, host, port, ConsoleListenerError))

    def attach(self, bootstrap: str) -> None:
        """Answer with the cluster reached at ``bootstrap`` from now on."""
        self.bootstrap = bootstrap
        host, port = self.bound[0]
        log.info("console at http://%s:%d/", url_host(host), port)

    async def serve(self) -> None:
        await self.http.serve(self.listeners)

    async def handle(self, request: Request) -> Response:
        if not request.path.startswith("/api/"):
            found = STATIC.get(request.path)
            if found is None:
                return Response(404, b"not found\n")
            if request.method not in ("GET", "HEAD"):
                return Response(405, b"method not allowed\n", headers=[("Allow", "GET, HEAD")])
            return Response(200, self._files[request.path], found[1])
        try:
            call = api.route(request)
        except LookupError:
            return Response.error(404, "NOT_FOUND", f"no such route: {request.method} {request.path}")
        except api.BadRequest as exc:
            return Response.error(400, "BAD_REQUEST", str(exc))
        if self.bootstrap is None:
            return Response.error(503, "STARTING", "the broker is starting")
        if request.method != "GET":
            log.info("console: %s %s", request.method, request.path)
        return await trio.to_thread.run_sync(api.answer, call, self.bootstrap)
