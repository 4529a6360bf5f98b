"""docs/architecture.md, "Actor lifecycle" and "Time, limits and failure": the states, the stop reasons,
asks pending at stop failing with ``ActorDead`` instead of hanging, an exception stopping only that actor
(its members reconnect and the group reactivates from the last committed snapshot) and a stale revision
stopping it with ``STORAGE_CONFLICT``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tableside.actors.base import Actor, ActorDead, ActorState, MailboxFull, StopReason
from tableside.actors.messages import Command, GetCart
from tableside.actors.table import CLOSE_RELOCATED
from tableside.protocol import AddItem, GetSnapshot, Ping, PlaceOrder
from tests.actors import test_table_actor as tta
from tests.actors.test_table_actor import DummyPosAdapter, connect
from tests.client import eventually

world = tta.world  # the same in-memory world as the TableActor tests


class Probe(Actor[str]):
    def __init__(self, *, fail_start: bool = False) -> None:
        super().__init__("probe")
        self.fail_start = fail_start
        self.gate = asyncio.Event()
        self.states: list[ActorState] = []
        self.stopped_with: StopReason | None = None

    async def on_start(self) -> None:
        self.states.append(self.state)
        if self.fail_start:
            raise RuntimeError("cannot start")

    async def on_receive(self, message: str) -> Any:
        self.states.append(self.state)
        if message == "wait":
            await self.gate.wait()
        if message == "boom":
            raise ValueError("boom")
        return message.upper()

    async def on_stop(self, reason: StopReason) -> None:
        self.states.append(self.state)
        self.stopped_with = reason


async def test_states_in_order_and_asks_pending_at_stop_fail_with_actor_dead() -> None:
    probe = Probe()
    assert probe.state is ActorState.CREATED
    ref = probe.start()
    assert await ref.ask("hi") == "HI"
    ref.tell("wait")
    ref.stop(StopReason.IDLE)
    late = asyncio.ensure_future(ref.ask("late"))  # queued behind the stop
    probe.gate.set()
    with pytest.raises(ActorDead) as dead:
        await asyncio.wait_for(late, 5)
    assert dead.value.reason is StopReason.IDLE
    assert await ref.wait_stopped() is StopReason.IDLE and not ref.alive
    assert probe.states == [ActorState.STARTING, ActorState.RUNNING, ActorState.RUNNING, ActorState.STOPPING]
    assert probe.state is ActorState.STOPPED and probe.stopped_with is StopReason.IDLE
    with pytest.raises(ActorDead):
        await ref.ask("after")


async def test_a_cancelled_actor_fails_its_queued_asks() -> None:
    probe = Probe()
    ref = probe.start()
    await ref.ask("hi")
    ref.tell("wait")
    queued = asyncio.ensure_future(ref.ask("queued"))
    await asyncio.sleep(0)
    assert probe._task is not None
    probe._task.cancel()
    with pytest.raises(ActorDead):
        await asyncio.wait_for(queued, 5)
    assert await ref.wait_stopped() is StopReason.SHUTDOWN


async def test_on_start_raising_is_start_failed(caplog: pytest.LogCaptureFixture) -> None:
    probe = Probe(fail_start=True)
    ref = probe.start()
    waiting = asyncio.ensure_future(ref.ask("hi"))
    assert await ref.wait_stopped() is StopReason.START_FAILED
    with pytest.raises(ActorDead):
        await asyncio.wait_for(waiting, 5)
    assert probe.stopped_with is StopReason.START_FAILED  # on_stop still runs
    assert any("actor_start_failed" in r.getMessage() for r in caplog.records)
    caplog.clear()  # the ERROR was expected


async def test_an_exception_stops_only_that_actor_and_the_group_reactivates(
    world: Any, caplog: pytest.LogCaptureFixture
) -> None:
    directory = world.make(DummyPosAdapter(0, 1.0, clock=world.clock))
    a, other = await world.join("T001"), await world.join("T002")
    ref, sink = await connect(directory, a)
    other_ref, _ = await connect(directory, other)
    assert (await ref.ask(Command(a.member_id, sink, AddItem("1", "gyoza", 2, ""))))["type"] == "ack"
    actor = directory._actors[a.group_id]

    async def broken(*args: Any) -> Any:
        raise RuntimeError("bug")

    actor._on_command = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        await ref.ask(Command(a.member_id, sink, AddItem("2", "gyoza", 1, "")))
    assert await ref.wait_stopped() is StopReason.FAILED
    assert sink.closed is not None and sink.closed[0] == CLOSE_RELOCATED  # members reconnect
    assert other_ref.alive and (await other_ref.ask(GetCart()))["items"] == []  # the others live on
    ref2, sink2 = await connect(directory, a)  # reactivated from the last committed snapshot
    assert ref2.alive
    [line] = sink2.of_type("welcome")[0]["cart"]["items"]
    assert (line["menu_item_id"], line["qty"]) == ("gyoza", 2)
    caplog.clear()  # the ERROR lines of the failure were the point


async def test_a_stale_revision_stops_the_actor_with_storage_conflict(
    world: Any, caplog: pytest.LogCaptureFixture
) -> None:
    old_node = world.make(DummyPosAdapter(0, 1.0, clock=world.clock))
    new_node = world.make(DummyPosAdapter(0, 1.0, clock=world.clock))
    a = await world.join("T001")
    old_ref, old_sink = await connect(old_node, a)
    new_ref, new_sink = await connect(new_node, a)  # a second activation of the same group
    assert (await new_ref.ask(Command(a.member_id, new_sink, AddItem("1", "gyoza", 1, ""))))["type"] == "ack"
    try:
        await old_ref.ask(Command(a.member_id, old_sink, AddItem("2", "karaage", 1, "")))
    except Exception:  # the writer of the stale revision may get the error itself
        pass
    assert await old_ref.wait_stopped() is StopReason.STORAGE_CONFLICT
    assert old_sink.closed is not None and old_sink.closed[0] == CLOSE_RELOCATED
    assert not old_sink.of_type("ack")  # the stale change was never acknowledged
    assert new_ref.alive
    caplog.clear()


async def test_the_mailbox_is_bounded() -> None:
    probe = Probe()
    probe._mailbox_limit = 3
    ref = probe.start()
    ref.tell("wait")
    await asyncio.sleep(0)  # the actor is now busy with "wait"
    for i in range(3):
        ref.tell(str(i))
    with pytest.raises(MailboxFull):
        ref.tell("one too many")
    probe.gate.set()
    await eventually(lambda: not probe._mailbox, what="the mailbox to drain")
    assert await ref.ask("x") == "X"  # room again once the queue drains
    assert Probe()._mailbox_limit == 10_000  # the documented bound, by default


async def test_while_the_pos_call_runs_beside_it_the_actor_answers(world: Any) -> None:
    directory = world.make(DummyPosAdapter(3000, 1.0, clock=world.clock))  # the POS answers after 3 s
    a = await world.join()
    ref, sink = await connect(directory, a)
    await ref.ask(Command(a.member_id, sink, AddItem("1", "gyoza", 1, "")))
    await ref.ask(Command(a.member_id, sink, PlaceOrder("2", None, "")))
    assert sink.of_type("ack")[-1]["id"] == "2"  # intent committed, POS call in flight
    await ref.ask(Command(a.member_id, sink, Ping("3")))
    await ref.ask(Command(a.member_id, sink, GetSnapshot("4")))
    await ref.ask(Command(a.member_id, sink, AddItem("5", "gyoza", 1, "")))
    by_id = {m.get("id"): m for m in sink.messages}
    assert by_id["3"]["type"] == "pong"
    assert by_id["4"]["cart"]["cart_locked"] is True
    assert by_id["5"]["type"] == "error" and by_id["5"]["code"] == "cart_locked"
    assert not sink.of_type("order_confirmed")  # all of that while the POS had not answered
    await world.clock.advance(3.0)
    await tta.settle()
    assert sink.of_type("order_confirmed")


async def test_the_cart_holds_at_most_max_cart_lines(world: Any) -> None:
    directory = world.make(DummyPosAdapter(0, 1.0, clock=world.clock), max_cart_lines=3)
    a = await world.join()
    ref, sink = await connect(directory, a)
    for i, item in enumerate(["gyoza", "karaage", "edamame", "miso"]):
        await ref.ask(Command(a.member_id, sink, AddItem(f"a{i}", item, 1, "")))
    by_id = {m.get("id"): m for m in sink.messages}
    assert [by_id[f"a{i}"]["type"] for i in range(4)] == ["ack", "ack", "ack", "error"]
    assert "full" in by_id["a3"]["message"]
    from tableside.actors.table import TableContext

    assert TableContext.__dataclass_fields__["max_cart_lines"].default == 100  # the documented bound
