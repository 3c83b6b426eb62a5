"""``pybroker-metrics``: pybroker with its Prometheus endpoint on, for the
metrics' cost on the hot path, measured beside plain pybroker in the same run.

While this broker goes through its workloads a thread scrapes ``/metrics``
every SCRAPE_EVERY_S seconds (Prometheus's default is 15 s: this is the
harsher case), and after each produce run the workload checks that the
topic's ``kafka_server_brokertopicmetrics_messagesin_total`` equals the
records the load generator had acknowledged (a flag otherwise, which fails
the run as any flag on pybroker does).
"""

from __future__ import annotations

import threading
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from pybroker.local_cluster import consecutive_free_ports

NAME = "pybroker-metrics"
SCRAPE_EVERY_S = 2.0
MESSAGES_IN = "kafka_server_brokertopicmetrics_messagesin_total"


def metrics_kind(pybroker_kind):
    """pybroker with ``metrics.listener`` on a free port below the ephemeral range."""
    port = consecutive_free_ports(1)
    kind = pybroker_kind(name=NAME, props={"metrics.listener": f"http://127.0.0.1:{port}"})
    kind.metrics_url = f"http://127.0.0.1:{port}/metrics"
    return kind


def scrape(url: str, timeout: float = 10) -> dict:
    """{(sample name, sorted label items): value} of one scrape."""
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        text = answer.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def messages_in(url: str, topic: str) -> float | None:
    return scrape(url).get((MESSAGES_IN, (("topic", topic),)))


def check_messages_in(url: str, topic: str, acked: int, flags: list, notes: list) -> None:
    """The topic's messages-in counter against what was acknowledged."""
    try:
        counted = messages_in(url, topic)
    except OSError as exc:
        flags.append(f"/metrics could not be scraped: {exc!r}")
        return
    if counted != acked:
        flags.append(f"{MESSAGES_IN}{{topic={topic!r}}} is {counted} for {acked:,} acknowledged messages")
    else:
        notes.append(f"/metrics: messagesin of {topic} = {int(counted):,} = acknowledged")


class Scraper:
    """Scrapes ``url`` every SCRAPE_EVERY_S seconds in a thread until stopped."""

    def __init__(self, url: str):
        self.url = url
        self.times: list[float] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metrics-scraper", daemon=True)

    def start(self) -> Scraper:
        self._thread.start()
        return self

    def stop(self) -> str:
        """Stop; a note of what the scrapes took."""
        self._stop.set()
        self._thread.join()
        if not self.times:
            return f"/metrics never answered: {self.errors[:1]}"
        slowest = max(self.times) * 1000
        return (
            f"/metrics scraped {len(self.times)} times, every {SCRAPE_EVERY_S:g} s during the workloads "
            f"(slowest {slowest:.0f} ms, {len(self.errors)} failed)"
        )

    def _run(self) -> None:
        while not self._stop.wait(SCRAPE_EVERY_S):
            started = time.monotonic()
            try:
                # Read, not parsed: parsing is the client's cost, and it
                # would take CPU from the workload on a small machine.
                with urllib.request.urlopen(self.url, timeout=10) as answer:
                    answer.read()
                self.times.append(time.monotonic() - started)
            except OSError as exc:
                self.errors.append(repr(exc))
