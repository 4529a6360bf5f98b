"""JSON encoding shared by both stores, so MemoryStore accepts and returns exactly what jsonb would."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import orjson

from tableside.storage.interface import GroupWrite, InvalidWrite


def dumps(value: Any) -> str:
    # Compact separators: smaller rows and less to parse on the server. allow_nan=False because jsonb
    # rejects NaN/Infinity - better a per-write error here than a failed statement for the whole batch.
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


@dataclass(slots=True)
class EncodedWrite:
    """A write as the stores send it: exactly one of ``state`` (a new snapshot) and ``record`` (an op
    record) is set; ``last_updated`` is the group's activity time after the write (``close_idle_groups``)."""

    state: str | None
    record: str | None
    items: str | None
    last_updated: float


def _finite(value: Any) -> bool:
    """Every float in an op (a list of ints, strings and, in principle, floats) is finite."""
    for v in value:
        if isinstance(v, float) and not math.isfinite(v):
            return False
        if isinstance(v, list | dict) and not _finite(v.values() if isinstance(v, dict) else v):
            return False
    return True


def _encode_record(record: dict[str, Any]) -> tuple[str, float]:
    # The op record is the hot path (one per cart batch): orjson, which writes NaN/Infinity as null
    # instead of refusing them, so the floats are checked first (``t``, and any in the ops).
    t = record.get("t")
    if not isinstance(t, int | float) or isinstance(t, bool) or not math.isfinite(t):
        raise ValueError(f"op record time {t!r} is not a finite number")
    if not isinstance(record.get("ops"), list) or not all(isinstance(op, list) for op in record["ops"]):
        raise ValueError("op record ops are not a list of lists")
    if not all(_finite(op) for op in record["ops"]):
        raise ValueError("op record holds NaN or Infinity")
    return orjson.dumps(record).decode(), float(t)


def encode_write(w: GroupWrite) -> EncodedWrite:
    """The JSON text of a write's state (or op record) and order items; raises InvalidWrite if they are
    not JSON (NaN and Infinity included: jsonb refuses them)."""
    try:
        items = None if w.order is None else dumps(w.order.items)
        if w.ops is not None:
            record, t = _encode_record(w.ops)
            return EncodedWrite(None, record, items, t)
        state = w.snapshot.state
        raw = state.get("last_updated", 0.0) if isinstance(state, dict) else 0.0
        last = float(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) else 0.0
        return EncodedWrite(dumps(state), None, items, last)
    except (TypeError, ValueError, orjson.JSONEncodeError) as e:
        raise InvalidWrite(f"group {w.snapshot.group_id}: state or order items are not JSON: {e}") from e
