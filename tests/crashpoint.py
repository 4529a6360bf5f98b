"""``python -m tests.crashpoint serve ...``: the tableside CLI with a fault-injecting store, for crash tests.

A test hook, never part of the package (Orleans' fault-injecting storage, as a process): it wraps
``PostgresStore.commit_writes`` and, when ``TABLESIDE_TEST_CRASH_AT`` names a point, kills the process
with SIGKILL right there, with no ``await`` in between, so nothing else of the server runs after it.

Points:
* ``after_confirm_commit``: the transaction that confirms an order (order ``confirmed``, ``kitchen_seq``
  assigned) has committed, and the table actor has not yet heard back: no ``order_confirmed`` to the
  phones, no wake of the kitchen feed. A crash between an order's confirmation and its kitchen push.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence

from tableside.storage.interface import GroupWrite, OrderStatus, StorageError
from tableside.storage.postgres import PostgresStore

CRASH_AT = os.environ.get("TABLESIDE_TEST_CRASH_AT", "")
POINTS = {"after_confirm_commit"}


def install(point: str) -> None:
    if point not in POINTS:
        raise SystemExit(f"tests.crashpoint: unknown TABLESIDE_TEST_CRASH_AT {point!r}; known: {sorted(POINTS)}")
    commit_writes = PostgresStore.commit_writes

    async def crashing_commit_writes(self: PostgresStore, writes: Sequence[GroupWrite]) -> list[StorageError | None]:
        results = await commit_writes(self, writes)
        if any(
            result is None and write.order is not None and write.order.status == OrderStatus.CONFIRMED
            for write, result in zip(writes, results, strict=True)
        ):
            os.kill(os.getpid(), signal.SIGKILL)
        return results

    PostgresStore.commit_writes = crashing_commit_writes  # type: ignore[method-assign]


if __name__ == "__main__":
    if CRASH_AT:
        install(CRASH_AT)
    from tableside.cli import main

    raise SystemExit(main())
