"""JSON encoding shared by both stores, so MemoryStore accepts and returns exactly what jsonb would."""

from __future__ import annotations

import json
from typing import Any

from tableside.storage.interface import GroupWrite, InvalidWrite


def dumps(value: Any) -> str:
    # Compact separators: smaller rows and less to parse on the server. allow_nan=False because jsonb
    # rejects NaN/Infinity - better a per-write error here than a failed statement for the whole batch.
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def encode_write(w: GroupWrite) -> tuple[str, str | None]:
    """The JSON text of a write's state and order items; raises InvalidWrite if they are not JSON."""
    try:
        return dumps(w.snapshot.state), None if w.order is None else dumps(w.order.items)
    except (TypeError, ValueError) as e:
        raise InvalidWrite(f"group {w.snapshot.group_id}: state or order items are not JSON: {e}") from e
