"""What a broker knows again after a restart, checked on its state."""

from pybroker.broker import Broker
from pybroker.config import BrokerConfig


def make_broker(path):
    return Broker(BrokerConfig({"log.dirs": str(path), "listeners": "PLAINTEXT://127.0.0.1:0"}))


def test_topic_configs_apply_after_a_restart(tmp_path):
    broker = make_broker(tmp_path)
    broker.topics.create_topic("c", 1, {"cleanup.policy": "compact", "segment.bytes": "65536"})
    broker.logs.close()
    again = make_broker(tmp_path)
    cfg = again.replicas.partition("c", 0).log.config
    assert cfg.compact and cfg.segment_bytes == 65536
    again.logs.close()
