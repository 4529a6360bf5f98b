"""Pick a POS adapter from configuration."""

from __future__ import annotations

import random

from tableside.clock import Clock
from tableside.pos.dummy import DummyPosAdapter
from tableside.pos.http import HttpPosAdapter
from tableside.pos.interface import PosAdapter

POS_KINDS = ("dummy", "http")


def build_pos_adapter(
    kind: str,
    *,
    clock: Clock,
    latency_ms: int,
    success_rate: float,
    url: str | None,
    rng: random.Random | None = None,
) -> PosAdapter:
    """``latency_ms``/``success_rate`` configure the dummy; ``url`` is required for "http"."""
    if kind == "dummy":
        return DummyPosAdapter(latency_ms, success_rate, clock=clock, rng=rng)
    if kind == "http":
        if not url:
            raise ValueError("the http POS adapter needs a url")
        return HttpPosAdapter(url, clock)
    raise ValueError(f"unknown POS adapter kind {kind!r} (expected one of {', '.join(POS_KINDS)})")
