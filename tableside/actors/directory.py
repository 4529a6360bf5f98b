"""Where table actors live in this process. Callers ask the directory for a ref by group id and never
touch an actor directly, so a later cluster layer can answer with a ref to another node."""

from __future__ import annotations

from tableside.actors.base import ActorRef, StopReason
from tableside.actors.messages import TableMessage
from tableside.actors.table import TableActor, TableContext


class ActorDirectory:
    def __init__(self, ctx: TableContext) -> None:
        self._ctx = ctx
        self._actors: dict[str, TableActor] = {}

    def ref_for(self, group_id: str, table_id: str, restaurant_id: int) -> ActorRef[TableMessage]:
        """The live actor of a group, activated on first use (activation loads the snapshot: one read)."""
        actor = self._actors.get(group_id)
        if actor is not None and actor.ref.alive:
            return actor.ref
        actor = TableActor(group_id, table_id, restaurant_id, self._ctx)
        self._actors[group_id] = actor
        ref = actor.start()
        ref.on_stopped(lambda _reason: self._forget(group_id, actor))
        return ref

    def find(self, group_id: str) -> ActorRef[TableMessage] | None:
        actor = self._actors.get(group_id)
        return actor.ref if actor is not None and actor.ref.alive else None

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

    @property
    def active_count(self) -> int:
        return sum(1 for a in self._actors.values() if a.ref.alive)

    def _forget(self, group_id: str, actor: TableActor) -> None:
        if self._actors.get(group_id) is actor:
            del self._actors[group_id]

    async def stop_all(self, reason: StopReason = StopReason.SHUTDOWN) -> None:
        actors = list(self._actors.values())
        for actor in actors:
            actor.ref.stop(reason)
        for actor in actors:
            await actor.ref.wait_stopped()
