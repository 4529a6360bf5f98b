"""POS integration: the adapter contract, exactly-once submission, a dummy, an HTTP adapter and a simulator."""

from tableside.pos.dummy import DummyPosAdapter
from tableside.pos.factory import POS_KINDS, build_pos_adapter
from tableside.pos.http import HttpPosAdapter
from tableside.pos.interface import (
    Accepted,
    LookupResult,
    PosAdapter,
    PosOrder,
    PosOutcome,
    Rejected,
    Unknown,
)
from tableside.pos.submitter import EventLog, RetryPolicy, submit_exactly_once

__all__ = [
    "POS_KINDS",
    "Accepted",
    "DummyPosAdapter",
    "EventLog",
    "HttpPosAdapter",
    "LookupResult",
    "PosAdapter",
    "PosOrder",
    "PosOutcome",
    "Rejected",
    "RetryPolicy",
    "Unknown",
    "build_pos_adapter",
    "submit_exactly_once",
]
