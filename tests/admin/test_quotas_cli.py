"""``pybroker configs describe|alter --entity-type users|clients``: client
quotas as kafka-configs.sh sets them, a user's client id as two entity
types, defaults with --entity-default."""

from __future__ import annotations

from .conftest import unique


def test_client_quotas(broker, run):
    bs = ("--bootstrap-server", broker.bootstrap_servers)
    user, client = unique("user"), unique("client")
    pair = ("--entity-type", "users", "--entity-name", user, "--entity-type", "clients", "--entity-default")
    altered = run("configs", "alter", *pair, "--add-config", "producer_byte_rate=1024,request_percentage=50", *bs)
    assert (altered.code, altered.out) == (
        0, f"Completed updating config for user-principal '{user}', client-id <default>.\n"), altered.err
    one = ("--entity-type", "clients", "--entity-name", client)
    assert run("configs", "alter", *one, "--add-config", "consumer_byte_rate=2048", *bs).code == 0

    text = run("configs", "describe", "--entity-type", "users", "--entity-name", user, "--entity-type", "clients",
               *bs).out
    assert text == (f"Quota configs for user-principal '{user}', client-id <default> are "
                    "producer_byte_rate=1024.0, request_percentage=50.0\n")
    found = run("configs", "describe", *one, "--json", *bs).json()
    assert found == [{"entity": [{"type": "client-id", "name": client}], "quotas": {"consumer_byte_rate": 2048.0}}]
    # A strict filter: the user+client entity is not a client-id entity.
    every_client = run("configs", "describe", "--entity-type", "clients", "--json", *bs).json()
    assert all(len(f["entity"]) == 1 for f in every_client)

    refused = run("configs", "alter", *one, "--add-config", "no_such_quota=1", *bs)
    assert refused.code == 1 and refused.err.startswith("pybroker: INVALID_REQUEST: Invalid configuration key")
    assert run("configs", "alter", *one, "--delete-config", "consumer_byte_rate", *bs).code == 0
    assert run("configs", "describe", *one, "--json", *bs).json() == []
    # Topics still take one entity type.
    mixed = run("configs", "describe", "--entity-type", "topics", "--entity-type", "users", *bs)
    assert mixed.code == 1
