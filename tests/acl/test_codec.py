"""Kafka's ACL znode and change-notification formats, and the local file."""

import json

import pytest

from pybroker.acl import Entry, Operation, PatternType, Permission, ResourcePattern, ResourceType, codec

ENTRY = Entry("User:alice", "*", Operation.DESCRIBE_CONFIGS, Permission.ALLOW)


def test_paths():
    assert codec.resource_path(ResourcePattern(ResourceType.TOPIC, "t", PatternType.LITERAL)) == "/kafka-acl/Topic/t"
    assert codec.resource_path(ResourcePattern(ResourceType.TRANSACTIONAL_ID, "x", PatternType.PREFIXED)) == \
        "/kafka-acl-extended/prefixed/TransactionalId/x"
    assert "/kafka-acl/Cluster" in codec.all_paths()
    assert "/kafka-acl-extended/prefixed/DelegationToken" in codec.all_paths()
    assert codec.changes_path(PatternType.PREFIXED) == "/kafka-acl-extended-changes"


def test_acls_json_round_trips_in_kafkas_shape():
    data = codec.encode_acls({ENTRY})
    assert json.loads(data) == {"version": 1, "acls": [
        {"principal": "User:alice", "permissionType": "Allow", "operation": "DescribeConfigs", "host": "*"}]}
    assert codec.decode_acls(data) == {ENTRY}
    # As a Kafka broker wrote it, keys in another order.
    kafka = b'{"version":1,"acls":[{"host":"h1","permissionType":"Deny","operation":"Read","principal":"User:b"}]}'
    assert codec.decode_acls(kafka) == {Entry("User:b", "h1", Operation.READ, Permission.DENY)}
    with pytest.raises(ValueError):
        codec.decode_acls(b'{"version":1,"acls":[{"host":"*"}]}')


def test_change_notifications():
    lit = ResourcePattern(ResourceType.GROUP, "g:1", PatternType.LITERAL)
    assert codec.encode_change(lit) == b"GROUP:g:1"
    assert codec.decode_change(b"Group:g:1", literal=True) == lit
    pre = ResourcePattern(ResourceType.TOPIC, "ord", PatternType.PREFIXED)
    assert json.loads(codec.encode_change(pre)) == {"version": 1, "resourceType": "TOPIC", "name": "ord",
                                                    "patternType": "PREFIXED"}
    assert codec.decode_change(codec.encode_change(pre), literal=False) == pre
    with pytest.raises(ValueError):
        codec.decode_change(b"nocolon", literal=True)


def test_file_round_trip():
    acls = {ResourcePattern(ResourceType.TOPIC, "ord", PatternType.PREFIXED): frozenset({ENTRY})}
    assert codec.decode_file(codec.encode_file(acls)) == acls
