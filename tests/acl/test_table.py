"""AclAuthorizer's decision rules on the pure table."""

import pytest

from pybroker.acl import AclTable, Entry, Operation, PatternType, Permission, ResourcePattern, ResourceType
from pybroker.acl.table import IMPLIED_BY

T = ResourceType.TOPIC
ALLOW, DENY = Permission.ALLOW, Permission.DENY


def table(*acls) -> AclTable:
    t = AclTable()
    grouped = {}
    for name, kind, principal, host, op, perm in acls:
        grouped.setdefault(ResourcePattern(T, name, kind), set()).add(Entry(principal, host, op, perm))
    for pattern, entries in grouped.items():
        t.put(pattern, entries)
    return t


def decide(t, op=Operation.READ, name="orders", principal="User:alice", host="10.0.0.1", allow_if_none=False):
    return t.decide(principal, host, op, T, name, allow_if_none)


LIT, PRE = PatternType.LITERAL, PatternType.PREFIXED


def test_no_acl_denies_unless_allow_everyone():
    assert not decide(AclTable())
    assert decide(AclTable(), allow_if_none=True)


def test_an_acl_of_someone_else_locks_the_others_out_even_with_allow_everyone():
    t = table(("orders", LIT, "User:bob", "*", Operation.READ, ALLOW))
    assert not decide(t, allow_if_none=True)
    assert decide(t, principal="User:bob", allow_if_none=True)
    # Another topic has no ACL at all.
    assert decide(t, name="other", allow_if_none=True)


def test_literal_wildcard_resource_and_principal_and_host():
    assert decide(table(("*", LIT, "User:alice", "*", Operation.READ, ALLOW)))
    assert decide(table(("orders", LIT, "User:*", "*", Operation.READ, ALLOW)))
    assert decide(table(("orders", LIT, "User:alice", "10.0.0.1", Operation.READ, ALLOW)))
    assert not decide(table(("orders", LIT, "User:alice", "10.0.0.2", Operation.READ, ALLOW)))
    # A literal "*" is the wildcard; a prefixed "*" is only a prefix.
    assert not decide(table(("*", PRE, "User:alice", "*", Operation.READ, ALLOW)))


def test_prefixed_patterns():
    t = table(("ord", PRE, "User:alice", "*", Operation.READ, ALLOW))
    assert decide(t, name="orders")
    assert decide(t, name="ord")
    assert not decide(t, name="or")
    assert not decide(t, name="xorders")


def test_deny_wins_over_allow_wherever_it_comes_from():
    t = table(
        ("orders", LIT, "User:alice", "*", Operation.READ, ALLOW),
        ("ord", PRE, "User:*", "*", Operation.READ, DENY),
    )
    assert not decide(t)
    t = table(("*", LIT, "User:alice", "*", Operation.ALL, ALLOW), ("orders", LIT, "User:alice", "*", Operation.ALL, DENY))
    assert not decide(t, Operation.WRITE)
    assert decide(t, Operation.WRITE, name="other")


def test_deny_of_one_operation_leaves_the_others():
    t = table(
        ("orders", LIT, "User:alice", "*", Operation.ALL, ALLOW),
        ("orders", LIT, "User:alice", "*", Operation.READ, DENY),
    )
    assert not decide(t, Operation.READ)
    assert decide(t, Operation.WRITE)
    # DENY READ does not deny the DESCRIBE it would imply.
    assert decide(t, Operation.DESCRIBE)


@pytest.mark.parametrize("granted", [Operation.READ, Operation.WRITE, Operation.DELETE, Operation.ALTER, Operation.ALL])
def test_describe_is_implied(granted):
    assert decide(table(("orders", LIT, "User:alice", "*", granted, ALLOW)), Operation.DESCRIBE)


def test_describe_configs_is_implied_by_alter_configs_only():
    assert decide(table(("orders", LIT, "User:alice", "*", Operation.ALTER_CONFIGS, ALLOW)), Operation.DESCRIBE_CONFIGS)
    assert not decide(table(("orders", LIT, "User:alice", "*", Operation.ALTER, ALLOW)), Operation.DESCRIBE_CONFIGS)
    assert IMPLIED_BY[Operation.DESCRIBE_CONFIGS] == (Operation.DESCRIBE_CONFIGS, Operation.ALTER_CONFIGS, Operation.ALL)


def test_read_is_not_implied_by_write():
    assert not decide(table(("orders", LIT, "User:alice", "*", Operation.WRITE, ALLOW)), Operation.READ)


def test_other_resource_types_do_not_mix():
    t = AclTable()
    t.put(ResourcePattern(ResourceType.GROUP, "orders", LIT), {Entry("User:alice", "*", Operation.READ, ALLOW)})
    assert not decide(t)


def test_generation_moves_on_every_change():
    t = AclTable()
    before = t.generation
    t.put(ResourcePattern(T, "x", LIT), {Entry("User:a", "*", Operation.READ, ALLOW)})
    t.put(ResourcePattern(T, "x", LIT), ())
    assert t.generation == before + 2 and len(t) == 0


def any_allowed(*acls, op=Operation.WRITE):
    return table(*acls).any_allowed("User:alice", "10.0.0.1", op, T)


def test_authorize_by_resource_type():
    assert not any_allowed()
    assert any_allowed(("orders", LIT, "User:alice", "*", Operation.WRITE, ALLOW))
    assert any_allowed(("orders", LIT, "User:alice", "*", Operation.ALL, ALLOW))
    assert not any_allowed(("orders", LIT, "User:alice", "*", Operation.READ, ALLOW))
    # A literal allow denied exactly, or under a denied prefix: nothing left.
    assert not any_allowed(("orders", LIT, "User:alice", "*", Operation.WRITE, ALLOW),
                           ("orders", LIT, "User:alice", "*", Operation.WRITE, DENY))
    assert not any_allowed(("orders", PRE, "User:alice", "*", Operation.WRITE, ALLOW),
                           ("ord", PRE, "User:*", "*", Operation.WRITE, DENY))
    # A denied longer prefix leaves the rest of the allowed one.
    assert any_allowed(("ord", PRE, "User:alice", "*", Operation.WRITE, ALLOW),
                       ("orders", PRE, "User:alice", "*", Operation.WRITE, DENY))
    # The wildcard: DENY refuses whatever else is allowed.
    assert any_allowed(("*", LIT, "User:alice", "*", Operation.WRITE, ALLOW))
    assert not any_allowed(("*", LIT, "User:alice", "*", Operation.WRITE, ALLOW),
                           ("*", LIT, "User:alice", "*", Operation.WRITE, DENY))
