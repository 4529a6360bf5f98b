from __future__ import annotations

import pytest

from tableside.protocol import TokenBucket


def test_burst_then_refused() -> None:
    bucket = TokenBucket(rate=2.0, burst=3)
    assert [bucket.allow(100.0) for _ in range(4)] == [True, True, True, False]


def test_refill_at_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=3)
    for _ in range(3):
        assert bucket.allow(0.0)
    assert not bucket.allow(0.25)  # 0.5 token
    assert bucket.allow(0.5)  # 1 token accumulated since t=0
    assert not bucket.allow(0.5)
    assert bucket.allow(1.0)


def test_refill_is_capped_at_burst() -> None:
    bucket = TokenBucket(rate=10.0, burst=2)
    assert bucket.allow(0.0)
    assert [bucket.allow(1000.0) for _ in range(3)] == [True, True, False]


def test_clock_going_backwards_mints_nothing() -> None:
    bucket = TokenBucket(rate=1.0, burst=1)
    assert bucket.allow(10.0)
    assert not bucket.allow(5.0)
    assert not bucket.allow(10.5)  # half a token since t=10, not since t=5
    assert bucket.allow(11.0)


def test_cost() -> None:
    bucket = TokenBucket(rate=1.0, burst=5)
    assert bucket.allow(0.0, cost=5)
    assert not bucket.allow(0.0, cost=0.5)
    assert bucket.allow(0.5, cost=0.5)


def test_sustained_rate() -> None:
    bucket = TokenBucket(rate=5.0, burst=1)
    # 100/s offered for 10 s; 0.01 steps are inexact in binary, so this also exercises drift tolerance.
    allowed = sum(bucket.allow(i * 0.01) for i in range(1000))
    assert allowed == 50


def test_on_schedule_events_survive_float_drift() -> None:
    bucket = TokenBucket(rate=10.0, burst=1)
    now = 0.0
    for _ in range(100):
        assert bucket.allow(now)
        now += 0.1  # accumulates float error; each event still arrives exactly one token later


@pytest.mark.parametrize("rate, burst", [(0.0, 1), (-1.0, 1), (1.0, 0)])
def test_invalid_parameters(rate: float, burst: int) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate=rate, burst=burst)


def test_wait_s_is_the_time_until_the_next_token() -> None:
    bucket = TokenBucket(rate=2.0, burst=1)
    assert bucket.wait_s() == 0.0  # a full bucket: no wait
    assert bucket.allow(10.0)
    assert bucket.wait_s() == 0.5  # empty: one token at 2/s
    assert not bucket.allow(10.2)
    assert abs(bucket.wait_s() - 0.3) < 1e-9  # 0.4 tokens refilled by 10.2
    assert bucket.wait_s(cost=3.0) > bucket.wait_s()

def test_smallest_valid_parameters() -> None:
    # Any positive rate (also below one token a second) and a burst of one are valid.
    bucket = TokenBucket(rate=0.5, burst=1)
    assert (bucket.rate, bucket.burst, bucket.tokens) == (0.5, 1, 1.0)
    assert bucket.allow(0.0)
    assert bucket.tokens == 0.0
    assert not bucket.allow(1.0)  # half a token
    assert bucket.allow(2.0)


@pytest.mark.parametrize(
    "rate, burst, message",
    [(0.0, 1, "rate must be > 0"), (float("nan"), 1, "rate must be > 0"), (1.0, 0, "burst must be >= 1")],
)
def test_invalid_parameters_are_named(rate: float, burst: int, message: str) -> None:
    with pytest.raises(ValueError) as info:
        TokenBucket(rate=rate, burst=burst)
    assert str(info.value) == message


def test_tokens_left_after_each_call() -> None:
    bucket = TokenBucket(rate=4.0, burst=2)
    assert bucket.tokens == 2.0  # a new bucket is full
    assert bucket.allow(10.0)
    assert bucket.tokens == 1.0
    assert bucket.allow(10.0, cost=0.5)
    assert bucket.tokens == 0.5
    assert bucket.allow(10.125)  # +0.5 token
    assert bucket.tokens == 0.0
