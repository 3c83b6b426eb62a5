"""metrics.listener: what values are served, what is refused at start and
how, and what the endpoint answers besides the metrics."""

import socket
import subprocess
import sys

import pytest

from pybroker.broker import ListenerError
from pybroker.metrics.endpoint import MetricsListenerError, parse_listener
from pybroker.process import free_port
from pybroker.testing import running_broker

from .scrape import scrape, status_of


@pytest.mark.parametrize(
    "value, expected",
    [
        ("http://127.0.0.1:9404", ("127.0.0.1", 9404, "/metrics")),
        ("http://127.0.0.1:9404/", ("127.0.0.1", 9404, "/metrics")),
        ("http://localhost:9404/prom", ("localhost", 9404, "/prom")),
        ("http://[::1]:0", ("::1", 0, "/metrics")),
    ],
)
def test_listener_values(value, expected):
    assert parse_listener(value) == expected


@pytest.mark.parametrize(
    "value, why",
    [
        ("127.0.0.1:9404", "only http"),
        ("https://127.0.0.1:9404", "only http"),
        ("http://127.0.0.1", "a host and a port"),
        ("http://:9404", "a host and a port"),
        ("http://127.0.0.1:99999", "out of range"),
        ("http://127.0.0.1:abc", "metrics.listener"),
        ("http://127.0.0.1:9404/?x=1", "no query"),
    ],
)
def test_bad_listener_values_say_what_is_wrong(value, why):
    with pytest.raises(MetricsListenerError, match=why) as info:
        parse_listener(value)
    assert "\n" not in str(info.value) and value in str(info.value)


def _start_error(props) -> BaseException:
    """The one error a broker that fails to start raised (out of Trio's exception groups)."""
    with pytest.raises(RuntimeError) as info, running_broker(props):
        pass
    error = info.value.__cause__
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def test_a_bad_value_stops_the_broker_at_start():
    error = _start_error({"metrics.listener": "tcp://127.0.0.1:9404"})
    assert isinstance(error, ListenerError)
    assert "metrics.listener" in str(error) and "only http" in str(error)


def test_a_taken_port_names_the_address():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        error = _start_error({"metrics.listener": f"http://127.0.0.1:{port}"})
    assert isinstance(error, ListenerError)
    assert f"http://127.0.0.1:{port}" in str(error) and "in use" in str(error)


def test_the_command_line_refuses_it_with_one_line(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pybroker",
            "--override",
            "listeners=PLAINTEXT://127.0.0.1:0",
            "--override",
            f"log.dirs={tmp_path / 'data'}",
            "--override",
            "metrics.listener=http://127.0.0.1",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "metrics.listener" in lines[0] and "a host and a port" in lines[0]


def test_off_by_default_and_answers_only_its_path():
    port = free_port()
    with running_broker() as plain:
        assert plain.broker.config["metrics.listener"] is None
    with running_broker({"metrics.listener": f"http://127.0.0.1:{port}"}):
        base = f"http://127.0.0.1:{port}"
        assert scrape(base + "/metrics").value("kafka_server_socketservermetrics_connection_count") is not None
        assert scrape(base + "/metrics?x=1").value("kafka_controller_kafkacontroller_activecontrollercount") == 1
        assert status_of(base + "/") == 404
        assert status_of(base + "/other") == 404
        assert status_of(base + "/metrics", "POST") == 405
        assert status_of(base + "/metrics", "HEAD") == 200
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"not http at all\r\n\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.1 400 ")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
