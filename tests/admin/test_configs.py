"""``pybroker configs describe|alter`` for topics and brokers."""

from __future__ import annotations

from .conftest import cli, unique


def test_topic_configs(broker, run):
    bs = ("--bootstrap-server", broker.bootstrap_servers)
    topic = unique("cfg")
    assert run("topics", "create", "--topic", topic, *bs).code == 0
    entity = ("--entity-type", "topics", "--entity-name", topic)
    altered = cli("configs", "alter", *entity, "--add-config", "retention.ms=1234,cleanup.policy=[compact,delete]", *bs)
    assert (altered.code, altered.out) == (0, f"Completed updating config for topic {topic}.\n"), altered.err
    own = run("configs", "describe", *entity, "--json", *bs).json()["entities"][topic]
    assert {(c["name"], c["value"], c["source"]) for c in own} == {
        ("retention.ms", "1234", "DYNAMIC_TOPIC_CONFIG"), ("cleanup.policy", "compact,delete", "DYNAMIC_TOPIC_CONFIG")}
    everything = run("configs", "describe", *entity, "--all", "--json", *bs).json()["entities"][topic]
    assert len(everything) > 10 and "segment.bytes" in {c["name"] for c in everything}

    assert run("configs", "alter", *entity, "--delete-config", "retention.ms", *bs).code == 0
    text = run("configs", "describe", *entity, *bs).out
    assert text.splitlines()[0] == f"Dynamic configs for topic {topic} are:"
    assert "cleanup.policy" in text and "retention.ms" not in text

    unknown = run("configs", "alter", *entity, "--add-config", "no.such.key=1", *bs)
    assert unknown.code == 1 and unknown.err.startswith("pybroker: INVALID_CONFIG: ")
    missing = run("configs", "describe", "--entity-type", "topics", "--entity-name", unique("none"), *bs)
    assert missing.code == 1 and missing.err.startswith("pybroker: UNKNOWN_TOPIC_OR_PARTITION: ")


def test_broker_configs(broker, run):
    bs = ("--bootstrap-server", broker.bootstrap_servers)
    entity = ("--entity-type", "brokers", "--entity-name", "1")
    own = {c["name"]: c for c in run("configs", "describe", *entity, "--json", *bs).json()["entities"]["1"]}
    assert own["group.initial.rebalance.delay.ms"]["value"] == "0"
    assert own["group.initial.rebalance.delay.ms"]["source"] == "STATIC_BROKER_CONFIG"
    all_brokers = run("configs", "describe", "--entity-type", "brokers", "--json", *bs).json()["entities"]
    assert list(all_brokers) == ["1"]
    refused = run("configs", "alter", *entity, "--add-config", "log.cleaner.threads=2", *bs)
    assert refused.code == 1 and refused.err.startswith("pybroker: INVALID_REQUEST: ")
    assert cli("configs", "describe", "--entity-type", "ips", *bs).code == 2
    nothing = run("configs", "alter", *entity, *bs)
    assert nothing.code == 1 and "nothing to alter" in nothing.err
