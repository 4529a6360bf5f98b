"""Kitchen ticket statuses: new -> preparing -> ready -> served, and ``recall`` one step back. Pure."""

from __future__ import annotations

KITCHEN_FLOW: tuple[str, ...] = ("new", "preparing", "ready", "served")
RECALL = "recall"


class InvalidKitchenTransition(ValueError):
    pass


def next_kitchen_status(current: str, requested: str) -> str:
    """The status a ticket moves to. Forward moves may skip steps (a cook "bumps" a ticket straight to
    ready); going back is only ``recall``, one step at a time; setting the current status is a no-op."""
    if current not in KITCHEN_FLOW:
        raise InvalidKitchenTransition(f"unknown current status {current!r}")
    here = KITCHEN_FLOW.index(current)
    if requested == RECALL:
        if here == 0:
            raise InvalidKitchenTransition("a new ticket cannot be recalled")
        return KITCHEN_FLOW[here - 1]
    if requested not in KITCHEN_FLOW:
        raise InvalidKitchenTransition(f"unknown status {requested!r}")
    if KITCHEN_FLOW.index(requested) < here:
        raise InvalidKitchenTransition(f"{current} -> {requested} goes back; use recall")
    return requested
