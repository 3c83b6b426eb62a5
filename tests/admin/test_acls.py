"""``pybroker acls list|add|remove`` against a broker with the authorizer
on; the CLI connects over PLAINTEXT as User:ANONYMOUS, a super user here."""

from __future__ import annotations

import pytest

from pybroker.testing import running_broker

from .conftest import DEV, cli, unique

AUTHORIZER = {**DEV, "authorizer.class.name": "kafka.security.authorizer.AclAuthorizer",
              "super.users": "User:ANONYMOUS"}


@pytest.fixture(scope="module")
def secured():
    with running_broker(AUTHORIZER) as b:
        yield b


def test_add_list_and_remove(secured, run):
    server = ["--bootstrap-server", secured.bootstrap_servers]
    topic, prefix = unique("cli"), unique("pre")
    added = run("acls", "add", *server, "--allow-principal", "User:alice", "--allow-principal", "User:bob",
                "--operation", "Read", "--operation", "describe", "--topic", topic)
    assert added.code == 0 and added.out.strip() == "Added 4 ACLs.", added.err
    assert run("acls", "add", *server, "--deny-principal", "User:mallory", "--deny-host", "10.0.0.9",
               "--group", prefix, "--resource-pattern-type", "prefixed").code == 0
    listed = run("acls", "list", *server, "--topic", topic, "--json").json()
    assert sorted((r["principal"], r["operation"], r["permission"]) for r in listed) == [
        ("User:alice", "DESCRIBE", "ALLOW"), ("User:alice", "READ", "ALLOW"),
        ("User:bob", "DESCRIBE", "ALLOW"), ("User:bob", "READ", "ALLOW")]
    text = run("acls", "list", *server, "--group", prefix, "--resource-pattern-type", "prefixed").out
    assert f"Current ACLs for resource `ResourcePattern(resourceType=GROUP, name={prefix}, patternType=PREFIXED)`:" \
        in text
    assert "\t(principal=User:mallory, host=10.0.0.9, operation=ALL, permissionType=DENY)" in text
    only_bob = run("acls", "list", *server, "--principal", "User:bob", "--json").json()
    assert {r["principal"] for r in only_bob} == {"User:bob"}
    removed = run("acls", "remove", *server, "--allow-principal", "User:bob", "--operation", "Read", "--topic", topic)
    assert removed.out.strip() == "Removed 1 ACLs."
    # Without principals: every ACL of the resource.
    assert run("acls", "remove", *server, "--topic", topic, "--force").out.strip() == "Removed 3 ACLs."
    assert run("acls", "list", *server, "--topic", topic, "--json").json() == []


def test_errors_are_one_line(secured, broker, run):
    server = ["--bootstrap-server", secured.bootstrap_servers]
    bad = run("acls", "add", *server, "--allow-principal", "alice", "--topic", "t")
    assert bad.code == 1 and bad.err.startswith("pybroker: INVALID_REQUEST: ")
    assert run("acls", "add", *server, "--allow-principal", "User:a").err.startswith("pybroker: INVALID_REQUEST")
    cluster_named = run("acls", "add", *server, "--allow-principal", "User:a", "--cluster", "--operation", "Alter")
    assert cluster_named.code == 0
    # A broker without an authorizer.
    disabled = run("acls", "list", "--bootstrap-server", broker.bootstrap_servers)
    assert disabled.code == 1 and disabled.err.startswith("pybroker: SECURITY_DISABLED: ")


def test_as_a_child_process(secured):
    topic = unique("proc")
    assert cli("acls", "add", "--bootstrap-server", secured.bootstrap_servers, "--allow-principal", "User:carol",
               "--operation", "Write", "--topic", topic).code == 0
    listed = cli("acls", "list", "--bootstrap-server", secured.bootstrap_servers, "--topic", topic)
    assert "(principal=User:carol, host=*, operation=WRITE, permissionType=ALLOW)" in listed.out
