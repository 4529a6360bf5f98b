"""Where actors live in this process. Callers ask a directory for a ref by key and never touch an actor
directly, so the cluster layer can answer with a ref to another node."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from tableside.actors.base import Actor, ActorRef, StopReason
from tableside.actors.messages import TableMessage
from tableside.actors.table import TableActor, TableContext

A = TypeVar("A", bound=Actor[Any])


class ActorRegistry(Generic[A]):
    """The live actors of one kind on this node, by key: started on first use, forgotten when stopped."""

    def __init__(self) -> None:
        self._actors: dict[str, A] = {}

    def _running(self, key: str) -> A | None:
        actor = self._actors.get(key)
        return actor if actor is not None and actor.ref.alive else None

    def _start(self, key: str, actor: A) -> None:
        self._actors[key] = actor
        actor.start()
        actor.ref.on_stopped(lambda _reason: self._forget(key, actor))

    def _forget(self, key: str, actor: A) -> None:
        if self._actors.get(key) is actor:
            del self._actors[key]

    @property
    def active_count(self) -> int:
        return sum(1 for a in self._actors.values() if a.ref.alive)

    async def stop_all(self, reason: StopReason = StopReason.SHUTDOWN) -> None:
        actors = list(self._actors.values())
        for actor in actors:
            actor.ref.stop(reason)
        for actor in actors:
            await actor.ref.wait_stopped()


class ActorDirectory(ActorRegistry[TableActor]):
    def __init__(self, ctx: TableContext) -> None:
        super().__init__()
        self._ctx = ctx

    def ref_for(self, group_id: str, table_id: str, restaurant_id: int) -> ActorRef[TableMessage]:
        """The live actor of a group, activated on first use (activation loads the snapshot: one read)."""
        actor = self._running(group_id)
        if actor is None:
            actor = TableActor(group_id, table_id, restaurant_id, self._ctx)
            self._start(group_id, actor)
        return actor.ref

    def find(self, group_id: str) -> ActorRef[TableMessage] | None:
        actor = self._running(group_id)
        return actor.ref if actor is not None else None

    def tell_if_active(self, group_id: str, message: TableMessage) -> bool:
        ref = self.find(group_id)
        if ref is None:
            return False
        ref.tell(message)
        return True

    def broadcast_to_all(self, message: TableMessage) -> None:
        for actor in list(self._actors.values()):
            if actor.ref.alive:
                actor.ref.tell(message)
