"""Applying a v2 ``cart_delta`` to the cart a member holds (the generator's copy of
``tableside.protocol.delta.apply_delta``; tests/bench checks that both agree).

The bench keeps its own few lines instead of importing the server package so that a generator process stays
independent of it (it also drives the baselines, which have no tableside behind them) and so that it can
reuse the line dicts it already holds instead of copying each line on every delta: a member's cart is only
ever read, never modified in place, and the generator shares the cores with the server it measures."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Msg = dict[str, Any]


def apply_delta(cart: Mapping[str, Any], changes: Mapping[str, Any]) -> Msg:
    """The cart after ``changes`` (``{added, changed, removed, totals}``): removed lines dropped, changed lines
    replaced in place, added lines appended, every summary field taken from ``totals``."""
    items: list[Any] = list(cart.get("items") or ())
    removed = changes.get("removed") or ()
    changed = changes.get("changed") or ()
    if removed or changed:
        gone = set(removed)
        repl = {line["line_id"]: line for line in changed}
        items = [repl.get(line["line_id"], line) for line in items if line["line_id"] not in gone]
    added = changes.get("added")
    if added:
        items.extend(added)
    out: Msg = {"items": items}
    out.update(changes.get("totals") or {})
    return out
