"""The ``Actor`` base (docs/architecture.md, "Actor lifecycle"): one message at a time in mailbox order, a
bounded mailbox, explicit states and stop reasons, and asks that fail with ``ActorDead`` instead of hanging
when the actor stops (or never starts). Plain test actors, no store, no clock, no real sleeps."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from tableside.actors.base import Actor, ActorDead, ActorRef, ActorState, MailboxFull, StopReason
from tests.actors.test_table_actor import settle


class Boom(Exception):
    pass


class Recorder(Actor[Any]):
    """Answers ``("done", message)``; raises ``Boom`` for messages starting with "fail"."""

    def __init__(self, name: str = "rec", *, keep_running: bool = False, **kw: Any) -> None:
        super().__init__(name, **kw)
        self.keep_running = keep_running
        self.handled: list[Any] = []
        self.stopped_with: list[StopReason] = []
        self.states: dict[str, ActorState] = {}
        self.asks_in_on_stop: list[BaseException | None] = []
        self.gate = asyncio.Event()  # the message "wait" blocks the actor until the gate opens
        self.gate.set()

    async def on_start(self) -> None:
        self.states["on_start"] = self.state

    async def on_receive(self, message: Any) -> Any:
        self.states["on_receive"] = self.state
        self.handled.append(message)
        if message == "wait":
            await self.gate.wait()
        if isinstance(message, str) and message.startswith("fail"):
            raise Boom(message)
        return ("done", message)

    async def on_failure(self, message: Any, exc: Exception) -> StopReason | None:
        if self.keep_running:
            return None
        return await super().on_failure(message, exc)

    async def on_stop(self, reason: StopReason) -> None:
        self.states["on_stop"] = self.state
        self.stopped_with.append(reason)
        # A message arriving during teardown is refused at once, never queued behind the end.
        try:
            await self.ref.ask("during-stop")
        except ActorDead as exc:
            self.asks_in_on_stop.append(exc)


class Batcher(Recorder):
    """Messages starting with "b" are batchable; records every batch handed to ``on_receive_batch``."""

    max_batch = 3

    def __init__(self) -> None:
        super().__init__("batcher")
        self.batches: list[list[Any]] = []

    def is_batchable(self, message: Any) -> bool:
        return isinstance(message, str) and message.startswith("b")

    async def on_receive_batch(self, messages: list[Any]) -> list[Any]:
        self.batches.append(list(messages))
        return await super().on_receive_batch(messages)


async def queue_behind_a_busy_actor(actor: Recorder, messages: list[Any]) -> list[asyncio.Future[Any]]:
    """Block the actor on "wait", then ask ``messages``: they are all in the mailbox, in order, on return.
    The caller opens ``actor.gate`` to let it go on."""
    actor.gate.clear()
    busy = asyncio.ensure_future(actor.ref.ask("wait"))
    await settle()
    asks = [asyncio.ensure_future(actor.ref.ask(m)) for m in messages]
    await settle()
    assert not busy.done()
    return asks


async def stopped(ref: ActorRef[Any]) -> StopReason | None:
    """The stop reason once the actor has stopped; fails (instead of hanging) if it has not."""
    waiter = asyncio.ensure_future(ref.wait_stopped())
    await settle()
    assert waiter.done(), "the actor did not stop"
    return waiter.result()


def expect_error_logs(caplog: pytest.LogCaptureFixture, *events: str, **fields: str) -> None:
    """Assert the ERROR records are exactly ``events`` and that each names what failed (every ``fields``
    key=value, e.g. the actor and the error), then clear them: they were expected."""
    errors = [r.getMessage() for r in caplog.get_records("call") if r.levelno >= logging.ERROR]
    assert len(errors) == len(events), errors
    for event, line in zip(events, errors, strict=True):
        assert line.startswith(f"event='{event}' "), errors
        for key, value in fields.items():
            assert f" {key}={value!r}" in line or f" {key}={value} " in line, (key, value, line)
    caplog.clear()


async def test_messages_are_handled_in_order_one_at_a_time_and_answered() -> None:
    actor = Recorder()
    ref = actor.start()
    assert ref.name == "rec"
    answers = await asyncio.gather(*(ref.ask(i) for i in range(5)))
    assert answers == [("done", i) for i in range(5)]
    ref.tell("told")
    assert await ref.ask("last") == ("done", "last")
    assert actor.handled == [0, 1, 2, 3, 4, "told", "last"]
    assert actor.states == {"on_start": ActorState.STARTING, "on_receive": ActorState.RUNNING}
    assert ref.alive and actor.stop_reason is None
    ref.stop(StopReason.SHUTDOWN)
    assert await stopped(ref) == StopReason.SHUTDOWN


async def test_lifecycle_states_and_stop_reason() -> None:
    actor = Recorder()
    assert actor.state is ActorState.CREATED and actor.ref.alive
    ref = actor.start()
    assert actor.state is ActorState.STARTING and ref.alive
    await settle()
    assert actor.state is ActorState.RUNNING and ref.alive and actor.stop_reason is None
    seen: list[StopReason | None] = []
    ref.on_stopped(seen.append)
    ref.stop(StopReason.IDLE)
    assert await stopped(ref) == StopReason.IDLE
    assert actor.state is ActorState.STOPPED and not ref.alive and actor.stop_reason == StopReason.IDLE
    # on_stop runs once, while STOPPING (not alive any more: a message sent then is refused at once)
    assert actor.stopped_with == [StopReason.IDLE] and actor.states["on_stop"] is ActorState.STOPPING
    assert len(actor.asks_in_on_stop) == 1
    assert seen == [StopReason.IDLE]


async def test_stop_comes_after_queued_messages_and_later_asks_get_actor_dead() -> None:
    actor = Recorder()
    ref = actor.start()
    assert await ref.ask("before") == ("done", "before")
    [queued_ask] = await queue_behind_a_busy_actor(actor, ["queued-ask"])
    ref.tell("queued")
    ref.stop(StopReason.SESSION_CLOSED)
    behind_stop = asyncio.ensure_future(ref.ask("behind-stop"))
    await settle()
    ref.stop(StopReason.SHUTDOWN)  # a second stop changes nothing: the first reason wins
    actor.gate.set()
    assert await stopped(ref) == StopReason.SESSION_CLOSED
    assert queued_ask.result() == ("done", "queued-ask")
    assert actor.handled == ["before", "wait", "queued-ask", "queued"]
    with pytest.raises(ActorDead) as dead:
        behind_stop.result()
    assert dead.value.reason == StopReason.SESSION_CLOSED
    assert "rec" in str(dead.value) and "session_closed" in str(dead.value)
    # After the stop: asks fail at once, tells are dropped without raising, stop is a no-op.
    with pytest.raises(ActorDead) as late:
        await ref.ask("late")
    assert late.value.reason == StopReason.SESSION_CLOSED
    ref.tell("dropped")
    ref.stop(StopReason.FAILED)
    assert actor.stop_reason == StopReason.SESSION_CLOSED and actor.stopped_with == [StopReason.SESSION_CLOSED]
    assert actor.handled == ["before", "wait", "queued-ask", "queued"]


async def test_stop_wakes_an_idle_actor() -> None:
    actor = Recorder()
    ref = actor.start()
    await settle()  # running, mailbox empty, waiting
    ref.stop(StopReason.SHUTDOWN)
    assert await stopped(ref) == StopReason.SHUTDOWN


async def test_failure_stops_with_failed_and_queued_asks_get_actor_dead(caplog: pytest.LogCaptureFixture) -> None:
    actor = Recorder()
    ref = actor.start()
    failing = asyncio.ensure_future(ref.ask("fail-1"))
    queued = asyncio.ensure_future(ref.ask("after"))
    assert await stopped(ref) == StopReason.FAILED
    with pytest.raises(Boom):  # the asker of the failing message gets the exception itself
        failing.result()
    with pytest.raises(ActorDead) as dead:
        queued.result()
    assert dead.value.reason == StopReason.FAILED
    assert actor.handled == ["fail-1"] and actor.stopped_with == [StopReason.FAILED]
    expect_error_logs(caplog, "actor_failed", actor="rec", error=repr(Boom("fail-1")), message="str")


async def test_on_failure_returning_none_keeps_the_actor_and_its_other_messages_going() -> None:
    actor = Recorder(keep_running=True)
    ref = actor.start()
    asks = [asyncio.ensure_future(ref.ask(m)) for m in ("a", "fail-2", "c")]
    await settle()
    assert asks[0].result() == ("done", "a") and asks[2].result() == ("done", "c")
    with pytest.raises(Boom):
        asks[1].result()
    ref.tell("fail-told")  # a failing tell is not reported to anyone and stops nothing
    assert await ref.ask("d") == ("done", "d")
    assert ref.alive and actor.stop_reason is None


async def test_start_failure_stops_with_start_failed_and_fails_waiting_asks(caplog: pytest.LogCaptureFixture) -> None:
    class NoStart(Recorder):
        async def on_start(self) -> None:
            await asyncio.sleep(0)
            raise Boom("cannot start")

    actor = NoStart("nostart")
    ref = actor.start()
    waiting = asyncio.ensure_future(ref.ask("hello"))
    assert await stopped(ref) == StopReason.START_FAILED
    with pytest.raises(ActorDead) as dead:
        waiting.result()
    assert dead.value.reason == StopReason.START_FAILED and "nostart" in str(dead.value)
    assert actor.handled == [] and actor.stopped_with == [StopReason.START_FAILED]
    assert actor.state is ActorState.STOPPED and not ref.alive
    expect_error_logs(caplog, "actor_start_failed", actor="nostart", error=repr(Boom("cannot start")))


async def test_failing_teardown_still_stops_and_fails_waiting_asks(caplog: pytest.LogCaptureFixture) -> None:
    class BadStop(Recorder):
        async def on_stop(self, reason: StopReason) -> None:
            raise Boom("teardown")

    actor = BadStop()
    ref = actor.start()
    await settle()
    ref.stop(StopReason.IDLE)
    behind = asyncio.ensure_future(ref.ask("behind"))
    assert await stopped(ref) == StopReason.IDLE
    assert actor.state is ActorState.STOPPED
    with pytest.raises(ActorDead):
        behind.result()
    expect_error_logs(caplog, "actor_stop_failed", actor="rec", error=repr(Boom("teardown")))


async def test_a_cancelled_actor_task_stops_as_shutdown_and_fails_queued_asks() -> None:
    """The event loop shutting down cancels every task: queued asks must not hang."""
    actor = Recorder()
    ref = actor.start()
    await settle()
    queued = asyncio.ensure_future(ref.ask("queued"))
    await asyncio.sleep(0)  # the ask is in the mailbox; the actor has not run yet
    assert actor._task is not None
    actor._task.cancel()
    assert await stopped(ref) == StopReason.SHUTDOWN
    with pytest.raises(ActorDead) as dead:
        queued.result()
    assert dead.value.reason == StopReason.SHUTDOWN
    assert actor.stopped_with == [StopReason.SHUTDOWN]


async def test_mailbox_is_bounded_at_10_000_by_default() -> None:
    actor = Recorder()  # not started: nothing drains the mailbox
    for i in range(10_000):
        actor.ref.tell(i)
    with pytest.raises(MailboxFull):
        actor.ref.tell("one too many")
    with pytest.raises(MailboxFull):
        await actor.ref.ask("one too many")
    ref = actor.start()
    await settle()
    assert await ref.ask("drained") == ("done", "drained")  # once drained, accepted again
    assert len(actor.handled) == 10_001 and "one too many" not in actor.handled


async def test_mailbox_limit_is_exact() -> None:
    actor = Recorder(mailbox_limit=3)
    for i in range(3):
        actor.ref.tell(i)
    with pytest.raises(MailboxFull) as full:
        actor.ref.tell(3)
    assert "rec" in str(full.value)
    actor.start()
    await settle()
    assert actor.handled == [0, 1, 2]


async def test_batchable_messages_are_handed_over_together_up_to_max_batch_in_order() -> None:
    actor = Batcher()
    ref = actor.start()
    messages = ["b1", "b2", "b3", "b4", "b5", "n1", "b6", "b7", "n2", "b8", "b9"]
    asks = await queue_behind_a_busy_actor(actor, messages)
    ref.stop(StopReason.SHUTDOWN)  # a stop right behind batchable messages is not part of a batch
    actor.gate.set()
    assert await stopped(ref) == StopReason.SHUTDOWN
    assert [a.result() for a in asks] == [("done", m) for m in messages]
    assert actor.handled == ["wait", *messages]
    assert [b for b in actor.batches if len(b) > 1] == [["b1", "b2", "b3"], ["b4", "b5"], ["b6", "b7"], ["b8", "b9"]]


async def test_a_failing_batch_reports_the_error_to_every_asker_in_it() -> None:
    actor = Batcher()
    actor.keep_running = True
    actor.start()
    asks = await queue_behind_a_busy_actor(actor, ["b1", "fail-b", "b3", "n"])
    actor.gate.set()
    await settle()
    # "fail-b" is not batchable: b1 alone, then fail-b alone, then b3 with nothing behind it.
    assert asks[0].result() == ("done", "b1") and asks[2].result() == ("done", "b3")
    with pytest.raises(Boom):
        asks[1].result()
    assert asks[3].result() == ("done", "n")

    class AllBatch(Batcher):
        def is_batchable(self, message: Any) -> bool:
            return True

    batcher = AllBatch()
    batcher.keep_running = True
    ref2 = batcher.start()
    together = await queue_behind_a_busy_actor(batcher, ["x", "fail-x", "y"])
    batcher.gate.set()
    await settle()
    assert batcher.batches == [["x", "fail-x", "y"]]
    for ask in together:
        with pytest.raises(Boom):
            ask.result()
    assert await ref2.ask("z") == ("done", "z")
