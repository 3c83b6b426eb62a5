"""Kafka's quota arithmetic (org.apache.kafka.common.metrics: SampledStat,
Rate, Quota; kafka.server.ClientQuotaManager.throttleTime), with the time
given as a parameter: no clock, no I/O.

A rate is kept in ``samples`` windows of ``window_ms`` each (Kafka's
``quota.window.num`` = 11 and ``quota.window.size.seconds`` = 1: ten
whole windows and the current one). A value lands in the current window;
a window is complete once ``window_ms`` passed since it began, and the
next value then starts the oldest window afresh. A window older than all
of them together (``samples * window_ms``) counts for nothing.

The rate is the sum of the windows over the time they span, measured
from the start of the oldest, but never over less than ``samples - 1``
whole windows: a client's first burst is spread over ten seconds, not
judged over the few milliseconds since it began.

A recorded value that takes the rate above the bound is still counted
(Kafka's Sensor records, then checks); the client is then held back for
the time that brings the rate down to the bound if it sends nothing more
(KIP-13, KIP-219): observed rate O over window W against bound T needs a
delay X with O * W / (W + X) = T, so X = (O - T) / T * W.
"""

from __future__ import annotations


class Rate:
    """One quota sensor: a rate per second over sampled windows."""

    __slots__ = ("_current", "_starts", "_values", "samples", "window_ms")

    def __init__(self, samples: int, window_ms: float):
        self.samples = samples
        self.window_ms = window_ms
        # Window i began at _starts[i] and holds _values[i]; made as needed.
        self._starts: list[float] = []
        self._values: list[float] = []
        self._current = 0

    def record(self, value: float, now_ms: float) -> None:
        """Add ``value`` at ``now_ms`` (a negative value takes one back:
        Kafka's unrecord of a throttled, emptied fetch response)."""
        starts = self._starts
        if not starts:
            starts.append(now_ms)
            self._values.append(0.0)
        elif now_ms - starts[self._current] >= self.window_ms:
            self._current = (self._current + 1) % self.samples
            if self._current >= len(starts):
                starts.append(now_ms)
                self._values.append(0.0)
            else:
                starts[self._current] = now_ms
                self._values[self._current] = 0.0
        self._values[self._current] += value

    def _purge(self, now_ms: float) -> None:
        expire = self.samples * self.window_ms
        for i, start in enumerate(self._starts):
            if now_ms - start >= expire:
                self._starts[i] = now_ms
                self._values[i] = 0.0

    def window_size_ms(self, now_ms: float) -> float:
        """The span the rate is measured over (Kafka's Rate.windowSize)."""
        self._purge(now_ms)
        elapsed = now_ms - min(self._starts) if self._starts else 0.0
        full = int(elapsed // self.window_ms)
        least = self.samples - 1
        if full < least:
            elapsed += (least - full) * self.window_ms
        return elapsed

    def measure(self, now_ms: float) -> float:
        """Units per second."""
        span = self.window_size_ms(now_ms)
        total = sum(self._values)
        return total / (span / 1000.0) if span > 0 else 0.0


def throttle_ms(observed: float, bound: float, window_ms: float) -> int:
    """How long a client over its bound is held back (Kafka rounds)."""
    return round((observed - bound) / bound * window_ms)


def record_and_throttle(rate: Rate, bound: float, value: float, now_ms: float, max_ms: int | None = None) -> int:
    """Record ``value``; the throttle time in ms if the rate is then above
    ``bound`` (an upper bound: the rate may equal it), else 0. ``max_ms``
    caps it (the request-time quota caps it at one window)."""
    rate.record(value, now_ms)
    observed = rate.measure(now_ms)
    if observed <= bound:
        return 0
    ms = throttle_ms(observed, bound, rate.window_size_ms(now_ms))
    return min(ms, max_ms) if max_ms is not None else ms
