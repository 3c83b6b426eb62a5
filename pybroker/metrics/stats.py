"""The counts the request path keeps for the metrics: plain integers and
fixed-bucket histograms, bumped with ``+=`` on the event loop and read by
the collector at scrape time. No locks, no Prometheus objects: one broker
thread owns them, and a scrape runs on that thread too.

A histogram is a list of counts, one per upper bound of ``BOUNDS`` plus
one for everything above the last (Prometheus's ``+Inf``); an
observation lands in the first bucket whose bound is at least it
(``bisect_left``: Prometheus's buckets are "less than or equal").
"""

from __future__ import annotations

from bisect import bisect_left

# Seconds: 0.5 ms up to 30 s. A Fetch long poll (500 ms by default) and a
# JoinGroup waiting out a rebalance land in the upper buckets.
BOUNDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Histogram:
    """Observations in ``BOUNDS``' buckets and their sum."""

    __slots__ = ("counts", "total")

    def __init__(self):
        self.counts = [0] * (len(BOUNDS) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(BOUNDS, seconds)] += 1
        self.total += seconds

    @property
    def count(self) -> int:
        return sum(self.counts)


class ApiStats:
    """One API: requests answered per version, and their latency."""

    __slots__ = ("latency", "versions")

    def __init__(self, max_version: int):
        self.versions = [0] * (max_version + 1)
        self.latency = Histogram()


class RequestStats:
    """Requests per API and version, and a latency histogram per API.
    ``observe`` is on every request's path: two list indexings, a bisect
    and three additions."""

    __slots__ = ("apis",)

    def __init__(self, versions: dict[int, int] | None = None):
        """``versions``: {api key: highest version served}."""
        versions = versions or {}
        size = max(versions, default=-1) + 1
        self.apis: list[ApiStats | None] = [None] * size
        for key, top in versions.items():
            self.apis[key] = ApiStats(top)

    def observe(self, api_key: int, version: int, seconds: float) -> None:
        api = self.apis[api_key]
        api.versions[version] += 1
        latency = api.latency
        latency.counts[bisect_left(BOUNDS, seconds)] += 1
        latency.total += seconds

    def served(self):
        """(api key, ApiStats) of every API served."""
        return [(key, api) for key, api in enumerate(self.apis) if api is not None]
