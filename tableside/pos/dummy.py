"""An in-process stand-in for a POS (seed 004's mock: 3 s latency, 90 % success).

Unlike the seed's mock it honours the idempotency key, because the submitter relies on that: a key that
was accepted returns the same ticket forever and a key that was rejected stays rejected."""

from __future__ import annotations

import random

from tableside.clock import Clock
from tableside.pos.interface import Accepted, LookupResult, PosOrder, PosOutcome, Rejected, Unknown


class DummyPosAdapter:
    name = "dummy"

    def __init__(
        self,
        latency_ms: int = 3000,
        success_rate: float = 0.9,
        *,
        clock: Clock,
        rng: random.Random | None = None,
    ) -> None:
        if not 0.0 <= success_rate <= 1.0:
            raise ValueError(f"success_rate must be in [0, 1], got {success_rate}")
        self.latency_ms = latency_ms
        self.success_rate = success_rate
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self.tickets: dict[str, str] = {}  # order_id -> ticket_id
        self.rejected: dict[str, str] = {}  # order_id -> reason
        self.submissions = 0  # every submit call, duplicates included
        self.lookups = 0
        # Pending fault injections for tests of callers: (count, create_ticket) of Unknown replies.
        self._unknown_next = 0
        self._unknown_creates = False

    def fail_next_unknown(self, n: int, *, create_ticket: bool = False) -> None:
        """Make the next ``n`` submits of new keys answer ``Unknown``; with ``create_ticket`` the ticket is
        made anyway (the "accepted but the reply got lost" case the submitter must survive)."""
        self._unknown_next = n
        self._unknown_creates = create_ticket

    async def submit(self, order: PosOrder, timeout: float) -> PosOutcome:
        # ``timeout`` is enforced by the submitter through the clock; the dummy just takes its time.
        self.submissions += 1
        await self._clock.sleep(self.latency_ms / 1000)
        key = order.order_id
        if key in self.tickets:
            return Accepted(self.tickets[key])
        if key in self.rejected:
            return Rejected(self.rejected[key])
        if self._unknown_next > 0:
            self._unknown_next -= 1
            if self._unknown_creates:
                self._create(key)
            return Unknown("injected: reply lost")
        if self._rng.random() < self.success_rate:
            return Accepted(self._create(key))
        self.rejected[key] = "POS system unavailable"
        return Rejected(self.rejected[key])

    async def lookup(self, order_id: str, timeout: float) -> LookupResult:
        self.lookups += 1
        # Same latency as a submit: the dummy models one slow link to the POS, whatever the call.
        await self._clock.sleep(self.latency_ms / 1000)
        ticket = self.tickets.get(order_id)
        return LookupResult(found=ticket is not None, ticket_id=ticket)

    async def close(self) -> None:
        return None

    def _create(self, key: str) -> str:
        ticket = f"DUMMY-{len(self.tickets) + 1:06d}"
        self.tickets[key] = ticket
        return ticket
