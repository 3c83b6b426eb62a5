"""The authorizer the handlers call: super users, the decision cache,
the bit fields of authorized operations, the audit line."""

import logging

import pytest

from pybroker.acl import AclTable, Authorizer, Entry, Operation, PatternType, Permission, ResourcePattern, ResourceType
from pybroker.acl.authorizer import AuthorizerConfigError, all_operations, authorizer_settings, client_host
from pybroker.config import BrokerConfig, ConfigError


class Ctx:
    def __init__(self, principal="User:alice", peer="127.0.0.1:5555"):
        self.principal, self.peer, self.header = principal, peer, None


def test_settings_follow_kafkas_switch():
    assert authorizer_settings(BrokerConfig({})) is None
    on = BrokerConfig({"authorizer.class.name": "kafka.security.authorizer.AclAuthorizer",
                       "super.users": "User:admin; User:CN=broker,O=x", "allow.everyone.if.no.acl.found": "true"})
    assert authorizer_settings(on) == (frozenset({"User:admin", "User:CN=broker,O=x"}), True)
    kraft = BrokerConfig({"authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer"})
    assert authorizer_settings(kraft) == (frozenset(), False)
    with pytest.raises(ConfigError, match="authorizer.class.name"):
        BrokerConfig({"authorizer.class.name": "com.example.Mine"})
    with pytest.raises(ConfigError, match="super.users"):
        BrokerConfig({"super.users": "admin"})
    with pytest.raises(AuthorizerConfigError):
        authorizer_settings({"authorizer.class.name": "x", "super.users": None})


def test_client_host():
    assert client_host("10.1.2.3:9092") == "10.1.2.3"
    assert client_host("::1:9092") == "::1"


def test_super_users_and_cached_decisions():
    table = AclTable()
    auth = Authorizer(table, {"User:admin"})
    assert auth.allowed(Ctx("User:admin"), Operation.ALTER, ResourceType.CLUSTER, "kafka-cluster")
    assert not auth.allowed(Ctx(), Operation.READ, ResourceType.TOPIC, "t")
    table.put(ResourcePattern(ResourceType.TOPIC, "t", PatternType.LITERAL),
              {Entry("User:alice", "127.0.0.1", Operation.READ, Permission.ALLOW)})
    assert auth.allowed(Ctx(), Operation.READ, ResourceType.TOPIC, "t")  # the change is seen at once
    assert not auth.allowed(Ctx(peer="127.0.0.2:1"), Operation.READ, ResourceType.TOPIC, "t")
    assert auth.allowed_names(Ctx(), Operation.READ, ResourceType.TOPIC, ["t", "u"]) == {"t"}


def test_operation_bit_fields():
    table = AclTable()
    table.put(ResourcePattern(ResourceType.TOPIC, "t", PatternType.LITERAL),
              {Entry("User:alice", "*", Operation.WRITE, Permission.ALLOW)})
    auth = Authorizer(table)
    assert auth.operations(Ctx(), ResourceType.TOPIC, "t") == (1 << Operation.WRITE) | (1 << Operation.DESCRIBE)
    assert Authorizer(table, {"User:alice"}).operations(Ctx(), ResourceType.TOPIC, "t") == all_operations(
        ResourceType.TOPIC)
    assert all_operations(ResourceType.TOPIC) == 3576


def test_by_resource_type_and_audit_line(caplog):
    caplog.set_level(logging.INFO, logger="pybroker.authorizer")
    table = AclTable()
    auth = Authorizer(table)
    assert not auth.any_of_type(Ctx(), Operation.WRITE, ResourceType.TOPIC)
    table.put(ResourcePattern(ResourceType.TOPIC, "a-", PatternType.PREFIXED),
              {Entry("User:alice", "*", Operation.WRITE, Permission.ALLOW)})
    assert auth.any_of_type(Ctx(), Operation.WRITE, ResourceType.TOPIC)
    assert not auth.allowed(Ctx(), Operation.READ, ResourceType.GROUP, "g")
    assert not auth.allowed(Ctx(), Operation.READ, ResourceType.GROUP, "quiet", audit=False)
    lines = [r.getMessage() for r in caplog.records if r.name == "pybroker.authorizer"]
    assert "denied: User:alice from 127.0.0.1 may not READ GROUP 'g' (request None)" in lines
    assert not [line for line in lines if "quiet" in line]
