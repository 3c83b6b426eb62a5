"""The Prometheus endpoint: ``metrics.listener`` (``http://host:port``,
optionally with the path to serve, ``/metrics`` by default).

A small HTTP/1.1 server on Trio sockets in the broker's nursery: one
request per connection (``Connection: close``), GET or HEAD of the path
answered with the registry in Prometheus's text format 0.0.4, 404 for
any other path, 405 for another method, 400 for what is not HTTP. Each
connection has its own task, bounded by ``TIMEOUT_S`` for reading the
request and sending the answer, and a request head by ``MAX_HEAD``. No
HTTP library beyond prometheus-client's exposition is needed for that,
so none is added.

The sockets are bound when the broker starts, before it joins a cluster
or opens its logs, so a bad value or a taken port stops it at once with
one line (``MetricsListenerError``; the broker reports it as a listener
error). Until the services exist (``attach``) a scrape gets 503. The
registry is private to the broker: several brokers may run in one process.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import trio

from ..listeners import parse_http_url

log = logging.getLogger("pybroker.metrics")

TIMEOUT_S = 10.0
MAX_HEAD = 8192
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


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

    @classmethod
    async def open(cls, value: str | None) -> MetricsEndpoint | None:
        """Bind ``value`` (metrics.listener); None when it is unset or empty."""
        if value is None or not value.strip():
            return None
        host, port, path = parse_listener(value)
        try:
            listeners = await trio.open_tcp_listeners(port, host=host)
        except OSError as exc:
            raise MetricsListenerError(
                f"cannot listen on {value.strip()} (metrics.listener): {exc.strerror or exc}"
            ) from None
        return cls(listeners, path, value.strip())

    def attach(self, **services) -> None:
        """Serve the broker's metrics from now on, read from ``services``
        (collector.BrokerCollector's arguments)."""
        from .collector import BrokerCollector

        self.registry.register(BrokerCollector(**services))
        self.attached = True
        host, port = self.bound[0]
        log.info("metrics at http://%s:%d%s", f"[{host}]" if ":" in host else host, port, self.path)

    async def serve(self) -> None:
        """Answer scrapes until cancelled; the sockets close on the way out."""
        try:
            await trio.serve_listeners(self._answer, self.listeners)
        finally:
            for listener in self.listeners:
                await trio.aclose_forcefully(listener)

    async def _answer(self, stream) -> None:
        try:
            with trio.fail_after(TIMEOUT_S):
                head = await _read_head(stream)
                await stream.send_all(self._response(head))
        except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        except Exception:
            log.exception("metrics request failed")
        finally:
            await trio.aclose_forcefully(stream)

    def _response(self, head: bytes | None) -> bytes:
        if head is None:
            return _http(400, b"bad request\n")
        try:
            method, target, version = head.split(b"\r\n", 1)[0].decode("ascii").split(" ")
        except (UnicodeDecodeError, ValueError):
            return _http(400, b"bad request\n")
        if not version.startswith("HTTP/1."):
            return _http(400, b"bad request\n")
        if urlsplit(target).path != self.path:
            return _http(404, b"not found: the metrics are at " + self.path.encode() + b"\n")
        if method not in ("GET", "HEAD"):
            return _http(405, b"method not allowed\n", [("Allow", "GET, HEAD")])
        if not self.attached:
            return _http(503, b"the broker is starting\n")
        from prometheus_client.exposition import generate_latest

        body = generate_latest(self.registry)
        return _http(200, body, [("Content-Type", CONTENT_TYPE)], head_only=method == "HEAD")


async def _read_head(stream) -> bytes | None:
    """The request line and headers; None if the client sent more than
    MAX_HEAD bytes of them or closed before their end."""
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > MAX_HEAD:
            return None
        chunk = await stream.receive_some(4096)
        if not chunk:
            return None
        data += chunk
    return data.split(b"\r\n\r\n", 1)[0]


def _http(status: int, body: bytes, headers=(), head_only: bool = False) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS[status]}"]
    if not any(name == "Content-Type" for name, _ in headers):
        lines.append("Content-Type: text/plain; charset=utf-8")
    lines += [f"{name}: {value}" for name, value in headers]
    lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
    return "\r\n".join(lines).encode("ascii") + (b"" if head_only else body)
