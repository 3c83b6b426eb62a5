"""The Prometheus endpoint: ``metrics.listener`` (``http://host:port``,
optionally with the path to serve, ``/metrics`` by default).

Served by the broker's HTTP/1.1 server (``pybroker.http_server``) in its
nursery, with ``handle`` answering: one request per connection
(``Connection: close``), GET or HEAD of the path answered with the
registry in Prometheus's text format 0.0.4 (HEAD: the headers alone),
404 naming the path for any other path, 405 with ``Allow`` for another
method. What is not HTTP gets the server's own 400 (431 for a head over
``MAX_HEAD``). Each connection has its own task, bounded by ``TIMEOUT_S``
for reading the request and again for sending the answer.

The sockets are bound when the broker starts, before it joins a cluster
or opens its logs, so a bad value or a taken port stops it at once with
one line (``MetricsListenerError``; the broker reports it as a listener
error). Until the services exist (``attach``) a scrape gets 503. The
registry is private to the broker: several brokers may run in one process.
"""

from __future__ import annotations

import logging

from ..http_server import HttpServer, Request, Response, open_listeners, url_host
from ..listeners import parse_http_url

log = logging.getLogger("pybroker.metrics")

TIMEOUT_S = 10.0
MAX_HEAD = 8192
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class MetricsListenerError(Exception):
    """metrics.listener cannot be served: a bad value, or a bind that failed."""


def parse_listener(value: str) -> tuple[str, int, str]:
    """(host, port, path) of a metrics.listener value; MetricsListenerError
    saying what is wrong with it."""
    try:
        host, port, path = parse_http_url("metrics.listener", value, "http://host:port, e.g. http://127.0.0.1:9404")
    except ValueError as exc:
        raise MetricsListenerError(str(exc)) from None
    return host, port, path if path not in ("", "/") else "/metrics"


class MetricsEndpoint:
    def __init__(self, listeners: list, path: str, url: str):
        from prometheus_client.registry import CollectorRegistry

        self.listeners = listeners
        self.path = path
        self.url = url
        self.registry = CollectorRegistry(auto_describe=False)
        self.attached = False
        # (host, port) of each bound socket: the real port when 0 was asked for.
        self.bound = [ls.socket.getsockname()[:2] for ls in listeners]
        # Prometheus scrapes seldom: a connection is not kept for the next one.
        self.http = HttpServer(
            self.handle, "metrics", log, headers=(("Connection", "close"),), timeout_s=TIMEOUT_S, max_head=MAX_HEAD
        )

    @classmethod
    async def open(cls, value: str | None) -> MetricsEndpoint | None:
        """Bind ``value`` (metrics.listener); None when it is unset or empty."""
        if value is None or not value.strip():
            return None
        host, port, path = parse_listener(value)
        listeners = await open_listeners("metrics.listener", value, host, port, MetricsListenerError)
        return cls(listeners, path, value.strip())

    def attach(self, **services) -> None:
        """Serve the broker's metrics from now on, read from ``services``
        (collector.BrokerCollector's arguments)."""
        from .collector import BrokerCollector

        self.registry.register(BrokerCollector(**services))
        self.attached = True
        host, port = self.bound[0]
        log.info("metrics at http://%s:%d%s", url_host(host), port, self.path)

    async def serve(self) -> None:
        """Answer scrapes until cancelled; the sockets close on the way out."""
        await self.http.serve(self.listeners)

    async def handle(self, request: Request) -> Response:
        if request.path != self.path:
            return Response(404, f"not found: the metrics are at {self.path}\n".encode())
        if request.method not in ("GET", "HEAD"):
            return Response(405, b"method not allowed\n", headers=[("Allow", "GET, HEAD")])
        if not self.attached:
            return Response(503, b"the broker is starting\n")
        from prometheus_client.exposition import generate_latest

        return Response(200, generate_latest(self.registry), CONTENT_TYPE)
