"""``python -m tests.crashpoint serve ...``: the tableside CLI with a fault-injecting store, for crash tests.

A test hook, never part of the package (Orleans' fault-injecting storage, as a process): it wraps
``PostgresStore.commit_writes`` and, when ``TABLESIDE_TEST_CRASH_AT`` names a point, kills the process
with SIGKILL right there, with no ``await`` in between, so nothing else of the server runs after it.

Points:
* ``after_confirm_commit``: the transaction that confirms an order (order ``confirmed``, ``kitchen_seq``
  assigned) has committed, and the table actor has not yet heard back: no ``order_confirmed`` to the
  phones, no wake of the kitchen feed. A crash between an order's confirmation and its kitchen push.
* ``before_confirm_commit``: the POS accepted the order and the batch that would store the confirmation
  is about to run: nothing of that batch reaches Postgres. The POS has a ticket, our database says
  ``processing``.
* ``during_cart_commit``: a batch of cart writes only (no order row) has been started and the process is
  killed ``TABLESIDE_TEST_CRASH_YIELDS`` loop turns later, while its statement is on its way or its result
  not yet read; with ``TABLESIDE_TEST_CRASH_YIELDS=-1`` once the batch committed and before the actor
  hears of it (so the statement surely reached Postgres): either way nobody was told whether it committed.

With ``TABLESIDE_TEST_CRASH_ARM`` (a file path) a point fires only while that file exists, and firing
removes it (``unlink`` is atomic: one process, one batch fires per arming). The cluster tests arm the
current owner of a group, then restart it with the same point, ten times over one cluster. A number in
the file overrides ``TABLESIDE_TEST_CRASH_YIELDS`` for that firing.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Sequence

from tableside.storage.interface import GroupWrite, OrderStatus, StorageError
from tableside.storage.postgres import PostgresStore

CRASH_AT = os.environ.get("TABLESIDE_TEST_CRASH_AT", "")
ARM = os.environ.get("TABLESIDE_TEST_CRASH_ARM", "")
YIELDS = int(os.environ.get("TABLESIDE_TEST_CRASH_YIELDS", "2"))
POINTS = {"after_confirm_commit", "before_confirm_commit", "during_cart_commit"}


def _armed() -> bool:
    global YIELDS
    if not ARM:
        return True
    try:
        with open(ARM) as f:
            text = f.read().strip()
        os.unlink(ARM)
    except FileNotFoundError:
        return False
    if text:
        YIELDS = int(text)  # the arming test chose the loop turns for this one firing
    return True


def _confirms(write: GroupWrite) -> bool:
    return write.order is not None and write.number_order is None and write.order.status == OrderStatus.CONFIRMED


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install(point: str) -> None:
    if point not in POINTS:
        raise SystemExit(f"tests.crashpoint: unknown TABLESIDE_TEST_CRASH_AT {point!r}; known: {sorted(POINTS)}")
    commit_writes = PostgresStore.commit_writes

    async def crashing_commit_writes(self: PostgresStore, writes: Sequence[GroupWrite]) -> list[StorageError | None]:
        if point == "before_confirm_commit" and any(_confirms(w) for w in writes) and _armed():
            _die()
        if point == "during_cart_commit" and all(w.order is None and w.number_order is None for w in writes) and _armed():
            task = asyncio.ensure_future(commit_writes(self, writes))
            if YIELDS < 0:
                await asyncio.shield(task)
            for _ in range(max(YIELDS, 0)):
                await asyncio.sleep(0)
            _die()
            return await task  # not reached
        results = await commit_writes(self, writes)
        if point == "after_confirm_commit" and any(
            result is None and write.order is not None and write.order.status == OrderStatus.CONFIRMED
            for write, result in zip(writes, results, strict=True)
        ) and (not ARM or _armed()):
            _die()
        return results

    PostgresStore.commit_writes = crashing_commit_writes  # type: ignore[method-assign]


if __name__ == "__main__":
    if CRASH_AT:
        install(CRASH_AT)
    from tableside.cli import main

    raise SystemExit(main())
