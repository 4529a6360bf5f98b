"""Pick a payment adapter from configuration (``PaymentSettings``)."""

from __future__ import annotations

import random

from tableside.clock import Clock
from tableside.config import PaymentSettings
from tableside.payments.dummy import DummyPayments
from tableside.payments.interface import PaymentAdapter

PAYMENT_KINDS = ("dummy",)


def build_payment_adapter(settings: PaymentSettings, *, clock: Clock, rng: random.Random | None = None) -> PaymentAdapter:
    if settings.adapter == "dummy":
        return DummyPayments(settings.latency_ms, settings.success_rate, clock=clock, rng=rng)
    raise ValueError(f"unknown payment adapter {settings.adapter!r} (expected one of {', '.join(PAYMENT_KINDS)})")
