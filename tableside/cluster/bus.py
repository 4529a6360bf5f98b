"""The cluster bus: routing leases and pub/sub, behind one small interface.

``RedisBus`` (``redis.asyncio``) is the real one; ``MemoryBus`` (several nodes in one process, for tests)
passes the same suite (``tests/cluster/test_bus.py``). Leases are only for routing: safety rests on the
epoch each activation takes in Postgres, so a lease that is lost, stolen or double-held can misroute a
message (the client resends) but can never let a stale owner write."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

# (channel, payload) for every message on a subscribed channel.
MessageHandler = Callable[[str, bytes], None]
# (channel, receivers) once a queued publish went out; receivers is -1 when it could not be sent.
PublishResult = Callable[[str, int], None]


class BusUnavailable(Exception):
    """Redis cannot be reached (or did not answer within ``cluster.redis_timeout_s``)."""


class Bus(Protocol):
    @property
    def up(self) -> bool:
        """False while the bus is known to be unreachable (the last command failed or the subscription
        connection is down)."""

    async def start(
        self,
        channels: Sequence[str],
        on_message: MessageHandler,
        *,
        on_published: PublishResult | None = None,
        on_reconnect: Callable[[], None] | None = None,
    ) -> None:
        """Subscribe to ``channels`` (delivered in publish order per publisher) and start publishing.
        Returns once the subscription is active. ``on_reconnect`` runs after the subscription was lost and
        came back (messages may have been missed meanwhile)."""

    async def close(self) -> None: ...

    def publish(self, channel: str, data: bytes) -> None:
        """Queue a message; queued messages go out in order on one connection, at most once.
        ``on_published`` learns how many subscribers got it (0: nobody listens there; -1: not sent)."""

    async def flush(self) -> None:
        """Wait until everything queued so far has been sent (or failed)."""

    async def receivers(self, channel: str) -> int:
        """How many subscribers ``channel`` has now."""

    # -- leases (values are node ids) ------------------------------------------------------------
    async def acquire(self, key: str, node: str, ttl_s: float) -> bool:
        """SET NX PX: True when ``node`` now holds the lease (also when it already held it)."""

    async def renew(self, keys: Sequence[str], node: str, ttl_s: float) -> list[bool]:
        """For each key: extend it if ``node`` holds it, take it if it is free; False when another node
        holds it (the caller has lost that group)."""

    async def release(self, keys: Sequence[str], node: str) -> None:
        """Delete the leases ``node`` holds among ``keys`` (others' are left alone)."""

    async def take_over(self, key: str, dead: str, node: str, ttl_s: float) -> bool:
        """Replace the lease of a node known to be gone (``dead``) or a free one; False otherwise."""

    async def holders(self, keys: Sequence[str]) -> list[str | None]: ...
