"""Payment adapters for reservations (issue 13), built like ``tableside.pos``: an adapter makes one attempt per
call and says what it knows; the policy (timeout, lookup until known) lives in the reservation service."""

from .dummy import DummyPayments
from .factory import PAYMENT_KINDS, build_payment_adapter
from .interface import PaymentAdapter, PaymentOutcome, PaymentUnknown

__all__ = [
    "PAYMENT_KINDS",
    "DummyPayments",
    "PaymentAdapter",
    "PaymentOutcome",
    "PaymentUnknown",
    "build_payment_adapter",
]
