"""The payment adapter contract. The idempotency key (the payment id) makes a repeated charge harmless: a
key is charged at most once, and charging it again answers the first charge's outcome."""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol


class PaymentOutcome(StrEnum):
    COMPLETED = "completed"  # the money was taken
    FAILED = "failed"  # definitely not taken, and never will be for this key
    UNKNOWN = "unknown"  # not known yet (still in flight, or the provider could not say): look it up later


class PaymentUnknown(Exception):
    """The call did not give an answer (timeout, transport error): the charge may or may not have happened."""


class PaymentAdapter(Protocol):
    name: str

    async def charge(self, key: str, amount: int, description: str) -> PaymentOutcome:
        """Charge ``amount`` (minor units) once for ``key``. Raises PaymentUnknown when it cannot say."""

    async def lookup(self, key: str) -> PaymentOutcome:
        """What became of the charge of ``key``: FAILED when it was never made, UNKNOWN while still in
        flight. Raises PaymentUnknown when the lookup itself failed."""

    async def close(self) -> None: ...
