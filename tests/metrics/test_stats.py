"""The counts kept on the request path, and how the collector renders them."""

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from pybroker.metrics.collector import histogram, request_name
from pybroker.metrics.stats import BOUNDS, Histogram, RequestStats
from pybroker.protocol.registry import ApiKey
from pybroker.storage.flush import FlushTimes


def test_an_observation_on_a_bound_lands_in_that_bucket_as_prometheus_counts_le():
    h = Histogram()
    h.observe(BOUNDS[0])
    h.observe(BOUNDS[0] * 1.01)
    h.observe(10 * BOUNDS[-1])
    assert h.counts[0] == 1 and h.counts[1] == 1 and h.counts[-1] == 1
    assert h.count == 3


def test_flush_times_bucket_as_the_request_histograms_do():
    t = FlushTimes()
    t.observe(t.bounds[2])
    t.observe(0)
    assert t.counts[2] == 1 and t.counts[0] == 1 and t.total == t.bounds[2]


def test_requests_are_counted_per_api_and_version_with_one_latency_histogram_per_api():
    stats = RequestStats({ApiKey.PRODUCE: 9, ApiKey.API_VERSIONS: 4})
    stats.observe(ApiKey.PRODUCE, 9, 0.002)
    stats.observe(ApiKey.PRODUCE, 7, 0.2)
    stats.observe(ApiKey.API_VERSIONS, 3, 0.0001)
    served = dict(stats.served())
    assert set(served) == {ApiKey.PRODUCE, ApiKey.API_VERSIONS}
    produce = served[ApiKey.PRODUCE]
    assert produce.versions[9] == 1 and produce.versions[7] == 1 and sum(produce.versions) == 2
    assert sum(produce.latency.counts) == 2 and abs(produce.latency.total - 0.202) < 1e-9


def test_a_histogram_family_is_cumulative_and_parses_back():
    class One:
        def collect(self):
            yield histogram("x_seconds", "doc", (0.1, 1.0), [(["a"], [2, 0, 1], 5.5)], ["request"])

    registry = CollectorRegistry(auto_describe=False)
    registry.register(One())
    from prometheus_client.exposition import generate_latest

    (family,) = text_string_to_metric_families(generate_latest(registry).decode())
    got = {(s.name, s.labels.get("le")): s.value for s in family.samples}
    assert got[("x_seconds_bucket", "0.1")] == 2
    assert got[("x_seconds_bucket", "1.0")] == 2
    assert got[("x_seconds_bucket", "+Inf")] == 3
    assert got[("x_seconds_count", None)] == 3 and got[("x_seconds_sum", None)] == 5.5


def test_requests_are_named_as_kafka_names_them():
    assert request_name(ApiKey.PRODUCE) == "Produce"
    assert request_name(ApiKey.API_VERSIONS) == "ApiVersions"
    assert request_name(ApiKey.OFFSET_FOR_LEADER_EPOCH) == "OffsetForLeaderEpoch"
    assert request_name(ApiKey.INIT_PRODUCER_ID) == "InitProducerId"
