"""A pure token-bucket rate limiter.

Time is passed in rather than read from a clock so the bucket is deterministic in tests and the caller
decides which clock (monotonic, fake) applies.
"""

from __future__ import annotations

_EPSILON = 1e-9


class TokenBucket:
    """Allows bursts of up to ``burst`` events, refilled at ``rate`` tokens per second."""

    __slots__ = ("rate", "burst", "_tokens", "_last")

    def __init__(self, rate: float, burst: int) -> None:
        if not rate > 0:
            raise ValueError("rate must be > 0")
        if burst < 1:
            raise ValueError("burst must be >= 1")
        self.rate: float = float(rate)
        self.burst: int = burst
        self._tokens: float = float(burst)
        self._last: float | None = None

    @property
    def tokens(self) -> float:
        """Tokens left after the last ``allow`` call (not refilled to "now": no clock here)."""
        return self._tokens

    def allow(self, now: float, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens at time ``now`` if available; return whether the event is allowed."""
        if self._last is None:
            self._last = now
        elif now > self._last:
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
            self._last = now
        # A clock that goes backwards (now < last) refills nothing and does not move ``_last`` back, so a
        # skewed caller cannot mint tokens by alternating timestamps.
        # The epsilon absorbs float drift from many small refills (0.1 s * 10/s summed 10 times is
        # 0.9999999999999999), which would otherwise refuse an event that arrives exactly on schedule.
        if self._tokens + _EPSILON >= cost:
            self._tokens = max(self._tokens - cost, 0.0)
            return True
        return False

    def wait_s(self, cost: float = 1.0) -> float:
        """Seconds from the last ``allow`` call until ``cost`` tokens are there (0 when they are now):
        what a refused caller is told to wait (HTTP ``Retry-After``)."""
        return max(cost - self._tokens, 0.0) / self.rate
