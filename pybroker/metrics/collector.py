"""The broker's metrics, read at scrape time from what the services keep.

Nothing here runs on the request path: the counters are plain integers on
objects that exist anyway (a partition's messages and bytes in and out,
the server's per-API request counts and latency buckets, the replica
manager's ISR changes, the group coordinator's rebalances, the flushers'
fsync timings), and a scrape walks them once: O(partitions + committed
offsets), no I/O, no lock (it runs on the broker's Trio thread, which owns
them all). Log sizes are the segments' sizes held in memory, not stat()s.

Names are Kafka's JMX names as the Prometheus JMX exporter renders them
(``kafka.server:type=BrokerTopicMetrics,name=MessagesInPerSec,topic=t``
becomes ``kafka_server_brokertopicmetrics_messagesin_total{topic="t"}``);
docs/METRICS.md has the whole mapping and where pybroker differs.
"""

from __future__ import annotations

from collections import defaultdict

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from pybroker.protocol.registry import api_info

from ..groups.classic import ClassicGroup
from ..replica import Role
from .stats import BOUNDS

# The groups' states, classic and KIP-848 (Kafka's NumGroups<State> gauges).
GROUP_STATES = ("PreparingRebalance", "CompletingRebalance", "Stable", "Empty", "Dead", "Assigning", "Reconciling")


def request_name(api_key: int) -> str:
    """Kafka's name of an API, as its request metrics are labelled ("Produce", "ApiVersions")."""
    return api_info(api_key).request.__name__.removesuffix("Request")


def histogram(name: str, doc: str, bounds, rows, labels=()) -> HistogramMetricFamily:
    """A histogram family from fixed-bucket counts: ``rows`` is
    [(label values, counts per bound and one above, sum)]."""
    family = HistogramMetricFamily(name, doc, labels=list(labels))
    les = [*map(repr, bounds), "+Inf"]
    for values, counts, total in rows:
        buckets = []
        seen = 0
        for le, n in zip(les, counts):
            seen += n
            buckets.append((le, seen))
        family.add_metric(list(values), buckets, total)
    return family


class BrokerCollector(Collector):
    """One broker's metrics; given the services it reads, not the broker."""

    def __init__(self, *, node_id: int, replicas, server, groups, metadata, logs):
        self.node_id = node_id
        self.replicas = replicas
        self.server = server
        self.groups = groups
        self.metadata = metadata
        self.logs = logs

    def describe(self):
        # Registered before a scrape can be answered: nothing to check names against.
        return []

    def collect(self):
        yield from self._topics()
        yield from self._replication()
        yield from self._requests()
        yield from self._connections()
        yield from self._flushes()
        yield from self._groups()

    # -- per topic and partition ---------------------------------------------------

    def _topics(self):
        messages_in: dict[str, int] = defaultdict(int)
        bytes_in: dict[str, int] = defaultdict(int)
        bytes_out: dict[str, int] = defaultdict(int)
        size = GaugeMetricFamily(
            "kafka_log_log_size", "Bytes of the partition's log segments", labels=["topic", "partition"]
        )
        end = GaugeMetricFamily("kafka_log_log_logendoffset", "The log end offset", labels=["topic", "partition"])
        start = GaugeMetricFamily("kafka_log_log_logstartoffset", "The log start offset", labels=["topic", "partition"])
        for part in list(self.replicas.partitions.values()):
            topic = part.topic
            messages_in[topic] += part.messages_in
            bytes_in[topic] += part.bytes_in
            bytes_out[topic] += part.bytes_out
            labels = [topic, str(part.index)]
            log = part.log
            size.add_metric(labels, log.size_in_bytes)
            end.add_metric(labels, log.log_end_offset)
            start.add_metric(labels, log.log_start_offset)
        for name, doc, values in (
            (
                "messagesin",
                "Records appended as leader (producers and coordinators; retried duplicates not counted)",
                messages_in,
            ),
            ("bytesin", "Record batch bytes appended as leader", bytes_in),
            ("bytesout", "Record bytes sent to consumers by Fetch", bytes_out),
        ):
            family = CounterMetricFamily(f"kafka_server_brokertopicmetrics_{name}", doc, labels=["topic"])
            for topic in sorted(values):
                family.add_metric([topic], values[topic])
            yield family
        yield size
        yield end
        yield start

    def _replication(self):
        replicas = self.replicas
        hosted = leading = under = under_min = offline_replicas = 0
        for part in list(replicas.partitions.values()):
            hosted += 1
            if part.offline:
                offline_replicas += 1
                continue
            if part.role is not Role.LEADER:
                continue
            leading += 1
            isr = len(part.isr)
            if isr < len(part.info.replicas):
                under += 1
            if isr < part.log.config.min_insync_replicas:
                under_min += 1
        prefix = "kafka_server_replicamanager_"
        yield GaugeMetricFamily(prefix + "partitioncount", "Partitions hosted by this broker", hosted)
        yield GaugeMetricFamily(prefix + "leadercount", "Partitions this broker leads", leading)
        yield GaugeMetricFamily(
            prefix + "underreplicatedpartitions", "Partitions led here whose ISR is smaller than their replicas", under
        )
        yield GaugeMetricFamily(
            prefix + "underminisrpartitioncount",
            "Partitions led here whose ISR is below min.insync.replicas",
            under_min,
        )
        yield GaugeMetricFamily(
            prefix + "offlinereplicacount", "Replicas here in a failed log directory", offline_replicas
        )
        yield CounterMetricFamily(prefix + "isrshrinks", "ISR shrinks of partitions led here", replicas.isr_shrinks)
        yield CounterMetricFamily(prefix + "isrexpands", "ISR expands of partitions led here", replicas.isr_expands)
        metadata = self.metadata
        active = metadata.controller_id == self.node_id
        offline = 0
        if active:
            # Kafka's active controller counts partitions without a live leader.
            for topic in metadata.all_topics():
                for p in topic.partitions:
                    if p.leader < 0 or metadata.broker(p.leader) is None:
                        offline += 1
        prefix = "kafka_controller_kafkacontroller_"
        yield GaugeMetricFamily(prefix + "activecontrollercount", "1 on the active controller", int(active))
        yield GaugeMetricFamily(
            prefix + "offlinepartitionscount", "Partitions without a live leader (the active controller only)", offline
        )

    # -- requests and connections --------------------------------------------------

    def _requests(self):
        count = CounterMetricFamily(
            "kafka_network_requestmetrics_requests",
            "Requests answered, per API and version",
            labels=["request", "version"],
        )
        rows = []
        for key, api in self.server.requests.served():
            name = request_name(key)
            for version, n in enumerate(api.versions):
                if n:
                    count.add_metric([name, str(version)], n)
            if any(api.latency.counts):
                rows.append(([name], api.latency.counts, api.latency.total))
        yield count
        yield histogram(
            "kafka_network_requestmetrics_totaltime_seconds",
            "Time from a request's frame to its encoded response, per API (Kafka's TotalTimeMs, in seconds)",
            BOUNDS,
            rows,
            ["request"],
        )

    def _connections(self):
        server = self.server
        yield GaugeMetricFamily(
            "kafka_server_socketservermetrics_connection_count", "Open client connections", len(server.connections)
        )
        yield CounterMetricFamily(
            "kafka_server_socketservermetrics_connection_creation", "Connections accepted", server.accepted
        )

    def _flushes(self):
        times = [self.replicas.flusher.flush_times]
        if self.logs is not None:
            times.append(self.logs.flush_times)
        counts = [sum(c) for c in zip(*(t.counts for t in times))]
        yield histogram(
            "kafka_log_logflushstats_logflushrateandtime_seconds",
            "fsync of a log's new data, per log and flush (Kafka's LogFlushRateAndTimeMs, in seconds)",
            times[0].bounds,
            [((), counts, sum(t.total for t in times))],
        )

    # -- consumer groups -----------------------------------------------------------

    def _groups(self):
        coordinator = self.groups
        groups = list(coordinator.groups.items())
        by_state = dict.fromkeys(GROUP_STATES, 0)
        members = GaugeMetricFamily("kafka_consumergroup_members", "Members of the group", labels=["consumergroup"])
        generation = GaugeMetricFamily(
            "kafka_consumergroup_generation",
            "The group's generation (classic) or group epoch (consumer protocol): one more per rebalance",
            labels=["consumergroup"],
        )
        for group_id, group in groups:
            state = group.state
            by_state[state] = by_state.get(state, 0) + 1
            members.add_metric([group_id], len(group.members))
            generation.add_metric(
                [group_id], group.generation if isinstance(group, ClassicGroup) else group.group_epoch
            )
        prefix = "kafka_coordinator_group_groupmetadatamanager_"
        yield GaugeMetricFamily(prefix + "numgroups", "Groups coordinated by this broker", len(groups))
        for state, n in by_state.items():
            yield GaugeMetricFamily(prefix + "numgroups" + state.lower(), f"Groups in state {state}", n)
        yield CounterMetricFamily(
            "kafka_server_group_coordinator_metrics_group_completed_rebalance",
            "Classic group generations completed by this coordinator",
            coordinator.rebalances,
        )
        yield members
        yield generation
        labels = ["consumergroup", "topic", "partition"]
        current = GaugeMetricFamily("kafka_consumergroup_current_offset", "The group's committed offset", labels=labels)
        lag = GaugeMetricFamily(
            "kafka_consumergroup_lag",
            "High watermark minus the committed offset (partitions hosted here)",
            labels=labels,
        )
        replicas = self.replicas
        for group_id, table in list(coordinator.offsets.offsets.items()):
            for (topic, index), committed in list(table.items()):
                values = [group_id, topic, str(index)]
                current.add_metric(values, committed.offset)
                part = replicas.partition(topic, index)
                if part is not None and not part.offline:
                    lag.add_metric(values, max(part.log.high_watermark - committed.offset, 0))
        yield current
        yield lag
