"""Cart deltas for the v2 subprotocols: pure functions over cart views (``GroupState.view``).

A cart view is ``{"items": [line, ...], <summary fields>}`` where every line has a stable ``line_id``.
``cart_delta(before, after)`` says how to get from one to the other:

    {"added": [line, ...], "changed": [line, ...], "removed": [line_id, ...], "totals": {...}}

``added`` and ``changed`` carry whole lines (a changed line replaces the old one, so a key that went away,
such as ``unavailable``, goes away); ``totals`` carries every summary field of ``after`` (everything but
``items``: total, lock state, revision, last_updated...). ``apply_delta(before, delta)`` rebuilds ``after``:
kept lines stay in their order, changed lines are replaced in place, added lines are appended (new lines
always come last in a cart). ``tableside/web/static/guest.js`` mirrors ``apply_delta``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def cart_delta(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    old = {line["line_id"]: line for line in before.get("items", ())}
    added: list[dict[str, Any]] = []
    changed: list[dict[str, Any]] = []
    seen: set[str] = set()
    for line in after.get("items", ()):
        line_id = line["line_id"]
        seen.add(line_id)
        previous = old.get(line_id)
        if previous is None:
            added.append(dict(line))
        elif previous != line:
            changed.append(dict(line))
    removed = [line_id for line_id in old if line_id not in seen]
    totals = {key: value for key, value in after.items() if key != "items"}
    return {"added": added, "changed": changed, "removed": removed, "totals": totals}


def apply_delta(cart: Mapping[str, Any], delta: Mapping[str, Any]) -> dict[str, Any]:
    """The cart ``delta`` leads to from ``cart`` (which is not modified)."""
    removed = set(delta.get("removed", ()))
    changed = {line["line_id"]: line for line in delta.get("changed", ())}
    items = [dict(changed.get(line["line_id"], line)) for line in cart.get("items", ()) if line["line_id"] not in removed]
    items.extend(dict(line) for line in delta.get("added", ()))
    out: dict[str, Any] = {"items": items}
    out.update(delta.get("totals", {}))
    return out
