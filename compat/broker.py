"""A fresh pybroker in a child process, and topic creation through our own codec.

The runner does not lean on any client under test to set things up: topics
are created with a CreateTopics request encoded by ``protocol/``.
"""

from __future__ import annotations

from pathlib import Path

from pybroker.protocol.messages.create_topics_request import CreatableTopic, CreatableTopicConfig, CreateTopicsRequest
from pybroker.process import BrokerProcess, pybroker_process, request

BROKER_PROPS = {
    "auto.create.topics.enable": "false",  # so that the error scenario has a topic that cannot appear
    "group.initial.rebalance.delay.ms": "0",  # as in Kafka's own dev/test setups; saves 3 s per join
}


def child_broker(data_dir: Path, log_path: Path) -> BrokerProcess:
    log_path.unlink(missing_ok=True)  # this run's log only; restarts within the run append to it
    return pybroker_process(data_dir, BROKER_PROPS, log_path=log_path)


def create_topic(bootstrap: str, name: str, partitions: int = 1, configs: dict | None = None) -> None:
    """Create a topic with CreateTopics v5; raise on any error code."""
    topic = CreatableTopic(
        name=name,
        num_partitions=partitions,
        replication_factor=1,
        configs=[CreatableTopicConfig(name=k, value=v) for k, v in (configs or {}).items()],
    )
    body = CreateTopicsRequest(topics=[topic], timeout_ms=10000)
    response = request(bootstrap, body, 5, client_id="compat-runner")
    for result in response.topics:
        if result.error_code:
            raise RuntimeError(f"CreateTopics {name}: error {result.error_code} {result.error_message}")
