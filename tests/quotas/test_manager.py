"""Which quota applies (Kafka's eight levels, and who shares a rate), the
throttle time a request earns and what it does to the response."""

import pytest

from pybroker.protocol.messages.fetch_request import FetchRequest
from pybroker.protocol.messages.fetch_response import FetchableTopicResponse, FetchResponse, PartitionData
from pybroker.protocol.messages.metadata_request import MetadataRequest
from pybroker.protocol.messages.metadata_response import MetadataResponse
from pybroker.protocol.messages.produce_request import ProduceRequest
from pybroker.protocol.messages.produce_response import ProduceResponse
from pybroker.protocol.registry import ApiKey
from pybroker.quotas import DEFAULT, ClientQuotas
from pybroker.quotas.manager import throttle_field_from

LEVELS = [
    # (entity, its configs' place, tags it is counted under for alice/app)
    (("alice", "app"), ("alice", "app")),
    (("alice", DEFAULT), ("alice", "app")),
    (("alice", None), ("alice", "")),
    ((DEFAULT, "app"), ("alice", "app")),
    ((DEFAULT, DEFAULT), ("alice", "app")),
    ((DEFAULT, None), ("alice", "")),
    ((None, "app"), ("", "app")),
    ((None, DEFAULT), ("", "app")),
]


def quotas_with(entities: dict) -> ClientQuotas:
    users, clients, user_clients = {}, {}, {}
    for (user, client), configs in entities.items():
        if client is None:
            users[user] = configs
        elif user is None:
            clients[client] = configs
        else:
            user_clients.setdefault(user, {})[client] = configs
    q = ClientQuotas()
    q.update(users, clients, user_clients)
    return q


@pytest.mark.parametrize("level", range(len(LEVELS)))
def test_the_most_specific_level_wins(level):
    # Every level from this one down holds a quota; the first one applies.
    entities = {entity: {"producer_byte_rate": str(1000 + i)} for i, (entity, _) in enumerate(LEVELS) if i >= level}
    q = quotas_with(entities)
    assert q.quota("producer_byte_rate", "alice", "app") == (LEVELS[level][1], 1000 + level)


def test_no_quota_no_sensor_and_inactive():
    q = quotas_with({("alice", None): {"SCRAM-SHA-512": "salt=..."}})
    assert not q.active
    assert q.quota("producer_byte_rate", "alice", "app") is None
    q = quotas_with({("alice", None): {"consumer_byte_rate": "10"}})
    assert q.active
    assert q.quota("producer_byte_rate", "alice", "app") is None  # per key


def test_a_user_quota_is_shared_by_the_users_client_ids():
    q = quotas_with({("alice", None): {"producer_byte_rate": "1000"}})
    assert q.record("producer_byte_rate", "alice", "a", 10_000, 0) == 0
    # The other client id of alice's finds the quota used up.
    assert q.record("producer_byte_rate", "alice", "b", 1, 0) > 0
    # bob is not limited at all.
    assert q.record("producer_byte_rate", "bob", "a", 10**9, 0) == 0


def test_a_default_client_quota_counts_each_client_id_apart():
    q = quotas_with({(None, DEFAULT): {"producer_byte_rate": "1000"}})
    assert q.record("producer_byte_rate", "alice", "a", 10_000, 0) == 0
    assert q.record("producer_byte_rate", "bob", "b", 10_000, 0) == 0
    assert q.record("producer_byte_rate", "bob", "a", 1, 0) > 0  # client id a, whoever the user


def produce(q, size, client="app", now=0.0):
    response = ProduceResponse()
    throttle = q.charge_request(ApiKey.PRODUCE, 9, ProduceRequest(acks=-1), "User:alice", client, size, 0.0, now)
    return q.charge_response(ApiKey.PRODUCE, 9, None, response, "User:alice", client, throttle, now), response


def test_produce_bytes_are_the_requests_and_the_throttle_is_in_the_response():
    q = quotas_with({(None, "app"): {"producer_byte_rate": "1000"}})
    assert produce(q, 10_000)[0] == 0
    throttle, response = produce(q, 5_000)
    # 15000 bytes over ten windows against 1000/s: 5 s more to come back.
    assert throttle == response.throttle_time_ms == 5_000
    assert produce(q, 5_000, client="other")[0] == 0


def test_a_throttled_consumer_fetch_is_answered_empty_and_not_counted():
    q = quotas_with({(None, "app"): {"consumer_byte_rate": "1000"}})
    request = FetchRequest(replica_id=-1, session_epoch=0)

    def fetch(size):
        response = FetchResponse(session_id=7, responses=[
            FetchableTopicResponse(topic="t", partitions=[PartitionData(records=b"x" * size)])])
        t = q.charge_request(ApiKey.FETCH, 12, request, "User:ANONYMOUS", "app", 100, 0.0, 0)
        return q.charge_response(ApiKey.FETCH, 12, request, response, "User:ANONYMOUS", "app", t, 0), response

    throttle, response = fetch(10_000)
    assert throttle == 0 and response.responses
    throttle, response = fetch(5_000)
    assert throttle == response.throttle_time_ms == 5_000
    assert response.responses == [] and response.session_id == 0
    # The empty answer's bytes were taken back: 10000 counted, at the bound.
    assert fetch(0)[0] == 0


def test_a_followers_fetch_is_replication_not_a_client():
    q = quotas_with({(DEFAULT, None): {"consumer_byte_rate": "1", "request_percentage": "0.0001"}})
    request = FetchRequest(replica_id=2)
    response = FetchResponse(responses=[FetchableTopicResponse(topic="t", partitions=[PartitionData(records=b"x" * 99)])])
    assert q.charge_request(ApiKey.FETCH, 12, request, "User:ANONYMOUS", "r", 100, 1.0, 0) == 0
    assert q.charge_response(ApiKey.FETCH, 12, request, response, "User:ANONYMOUS", "r", 0, 0) == 0
    assert response.responses


def test_request_time_is_a_percentage_of_a_thread_capped_at_one_window():
    q = quotas_with({(None, "app"): {"request_percentage": "10"}})
    # 0.5 s of handler time: 50 percent-seconds over ten windows, 5 %.
    assert q.charge_request(ApiKey.METADATA, 12, MetadataRequest(), "User:x", "app", 10, 0.5, 0) == 0
    throttle = q.charge_request(ApiKey.METADATA, 12, MetadataRequest(), "User:x", "app", 10, 1.0, 0)
    assert throttle == 1000  # (15 - 10) / 10 * 10 s = 5 s, capped at the 1 s window
    response = MetadataResponse()
    q.charge_response(ApiKey.METADATA, 12, None, response, "User:x", "app", throttle, 0)
    assert response.throttle_time_ms == 1000


def test_acks_0_counts_bytes_but_no_request_time():
    q = quotas_with({(None, "app"): {"request_percentage": "0.001", "producer_byte_rate": "1000"}})
    assert q.charge_request(ApiKey.PRODUCE, 9, ProduceRequest(acks=0), "User:x", "app", 10, 1.0, 0, answered=False) == 0
    assert q.charge_request(ApiKey.PRODUCE, 9, ProduceRequest(acks=0), "User:x", "app", 99_999, 0.0, 0, False) > 0


def test_the_throttle_field_where_the_schemas_put_it():
    assert throttle_field_from(ApiKey.PRODUCE) == 1
    assert throttle_field_from(ApiKey.FETCH) == 1
    assert throttle_field_from(ApiKey.API_VERSIONS) == 1
    assert throttle_field_from(ApiKey.METADATA) == 3
    # The SASL exchange and the inter-broker requests are never throttled.
    for key in (ApiKey.SASL_HANDSHAKE, ApiKey.SASL_AUTHENTICATE, ApiKey.CONTROLLED_SHUTDOWN, ApiKey.WRITE_TXN_MARKERS):
        assert throttle_field_from(key) is None


def test_an_older_version_without_the_field_is_still_muted():
    q = quotas_with({(None, "app"): {"producer_byte_rate": "1"}})
    response = ProduceResponse()
    t = q.charge_request(ApiKey.PRODUCE, 0, ProduceRequest(acks=1), "User:x", "app", 1000, 0.0, 0)
    assert q.charge_response(ApiKey.PRODUCE, 0, None, response, "User:x", "app", t, 0) == t > 0
    assert response.throttle_time_ms == 0  # v0 has no field to carry it


def test_idle_clients_rates_are_forgotten():
    from pybroker.quotas import manager

    q = quotas_with({(None, DEFAULT): {"producer_byte_rate": "1000"}})
    hour = manager.INACTIVE_MS
    for i in range(manager.SENSORS_BEFORE_PURGE - 1):
        q.record("producer_byte_rate", "u", f"client-{i}", 1, 0)
    q.record("producer_byte_rate", "u", "busy", 10_000, hour - 1)  # the 10000th: nothing idle for an hour yet
    # A minute on (the purges' pace): the idle ones go, the busy one stays.
    q.record("producer_byte_rate", "u", "new", 1, hour + manager.PURGE_EVERY_MS)
    assert set(q._rates) == {("producer_byte_rate", "", "busy"), ("producer_byte_rate", "", "new")}
    # Client ids without a quota are not kept without end either.
    q = quotas_with({("someone", None): {"producer_byte_rate": "1000"}})
    for i in range(manager.SENSORS_BEFORE_PURGE + 10):
        q.record("producer_byte_rate", "u", f"c{i}", 1, 0)
    assert len(q._resolved) <= manager.SENSORS_BEFORE_PURGE
