"""An in-process stand-in for a payment provider (``TABLESIDE_PAYMENTS__ADAPTER=dummy``).

Deterministic per key: the first charge of a key draws its outcome once (``success_rate``) and every later
charge or lookup of that key answers the same (idempotent). A charge takes ``latency_ms`` on the injected
clock; a lookup made while it is still in flight answers UNKNOWN until its latency has passed. A key never
charged looks up as FAILED (no money was taken)."""

from __future__ import annotations

import random

from tableside.clock import Clock
from tableside.payments.interface import PaymentOutcome, PaymentUnknown


class DummyPayments:
    name = "dummy"

    def __init__(
        self,
        latency_ms: int = 1500,
        success_rate: float = 0.9,
        *,
        clock: Clock,
        rng: random.Random | None = None,
    ) -> None:
        if not 0.0 <= success_rate <= 1.0:
            raise ValueError(f"success_rate must be in [0, 1], got {success_rate}")
        if latency_ms < 0:
            raise ValueError("latency_ms must not be negative")
        self.latency_ms = latency_ms
        self.success_rate = success_rate
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        # key -> (outcome, when it is decided on the monotonic clock, amount)
        self._charges: dict[str, tuple[PaymentOutcome, float, int]] = {}
        self.charges = 0  # every charge call, repeats included
        self.lookups = 0
        self._lost_next = 0  # charges whose answer is lost (PaymentUnknown) although they go through
        self._lookup_errors_next = 0

    def lose_next_answers(self, n: int) -> None:
        """The next ``n`` charges go through but raise PaymentUnknown (the reply got lost)."""
        self._lost_next = n

    def fail_next_lookups(self, n: int) -> None:
        """The next ``n`` lookups raise PaymentUnknown (the provider cannot be reached)."""
        self._lookup_errors_next = n

    def amount_charged(self, key: str) -> int | None:
        got = self._charges.get(key)
        return got[2] if got is not None and got[0] == PaymentOutcome.COMPLETED else None

    async def charge(self, key: str, amount: int, description: str) -> PaymentOutcome:
        self.charges += 1
        if key not in self._charges:
            outcome = PaymentOutcome.COMPLETED if self._rng.random() < self.success_rate else PaymentOutcome.FAILED
            self._charges[key] = (outcome, self._clock.monotonic() + self.latency_ms / 1000, amount)
        outcome, ready_at, _ = self._charges[key]
        wait = ready_at - self._clock.monotonic()
        if wait > 0:
            await self._clock.sleep(wait)
        if self._lost_next > 0:
            self._lost_next -= 1
            raise PaymentUnknown("injected: the provider's reply got lost")
        return outcome

    async def lookup(self, key: str) -> PaymentOutcome:
        self.lookups += 1
        if self._lookup_errors_next > 0:
            self._lookup_errors_next -= 1
            raise PaymentUnknown("injected: lookup failed")
        got = self._charges.get(key)
        if got is None:
            return PaymentOutcome.FAILED
        outcome, ready_at, _ = got
        if self._clock.monotonic() < ready_at:
            return PaymentOutcome.UNKNOWN
        return outcome

    async def close(self) -> None:
        return None
