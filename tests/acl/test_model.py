"""Bindings' validation and the filters of DescribeAcls/DeleteAcls."""

from pybroker.acl import (
    Binding,
    BindingFilter,
    Entry,
    Operation,
    PatternType,
    Permission,
    ResourcePattern,
    ResourceType,
)
from pybroker.acl.model import SUPPORTED_OPERATIONS, of, parse_enum, pascal

T, LIT, PRE = ResourceType.TOPIC, PatternType.LITERAL, PatternType.PREFIXED
ALICE_READ = Entry("User:alice", "*", Operation.READ, Permission.ALLOW)


def flt(rtype=ResourceType.ANY, name=None, kind=PatternType.ANY, principal=None, host=None,
        op=Operation.ANY, perm=Permission.ANY):
    return BindingFilter(rtype, name, kind, principal, host, op, perm)


def test_codes_and_names_are_kafkas():
    assert (ResourceType.TOPIC, ResourceType.USER) == (2, 7)
    assert (PatternType.MATCH, PatternType.PREFIXED) == (2, 4)
    assert (Operation.ALL, Operation.IDEMPOTENT_WRITE, Operation.DESCRIBE_TOKENS) == (2, 12, 14)
    assert (Permission.DENY, Permission.ALLOW) == (2, 3)
    assert pascal(ResourceType.TRANSACTIONAL_ID) == "TransactionalId"
    assert pascal(Operation.DESCRIBE_CONFIGS) == "DescribeConfigs"
    assert parse_enum(ResourceType, "TransactionalId") is ResourceType.TRANSACTIONAL_ID
    assert parse_enum(ResourceType, "TRANSACTIONAL_ID") is ResourceType.TRANSACTIONAL_ID
    assert of(Operation, 99) is Operation.UNKNOWN
    assert Operation.CLUSTER_ACTION in SUPPORTED_OPERATIONS[ResourceType.CLUSTER]


def test_binding_problems():
    def problem(rtype=T, name="t", kind=LIT, principal="User:alice", op=Operation.READ, perm=Permission.ALLOW):
        return Binding(ResourcePattern(rtype, name, kind), Entry(principal, "*", op, perm)).problem()

    assert problem() is None
    assert "unknown" in problem(op=Operation.UNKNOWN)
    assert problem(kind=PatternType.MATCH)
    assert problem(rtype=ResourceType.ANY)
    assert problem(op=Operation.ANY)
    assert problem(perm=Permission.ANY)
    assert problem(rtype=ResourceType.CLUSTER, name="other") == \
        "The only valid name for the CLUSTER resource is kafka-cluster"
    assert problem(rtype=ResourceType.CLUSTER, name="kafka-cluster") is None
    assert problem(name="") == "Invalid empty resource name"
    assert problem(principal="alice").startswith("expected a string in format principalType:principalName")


def test_filter_problems():
    assert flt().problem() is None
    assert flt(op=Operation.UNKNOWN).problem()
    assert flt(kind=PatternType.UNKNOWN).problem()


def test_filters_match_as_kafkas():
    lit = Binding(ResourcePattern(T, "orders", LIT), ALICE_READ)
    wild = Binding(ResourcePattern(T, "*", LIT), ALICE_READ)
    pre = Binding(ResourcePattern(T, "ord", PRE), ALICE_READ)
    assert all(flt().matches(b) for b in (lit, wild, pre))
    # A name with ANY: exact names of either pattern type.
    assert [flt(name="orders").matches(b) for b in (lit, wild, pre)] == [True, False, False]
    # MATCH: every pattern that applies to a resource of that name.
    assert [flt(name="orders", kind=PatternType.MATCH).matches(b) for b in (lit, wild, pre)] == [True, True, True]
    assert [flt(name="other", kind=PatternType.MATCH).matches(b) for b in (lit, wild, pre)] == [False, True, False]
    assert [flt(kind=PRE).matches(b) for b in (lit, wild, pre)] == [False, False, True]
    assert [flt(name="ord", kind=PRE).matches(b) for b in (lit, wild, pre)] == [False, False, True]
    assert not flt(rtype=ResourceType.GROUP).matches(lit)
    assert flt(principal="User:alice", host="*", op=Operation.READ, perm=Permission.ALLOW).matches(lit)
    assert not flt(principal="User:*").matches(lit)
    assert not flt(op=Operation.WRITE).matches(lit)
    assert not flt(perm=Permission.DENY).matches(lit)
