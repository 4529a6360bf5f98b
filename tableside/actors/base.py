"""One ``Actor`` base: a mailbox processed one message at a time, explicit lifecycle and stop reasons.

Shape taken from pykka: setup (``on_start``) -> running (``on_receive`` per message) -> teardown
(``on_stop``); callers only ever hold an ``ActorRef`` (``tell`` / ``ask``), and asks still pending when the
actor stops fail with ``ActorDead`` instead of hanging. State and stop-reason enums follow Orleans."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, TypeVar

import structlog

M = TypeVar("M")

log = structlog.get_logger("tableside.actor")


class ActorState(StrEnum):
    CREATED = "created"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class StopReason(StrEnum):
    IDLE = "idle"  # nobody connected and nothing in flight for a while
    SESSION_CLOSED = "session_closed"  # staff checked the table out / reset it
    SHUTDOWN = "shutdown"  # the process is stopping
    STORAGE_CONFLICT = "storage_conflict"  # another activation wrote a newer snapshot (or took the epoch)
    RELOCATED = "relocated"  # the routing lease went to another node: its members reconnect there
    FAILED = "failed"  # an unexpected error in a hook
    START_FAILED = "start_failed"


class ActorDead(Exception):
    """The actor stopped (or never started) before it could handle the message."""

    def __init__(self, name: str, reason: StopReason | None) -> None:
        super().__init__(f"actor {name} is dead ({reason})")
        self.reason = reason


class MailboxFull(Exception):
    """Backpressure: the actor's mailbox is at its bound."""


@dataclass(slots=True)
class _Envelope:
    message: Any
    reply: asyncio.Future[Any] | None = None


@dataclass(slots=True)
class _Stop:
    reason: StopReason
    done: asyncio.Future[None] | None = field(default=None)


class ActorRef(Generic[M]):
    """The only handle other code holds on an actor."""

    __slots__ = ("_actor",)

    def __init__(self, actor: Actor[M]) -> None:
        self._actor = actor

    @property
    def name(self) -> str:
        return self._actor.name

    @property
    def alive(self) -> bool:
        return self._actor.state in (ActorState.CREATED, ActorState.STARTING, ActorState.RUNNING)

    def tell(self, message: M) -> None:
        self._actor._enqueue(_Envelope(message))

    async def ask(self, message: M) -> Any:
        return await self.ask_later(message)

    def ask_later(self, message: M) -> asyncio.Future[Any]:
        """Queue ``message`` now (its place in the mailbox is taken at once) and return the future of
        its answer."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._actor._enqueue(_Envelope(message, fut))
        return fut

    def stop(self, reason: StopReason) -> None:
        self._actor.request_stop(reason)

    def on_stopped(self, callback: Callable[[StopReason | None], None]) -> None:
        """Call ``callback(stop_reason)`` once the actor has stopped (no task needed to watch it)."""
        actor = self._actor
        actor._finished.add_done_callback(lambda _: callback(actor.stop_reason))

    async def wait_stopped(self) -> StopReason | None:
        await asyncio.shield(self._actor._finished)
        return self._actor.stop_reason


class Actor(Generic[M]):
    """Subclass and implement ``on_receive``; never call a subclass's methods from outside: use its ref."""

    max_batch = 64

    def __init__(self, name: str, *, mailbox_limit: int = 10_000) -> None:
        self.name = name
        self.state = ActorState.CREATED
        self.stop_reason: StopReason | None = None
        self._mailbox: deque[_Envelope | _Stop] = deque()
        self._mailbox_limit = mailbox_limit
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.ref: ActorRef[M] = ActorRef(self)

    # -- hooks ------------------------------------------------------------------------------------
    async def on_start(self) -> None:
        """Runs before the first message; an exception here stops the actor with START_FAILED."""

    async def on_receive(self, message: M) -> Any:
        raise NotImplementedError

    def is_batchable(self, message: M) -> bool:
        """Messages for which this returns True may be handed to ``on_receive_batch`` together with the
        batchable messages queued right behind them (order kept). Lets an actor pay one durable write
        for many small changes that piled up while the previous write was in flight."""
        return False

    async def on_receive_batch(self, messages: list[M]) -> list[Any]:
        """Handle consecutive batchable messages; return one result per message, in order."""
        return [await self.on_receive(m) for m in messages]

    async def on_failure(self, message: M, exc: Exception) -> StopReason | None:
        """An ``on_receive`` raised: return a reason to stop, or None to keep running.
        The asker (if any) gets the exception either way."""
        return StopReason.FAILED

    async def on_stop(self, reason: StopReason) -> None:
        """Runs once after the last message; release resources, tell connections."""

    def tell_later(self, sleep: Callable[[float], Awaitable[None]], delay: float, message: M) -> asyncio.Task[None]:
        """Send ``message`` to this actor after ``delay`` seconds of ``sleep`` (the injected clock's), if it
        is still alive then: timers (idle checks) are messages like any other, handled in mailbox order."""
        ref = self.ref

        async def later() -> None:
            await sleep(delay)
            if ref.alive:
                ref.tell(message)

        return asyncio.get_running_loop().create_task(later())

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> ActorRef[M]:
        assert self.state is ActorState.CREATED
        self.state = ActorState.STARTING
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"actor:{self.name}")
        return self.ref

    def request_stop(self, reason: StopReason) -> None:
        """Stop after the messages already queued (the stop is just another message)."""
        if self.state in (ActorState.STOPPING, ActorState.STOPPED):
            return
        self._mailbox.append(_Stop(reason))
        self._wakeup.set()

    def _enqueue(self, envelope: _Envelope) -> None:
        if self.state in (ActorState.STOPPING, ActorState.STOPPED):
            self._fail(envelope)
            return
        if len(self._mailbox) >= self._mailbox_limit:
            raise MailboxFull(self.name)
        self._mailbox.append(envelope)
        self._wakeup.set()

    def _fail(self, envelope: _Envelope) -> None:
        if envelope.reply is not None and not envelope.reply.done():
            envelope.reply.set_exception(ActorDead(self.name, self.stop_reason))

    async def _run(self) -> None:
        reason = StopReason.SHUTDOWN
        try:
            try:
                await self.on_start()
            except Exception as exc:
                log.error("actor_start_failed", actor=self.name, error=repr(exc))
                reason = StopReason.START_FAILED
                return
            self.state = ActorState.RUNNING
            reason = await self._loop()
        except asyncio.CancelledError:
            reason = StopReason.SHUTDOWN
        finally:
            self.state = ActorState.STOPPING
            self.stop_reason = reason
            try:
                await self.on_stop(reason)
            except Exception as exc:  # a failing teardown must not leave asks hanging
                log.error("actor_stop_failed", actor=self.name, error=repr(exc))
            self.state = ActorState.STOPPED
            while self._mailbox:
                item = self._mailbox.popleft()
                if isinstance(item, _Envelope):
                    self._fail(item)
            if not self._finished.done():
                self._finished.set_result(None)

    async def _loop(self) -> StopReason:
        while True:
            if not self._mailbox:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            item = self._mailbox.popleft()
            if isinstance(item, _Stop):
                return item.reason
            batch = [item]
            if self.is_batchable(item.message):
                while (
                    self._mailbox
                    and len(batch) < self.max_batch
                    and isinstance(self._mailbox[0], _Envelope)
                    and self.is_batchable(self._mailbox[0].message)
                ):
                    batch.append(self._mailbox.popleft())  # type: ignore[arg-type]
            try:
                if len(batch) == 1:
                    results = [await self.on_receive(item.message)]
                else:
                    results = await self.on_receive_batch([e.message for e in batch])
            except Exception as exc:
                for envelope in batch:
                    if envelope.reply is not None and not envelope.reply.done():
                        envelope.reply.set_exception(exc)
                stop = await self.on_failure(item.message, exc)
                if stop is not None:
                    # A conflict (fenced by a newer activation) is an expected event of a cluster; only
                    # an unexpected failure is an error.
                    report = log.error if stop is StopReason.FAILED else log.warning
                    report("actor_failed", actor=self.name, error=repr(exc), message=type(item.message).__name__)
                    return stop
            else:
                for envelope, result in zip(batch, results, strict=True):
                    if envelope.reply is not None and not envelope.reply.done():
                        envelope.reply.set_result(result)
