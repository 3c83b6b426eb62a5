"""Kafka's quota arithmetic with the time given: the rate over sampled
windows, never over less than samples - 1 of them, and KIP-219's
throttle time."""

from pybroker.quotas.rates import Rate, record_and_throttle, throttle_ms


def test_a_first_burst_is_spread_over_all_but_one_window():
    rate = Rate(samples=11, window_ms=1000)
    rate.record(1000, now_ms=0)
    # Ten whole windows at the least, whatever time has passed.
    assert rate.window_size_ms(0) == 10_000
    assert rate.measure(0) == 100.0
    assert rate.measure(500) == 1000 / 10.5


def test_the_rate_spans_the_oldest_window_once_there_are_enough():
    rate = Rate(samples=3, window_ms=1000)
    for t in range(0, 5000, 100):
        rate.record(10, now_ms=t)
    # Windows begin at 2000, 3000 and 4000 (the older two were reused).
    assert rate.window_size_ms(4900) == 2900
    assert round(rate.measure(4900)) == round(300 / 2.9)


def test_windows_older_than_all_of_them_count_for_nothing():
    rate = Rate(samples=2, window_ms=1000)
    rate.record(5000, now_ms=0)
    assert rate.measure(1999) > 0
    assert rate.measure(2000) == 0


def test_a_value_taken_back_leaves_the_rate_as_it_was():
    rate = Rate(samples=11, window_ms=1000)
    rate.record(300, 0)
    before = rate.measure(10)
    rate.record(700, 10)
    rate.record(-700, 10)
    assert rate.measure(10) == before


def test_throttle_time_brings_the_rate_back_to_the_bound():
    # O * W / (W + X) = T  =>  X = (O - T) / T * W
    assert throttle_ms(observed=300, bound=100, window_ms=10_000) == 20_000
    rate = Rate(samples=11, window_ms=1000)
    assert record_and_throttle(rate, 100, 1000, now_ms=0) == 0  # exactly at the bound: accepted
    x = record_and_throttle(rate, 100, 2000, now_ms=0)
    assert x == 20_000
    # Had the client waited x ms, the same windows would measure the bound.
    assert 3000 / ((10_000 + x) / 1000) == 100


def test_the_request_time_quota_caps_the_throttle():
    rate = Rate(samples=11, window_ms=1000)
    assert record_and_throttle(rate, 1, 500, now_ms=0, max_ms=1000) == 1000
