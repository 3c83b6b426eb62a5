"""The console's HTTP side without a browser: its answers to bad requests,
a bad or taken console.listener refused at start in one line, keep-alive
connections, and every other connection unharmed by a bad one."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys

import pytest

from pybroker.process import free_port
from pybroker.testing import running_broker


@pytest.fixture(scope="module")
def console():
    port = free_port()
    with running_broker({"console.listener": f"http://127.0.0.1:{port}"}, dev=True):
        yield port


def ask(port: int, method: str, path: str, body: bytes | None = None, conn=None):
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
    response = conn.getresponse()
    data = response.read()
    return response.status, response.getheader("Content-Type"), data


def test_static_files_and_their_policy(console):
    conn = http.client.HTTPConnection("127.0.0.1", console, timeout=30)
    for path, kind in (("/", "text/html"), ("/app.js", "text/javascript"), ("/app.css", "text/css")):
        status, content_type, data = ask(console, "GET", path, conn=conn)  # one kept-alive connection
        assert status == 200 and content_type.startswith(kind) and data
    conn.request("GET", "/")
    assert conn.getresponse().getheader("Content-Security-Policy") == "default-src 'self'; img-src 'self' data:"
    assert ask(console, "GET", "/elsewhere")[0] == 404
    assert ask(console, "POST", "/", b"{}")[0] == 405


@pytest.mark.parametrize(
    "method,path,body,status,error",
    [
        ("GET", "/api/nothing", None, 404, "NOT_FOUND"),
        ("POST", "/api/topics", b"not json", 400, "BAD_REQUEST"),
        ("POST", "/api/topics", b"[1]", 400, "BAD_REQUEST"),
        ("POST", "/api/topics", b'{"name": "x", "partitions": "two"}', 400, "BAD_REQUEST"),
        ("POST", "/api/topics", b'{"name": "bad name!"}', 409, "INVALID_TOPIC_EXCEPTION"),
        ("POST", "/api/topics", b'{"name": "zero", "partitions": 0}', 409, "INVALID_PARTITIONS"),
        ("GET", "/api/topics/absent/messages?partition=x", None, 400, "BAD_REQUEST"),
        ("GET", "/api/topics/absent", None, 404, "UNKNOWN_TOPIC_OR_PARTITION"),
        ("DELETE", "/api/topics/absent", None, 404, "UNKNOWN_TOPIC_OR_PARTITION"),
        ("POST", "/api/groups/g/reset", b'{"to": "somewhere"}', 400, "BAD_REQUEST"),
        ("POST", "/api/groups/g/reset", b'{"to": "offset"}', 400, "BAD_REQUEST"),
    ],
)
def test_bad_requests_get_kafkas_error_name(console, method, path, body, status, error):
    got, content_type, data = ask(console, method, path, body)
    assert (got, json.loads(data)["error"]) == (status, error), data
    assert content_type == "application/json"


def test_a_body_too_large_is_refused_and_others_carry_on(console):
    with socket.create_connection(("127.0.0.1", console), timeout=30) as s:
        s.sendall(b"POST /api/topics HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n" + b"{" * 1100000)
        assert s.recv(100).startswith(b"HTTP/1.1 413 ")
    with socket.create_connection(("127.0.0.1", console), timeout=30) as s:
        s.sendall(b"garbage that is not HTTP\r\n\r\n")
        s.recv(100)  # an answer or the connection closed: either way, nothing more
    assert ask(console, "GET", "/api/cluster")[0] == 200


@pytest.mark.parametrize("value", ["https://127.0.0.1:9021", "http://127.0.0.1", "127.0.0.1:9021", "http://h:1/x"])
def test_a_bad_console_listener_stops_the_broker_in_one_line(tmp_path, value):
    out = subprocess.run(
        [sys.executable, "-m", "pybroker", "--override", f"console.listener={value}", "--override",
         f"log.dirs={tmp_path}", "--override", f"listeners=PLAINTEXT://127.0.0.1:{free_port()}"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("pybroker: console.listener ")


def test_a_taken_console_port_names_the_address(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run(
            [sys.executable, "-m", "pybroker", "--override", f"console.listener=http://127.0.0.1:{port}",
             "--override", f"log.dirs={tmp_path}", "--override", f"listeners=PLAINTEXT://127.0.0.1:{free_port()}"],
            capture_output=True, text=True, timeout=60, check=False,
        )
    assert out.returncode == 1
    assert f"pybroker: cannot listen on http://127.0.0.1:{port} (console.listener)" in out.stderr
