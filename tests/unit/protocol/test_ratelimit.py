"""Tests of geodrop.protocol.ratelimit: token buckets by key, on an injected clock."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geodrop.protocol.ratelimit import RateLimiter

# Window bounds are compared with a little slack for float arithmetic, far below one request.
SLACK = 1e-6

rates = st.integers(min_value=1, max_value=6000)
bursts = st.integers(min_value=1, max_value=50)
# Gaps between requests: many at the same instant, some spread, some long quiet spells.
gaps = st.one_of(
    st.just(0.0),
    st.floats(min_value=0.0, max_value=0.5),
    st.floats(min_value=0.0, max_value=120.0),
)
requests = st.lists(st.tuples(gaps, st.sampled_from(["a", "b", "c"])), max_size=300)


def _allowed_times(
    limiter: RateLimiter, schedule: list[tuple[float, str]]
) -> dict[str, list[float]]:
    now = 1000.0
    allowed: dict[str, list[float]] = {}
    for gap, key in schedule:
        now += gap
        if limiter.check(key, now) == 0.0:
            allowed.setdefault(key, []).append(now)
    return allowed


@given(rates, bursts, requests)
def test_no_window_allows_more_than_rate_times_time_plus_burst(
    rate: int, burst: int, schedule: list[tuple[float, str]]
) -> None:
    limiter = RateLimiter(rate, burst)
    for times in _allowed_times(limiter, schedule).values():
        for i, start in enumerate(times):
            for j in range(i, len(times)):
                count = j - i + 1
                assert count <= burst + rate / 60 * (times[j] - start) + SLACK, (
                    f"{count} requests in {times[j] - start}s"
                )


@given(rates, bursts, st.integers(min_value=0, max_value=100))
def test_a_burst_passes_at_once_and_the_next_request_waits(
    rate: int, burst: int, extra: int
) -> None:
    limiter = RateLimiter(rate, burst)
    assert all(limiter.check("k", 5.0) == 0.0 for _ in range(burst))
    for _ in range(extra + 1):
        wait = limiter.check("k", 5.0)
        assert wait == pytest.approx(60 / rate)


@given(rates, bursts, st.integers(min_value=1, max_value=20))
def test_the_bucket_refills_at_the_rate(rate: int, burst: int, spent: int) -> None:
    limiter = RateLimiter(rate, burst)
    now = 0.0
    while limiter.check("k", now) == 0.0:
        pass
    for _ in range(spent):
        wait = limiter.check("k", now)
        assert wait > 0
        # Half the wait is not enough; the whole wait is.
        assert limiter.check("k", now + wait / 2) > 0
        now += wait
        assert limiter.check("k", now) == 0.0
    # After burst / rate of quiet, the whole burst is back.
    now += burst * 60 / rate
    assert all(limiter.check("k", now) == 0.0 for _ in range(burst))
    assert limiter.check("k", now) > 0


@given(
    rates,
    bursts,
    st.integers(min_value=0, max_value=50),
    st.floats(min_value=0.0, max_value=3.0),
)
def test_quiet_time_refills_but_never_banks_more_than_a_burst(
    rate: int, burst: int, used: int, quiet_bursts: float
) -> None:
    limiter = RateLimiter(rate, burst)
    used = min(used, burst)
    for _ in range(used):
        assert limiter.check("k", 0.0) == 0.0
    # Quiet for up to three refill periods, then everything at one instant.
    later = quiet_bursts * burst * 60 / rate
    refilled = later * rate / 60
    allowed = sum(limiter.check("k", later) == 0.0 for _ in range(3 * burst + 1))
    assert allowed <= burst
    assert min(burst, burst - used + math.floor(refilled - SLACK)) <= allowed
    assert allowed <= min(burst, burst - used + math.floor(refilled + SLACK))


@given(rates, bursts)
def test_keys_are_independent(rate: int, burst: int) -> None:
    limiter = RateLimiter(rate, burst)
    while limiter.check("flood", 0.0) == 0.0:
        pass
    assert all(limiter.check("quiet", 0.0) == 0.0 for _ in range(burst))
    assert limiter.check("flood", 0.0) > 0


@given(st.integers(min_value=1, max_value=50), st.lists(st.integers(0, 500), max_size=400))
def test_memory_is_bounded_by_max_keys(max_keys: int, keys: list[int]) -> None:
    limiter = RateLimiter(60, 5, max_keys=max_keys)
    for n, key in enumerate(keys):
        limiter.check(str(key), n * 0.001)
        assert len(limiter) <= max_keys


def test_idle_keys_are_forgotten() -> None:
    limiter = RateLimiter(60, 10)
    for n in range(1000):
        limiter.check(f"client-{n}", 0.0)
    assert len(limiter) == 1000
    # Ten seconds refill a 10-token bucket at one token a second: every key is idle.
    limiter.check("late", 10.0)
    assert len(limiter) == 1


def test_an_active_key_keeps_its_bucket_while_others_come_and_go() -> None:
    limiter = RateLimiter(60, 3, max_keys=2)
    assert [limiter.check("busy", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    for n in range(100):
        # "busy" is seen between every newcomer, so the newcomers are the ones forgotten.
        limiter.check(f"other-{n}", 0.0)
        assert limiter.check("busy", 0.0) > 0


def test_a_clock_stepping_back_mints_no_tokens() -> None:
    limiter = RateLimiter(60, 1)
    assert limiter.check("k", 100.0) == 0.0
    assert limiter.check("k", 50.0) > 0
    assert limiter.check("k", 100.5) > 0
    assert limiter.check("k", 101.0) == 0.0


@pytest.mark.parametrize(("rate", "burst", "max_keys"), [(0, 1, 1), (1, 0, 1), (1, 1, 0)])
def test_figures_must_be_positive(rate: int, burst: int, max_keys: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        RateLimiter(rate, burst, max_keys=max_keys)
