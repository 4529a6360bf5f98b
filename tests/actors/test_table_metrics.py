"""What the table actor counts for ``GET /metrics``: settled orders by outcome, error replies by code, resends
answered from the window, the place_order time until the intent is committed, and actors in memory."""

from __future__ import annotations

from typing import Any

from tableside.actors.messages import Command
from tableside.metrics import METRICS
from tableside.pos.interface import Accepted, Rejected, Unknown
from tableside.protocol import AddItem, PlaceOrder, RemoveItem
from tests.actors import test_table_actor as base
from tests.actors.test_table_actor import ScriptedPos, connect, settle

world = base.world  # the same fixture


def sample(name: str, **labels: str) -> float:
    return METRICS.registry.get_sample_value(name, labels) or 0.0


async def test_orders_errors_and_resends_are_counted(world: Any) -> None:
    before = {
        outcome: sample("tableside_orders_total", outcome=outcome) for outcome in ("confirmed", "failed", "unknown")
    }
    errors_before = {code: sample("tableside_errors_total", code=code) for code in ("not_found", "empty_cart")}
    resends_before = sample("tableside_duplicate_requests_total")
    timed_before = sample("tableside_place_order_seconds_count")
    actors_before = sample("tableside_active_table_actors")

    directory = world.make(ScriptedPos([Rejected("no"), Unknown("timeout"), *[Unknown("timeout")] * 3, Accepted("T")]))
    a = await world.join()
    ref, sink = await connect(directory, a)
    assert sample("tableside_active_table_actors") == actors_before + 1
    assert (await ref.ask(Command(a.member_id, sink, PlaceOrder("p0", None, ""))))["code"] == "empty_cart"
    await ref.ask(Command(a.member_id, sink, AddItem("1", "miso", 1, "")))
    await ref.ask(Command(a.member_id, sink, AddItem("1", "miso", 1, "")))  # a resend
    assert (await ref.ask(Command(a.member_id, sink, RemoveItem("2", "L404"))))["code"] == "not_found"
    await ref.ask(Command(a.member_id, sink, PlaceOrder("p1", None, "")))  # refused by the POS
    await settle()
    await ref.ask(Command(a.member_id, sink, PlaceOrder("p2", None, "")))  # unknown after every retry
    for _ in range(4):
        await settle()
        await world.clock.advance(10)
    await settle()
    await ref.ask(Command(a.member_id, sink, PlaceOrder("p3", None, "")))  # resumed: accepted
    await settle()
    assert sink.of_type("order_confirmed")

    assert {o: sample("tableside_orders_total", outcome=o) - n for o, n in before.items()} == {
        "confirmed": 1,
        "failed": 1,
        "unknown": 1,
    }
    assert {c: sample("tableside_errors_total", code=c) - n for c, n in errors_before.items()} == {
        "not_found": 1,
        "empty_cart": 1,
    }
    assert sample("tableside_duplicate_requests_total") == resends_before + 1
    assert sample("tableside_place_order_seconds_count") == timed_before + 2  # two intents committed
    await directory.stop_all()
    assert sample("tableside_active_table_actors") == actors_before
