"""The shared HTTP/1.1 server over memory streams: keep-alive, HEAD
without a body, the server's own answers (400, 413, 500), the site's
headers on every answer, ``Connection: close`` honoured."""

from __future__ import annotations

import json
import logging

import h11
import trio
import trio.testing

from pybroker.http_server import HttpServer, Request, Response

log = logging.getLogger("tests.http_server")


async def _echo(request: Request) -> Response:
    if request.path == "/fail":
        raise RuntimeError("on purpose")
    return Response.of_json({"method": request.method, "path": request.path, "query": request.query,
                             "body": request.body.decode()})


class Client:
    """h11's client side of one connection to ``server``."""

    def __init__(self, nursery, server: HttpServer):
        self.stream, theirs = trio.testing.memory_stream_pair()
        nursery.start_soon(server.serve_connection, theirs)
        self.conn = h11.Connection(h11.CLIENT)

    async def ask(self, method: str, target: str, body: bytes = b"") -> tuple[h11.Response, bytes]:
        headers = [("Host", "test"), ("Content-Length", str(len(body)))]
        data = self.conn.send(h11.Request(method=method, target=target, headers=headers))
        data += self.conn.send(h11.Data(data=body)) if body else b""
        await self.stream.send_all(data + self.conn.send(h11.EndOfMessage()))
        return await self.answer()

    async def answer(self) -> tuple[h11.Response, bytes]:
        head, body = None, b""
        with trio.fail_after(5):
            while True:
                event = self.conn.next_event()
                if event is h11.NEED_DATA:
                    self.conn.receive_data(await self.stream.receive_some(65536))
                elif isinstance(event, h11.Response):
                    head = event
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    return head, body

    async def closed(self) -> bool:
        with trio.fail_after(5):
            return await self.stream.receive_some(65536) == b""


def _headers(head: h11.Response) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in head.headers}


async def test_requests_on_one_kept_alive_connection(nursery):
    client = Client(nursery, HttpServer(_echo, "test", log, headers=(("X-Site", "yes"),)))
    head, body = await client.ask("GET", "/a?x=1&x=2")
    assert (head.status_code, head.reason) == (200, b"OK")
    assert json.loads(body) == {"method": "GET", "path": "/a", "query": {"x": "2"}, "body": ""}
    assert _headers(head)["x-site"] == "yes"
    client.conn.start_next_cycle()
    head, body = await client.ask("POST", "/b", b"payload")
    assert json.loads(body)["body"] == "payload"


async def test_head_gets_the_headers_of_get_and_no_body(nursery):
    async def page(request: Request) -> Response:
        return Response(200, b"the same page for both")

    client = Client(nursery, HttpServer(page, "test", log))
    get_head, get_body = await client.ask("GET", "/x")
    client.conn.start_next_cycle()
    head, body = await client.ask("HEAD", "/x")
    assert head.status_code == 200 and body == b"" and get_body
    assert _headers(head) == _headers(get_head)
    client.conn.start_next_cycle()
    assert (await client.ask("GET", "/x"))[1] == get_body  # the connection carries on


async def test_what_is_not_http_gets_400_and_the_connection_closes(nursery):
    client = Client(nursery, HttpServer(_echo, "test", log, headers=(("X-Site", "yes"),)))
    await client.stream.send_all(b"not http at all\r\n\r\n")
    data = b""
    while chunk := await client.stream.receive_some(65536):
        data += chunk
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"x-site: yes" in data.lower()
    assert json.loads(data.split(b"\r\n\r\n", 1)[1])["error"] == "BAD_REQUEST"


async def test_a_head_too_long_gets_431(nursery):
    client = Client(nursery, HttpServer(_echo, "test", log, max_head=100))
    await client.stream.send_all(b"GET /" + b"x" * 200 + b" HTTP/1.1\r\n")
    assert (await client.stream.receive_some(65536)).startswith(b"HTTP/1.1 431 ")


async def test_a_body_too_large_gets_413_and_the_connection_closes(nursery):
    client = Client(nursery, HttpServer(_echo, "test", log, max_body=10))
    head, body = await client.ask("POST", "/", b"x" * 11)
    assert head.status_code == 413 and json.loads(body)["error"] == "REQUEST_TOO_LARGE"
    assert await client.closed()


async def test_a_failing_handler_costs_its_request_a_500(nursery, caplog):
    client = Client(nursery, HttpServer(_echo, "test", log))
    head, body = await client.ask("GET", "/fail")
    assert head.status_code == 500 and json.loads(body)["error"] == "INTERNAL"
    assert "test request GET /fail failed" in caplog.text
    client.conn.start_next_cycle()
    assert (await client.ask("GET", "/ok"))[0].status_code == 200


async def test_connection_close_in_the_answers_closes_after_one(nursery):
    client = Client(nursery, HttpServer(_echo, "test", log, headers=(("Connection", "close"),)))
    head, _ = await client.ask("GET", "/")
    assert head.status_code == 200 and _headers(head)["connection"] == "close"
    assert await client.closed()


async def test_an_idle_connection_is_closed_after_the_timeout(nursery, autojump_clock):
    client = Client(nursery, HttpServer(_echo, "test", log, timeout_s=3))
    await client.stream.send_all(b"GET / HTTP/1.1\r\n")  # and never the rest
    assert await client.closed()
