"""Configuration and the command line, as a user meets them."""

import socket
import subprocess
import sys

import pytest

from pybroker.config import BrokerConfig, ConfigError, read_properties


def run_cli(*args, timeout=30):
    return subprocess.run([sys.executable, "-m", "pybroker", *args], capture_output=True, text=True, timeout=timeout)


def test_defaults_are_kafkas_and_the_issue_s():
    cfg = BrokerConfig()
    assert [(lst.name, lst.host, lst.port) for lst in cfg.listeners] == [("PLAINTEXT", "127.0.0.1", 9092)]
    assert [str(d) for d in cfg.log_dirs] == ["pybroker-data"]
    assert cfg["num.partitions"] == 1 and cfg["auto.create.topics.enable"] is True and cfg.node_id == 1
    assert cfg.log_config.retention_ms == 168 * 3600 * 1000
    assert cfg.log_config.segment_bytes == 1 << 30


def test_broker_log_defaults_become_topic_defaults():
    cfg = BrokerConfig({"log.retention.minutes": "5", "log.segment.bytes": "1048576", "message.max.bytes": "2000"})
    assert cfg.log_config.retention_ms == 300000
    assert cfg.log_config.segment_bytes == 1048576
    assert cfg.log_config.max_message_bytes == 2000
    assert BrokerConfig({"log.retention.ms": "7", "log.retention.hours": "1"}).log_config.retention_ms == 7


@pytest.mark.parametrize(
    "props,key",
    [
        ({"no.such.thing": "1"}, "no.such.thing"),
        ({"num.partitions": "many"}, "num.partitions"),
        ({"num.partitions": "0"}, "num.partitions"),
        ({"auto.create.topics.enable": "yes"}, "auto.create.topics.enable"),
        ({"listeners": "127.0.0.1:9092"}, "listeners"),
        ({"log.segment.bytes": "3"}, "segment.bytes"),
    ],
)
def test_bad_properties_name_the_key(props, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        BrokerConfig(props)


def test_file_environment_and_overrides_in_order(tmp_path):
    path = tmp_path / "server.properties"
    path.write_text("# comment\nnum.partitions=3\nlog.dirs = /a,/b\n! other comment\nnode.id: 7\n")
    assert read_properties(path)["node.id"] == "7"
    cfg = BrokerConfig.load(path, ["num.partitions=5"], environ={"PYBROKER_LOG_DIRS": "/env"})
    assert cfg["num.partitions"] == 5 and cfg.node_id == 7
    assert [str(d) for d in cfg.log_dirs] == ["/env"]
    # Other tools' PYBROKER_ variables name no property: not read.
    assert BrokerConfig.load(None, [], environ={"PYBROKER_NO_SUCH": "1", "PYBROKER_BENCH_PEERS": "/x"})
    with pytest.raises(ConfigError, match="PYBROKER_NUM_PARTITIONS"):
        BrokerConfig.load(None, [], environ={"PYBROKER_NUM_PARTITIONS": "0"})


def test_cli_version_and_help():
    out = run_cli("--version")
    assert out.returncode == 0 and out.stdout.startswith("pybroker ")
    help_text = run_cli("--help").stdout
    for key in ("listeners", "log.dirs", "num.partitions", "auto.create.topics.enable", "--override"):
        assert key in help_text


def test_cli_rejects_a_bad_property_clearly():
    out = run_cli("--override", "log.dirz=/tmp/x")
    assert out.returncode == 2
    assert "log.dirz" in out.stderr and "Traceback" not in out.stderr


def test_cli_reports_a_busy_port(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = run_cli("--override", f"listeners=PLAINTEXT://127.0.0.1:{port}", "--override", f"log.dirs={tmp_path}")
    assert out.returncode == 1
    assert "Traceback" not in out.stderr and "pybroker:" in out.stderr
