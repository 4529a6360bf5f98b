"""The table actor's log tells what happened to a table and to each order, by id: staff trace an order that a
guest asks about (intent, every POS attempt, outcome) and an actor's life (started from which revision,
stopped why) from these lines. Every line carries the table and the group."""

from __future__ import annotations

import ast
import logging
import re
from typing import Any

import pytest

from tableside.actors.base import StopReason
from tableside.actors.messages import Command, Disconnect
from tableside.pos.interface import Unknown
from tableside.protocol import AddItem, Leave, PlaceOrder
from tests.actors import test_table_actor as base
from tests.actors.test_table_actor import ScriptedPos, connect, settle

world = base.world  # the same fixture

_PAIR = re.compile(r"(\w+)=('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|\S+)")


def events(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    out = []
    for record in caplog.get_records("call"):
        fields = {}
        for key, raw in _PAIR.findall(record.getMessage()):
            try:
                fields[key] = ast.literal_eval(raw)
            except (ValueError, SyntaxError):
                fields[key] = raw
        out.append(fields)
    return out


def find(log: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [e for e in log if e.get("event") == event]


async def test_an_orders_life_and_the_actors_life_are_in_the_log(world: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    directory = world.make(ScriptedPos([Unknown("timeout")] * 4), max_members=2, idle_seconds=1000)
    a, b = await world.join(ttl=60, max_members=2), await world.join(max_members=2)
    ref, sink_a = await connect(directory, a)
    _, sink_b = await connect(directory, b)
    await ref.ask(Command(a.member_id, sink_a, AddItem("1", "miso", 2, "")))
    placed = await ref.ask(Command(a.member_id, sink_a, PlaceOrder("2", None, "")))
    order_id = placed["order_id"]
    for _ in range(4):
        await world.clock.advance(10)
        await settle()
    await ref.ask(Command(b.member_id, sink_b, PlaceOrder("3", None, "")))  # resumes; the POS accepts now
    await settle()
    await ref.ask(Disconnect(a.member_id, sink_a))
    await world.clock.advance(61)  # a's token expired: a newcomer at the full list makes room
    c = await world.join(max_members=2)
    await connect(directory, c)
    await ref.ask(Command(b.member_id, sink_b, Leave("4")))
    await directory.stop_all()
    assert await ref.wait_stopped() == StopReason.SHUTDOWN

    log = events(caplog)
    table = {"table_id": a.table_id, "group_id": a.group_id}
    assert find(log, "actor_started") == [
        {"event": "actor_started", **table, "revision": 0, "closed": False, "epoch": 1, "level": "info"}
    ]
    assert find(log, "actor_stopped") == [{"event": "actor_stopped", **table, "reason": "shutdown", "level": "info"}]
    [intent] = find(log, "order_intent")
    assert intent == {"event": "order_intent", **table, "order_id": order_id, "member_id": a.member_id, "total": 700, "level": "info"}
    [unknown] = find(log, "order_outcome_unknown")
    assert unknown == {"event": "order_outcome_unknown", **table, "order_id": order_id, "reason": "timeout", "level": "warning"}
    [confirmed] = find(log, "order_confirmed")
    assert confirmed == {
        "event": "order_confirmed", **table, "order_id": order_id, "ticket_id": f"ticket-{order_id}", "level": "info"
    }
    submits = find(log, "pos.submit")  # 1 + 3 retries, then 1 on resuming
    assert len(submits) == 5 and all(s["order_id"] == order_id and s["table_id"] == a.table_id for s in submits)
    assert [e["phase"] for e in find(log, "pos.lookup")] == ["retry", "retry", "retry", "resume"]
    assert find(log, "member_left_group") == [
        {"event": "member_left_group", **table, "member_id": b.member_id, "level": "info"}
    ]
    assert find(log, "members_expired") == [{"event": "members_expired", **table, "count": 1, "level": "info"}]


async def test_a_refused_order_is_in_the_log_with_its_reason(world: Any, caplog: pytest.LogCaptureFixture) -> None:
    from tableside.pos.interface import Rejected

    caplog.set_level(logging.INFO)
    directory = world.make(ScriptedPos([Rejected("kitchen closed")]))
    a = await world.join()
    ref, sink = await connect(directory, a)
    await ref.ask(Command(a.member_id, sink, AddItem("1", "miso", 1, "")))
    placed = await ref.ask(Command(a.member_id, sink, PlaceOrder("2", None, "")))
    await settle()
    [failed] = find(events(caplog), "order_failed")
    assert failed == {
        "event": "order_failed",
        "table_id": a.table_id,
        "group_id": a.group_id,
        "order_id": placed["order_id"],
        "error": "kitchen closed",
        "level": "info",
    }
