"""Supervision for the process's long-lived background tasks (keep-alive, cleanup, kitchen pump).

Each of these is a single task serving every connection: if one dies on an unexpected exception,
nothing notices and the whole process silently loses that function (no pings, no reaping, no kitchen
feed). Under supervision a task that raises is logged with its traceback and started again after a
backoff on the injected clock, so a fake clock drives restarts in tests and a crash loop cannot spin."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

from tableside.clock import Clock

log = structlog.get_logger("tableside.supervise")

TaskFactory = Callable[[], Awaitable[None]]


async def supervised(
    name: str,
    factory: TaskFactory,
    clock: Clock,
    *,
    backoff_s: float = 0.5,
    max_backoff_s: float = 30.0,
) -> None:
    """Run ``factory()`` until it returns normally or this task is cancelled; restart it when it raises.

    The backoff doubles on consecutive failures up to ``max_backoff_s`` and starts over once a run has
    lasted longer than the current backoff (a loop that failed once after hours is restarted quickly)."""
    delay = backoff_s
    while True:
        started = clock.monotonic()
        try:
            await factory()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            if clock.monotonic() - started > delay:
                delay = backoff_s
            # ERROR with the traceback: this is a bug to fix, and operators must see it.
            log.error("background_task_failed", task=name, restart_in_s=delay, exc_info=True)
        await clock.sleep(delay)
        log.info("background_task_restarted", task=name)
        delay = min(delay * 2, max_backoff_s)


class BackgroundTasks:
    """The supervised background tasks of one running server; ``stop`` cancels and awaits them all."""

    def __init__(self, clock: Clock, *, backoff_s: float = 0.5, max_backoff_s: float = 30.0) -> None:
        self._clock = clock
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, name: str, factory: TaskFactory) -> asyncio.Task[None]:
        if name in self.tasks and not self.tasks[name].done():
            raise ValueError(f"background task {name!r} is already running")
        task = asyncio.get_running_loop().create_task(
            supervised(name, factory, self._clock, backoff_s=self._backoff_s, max_backoff_s=self._max_backoff_s),
            name=name,
        )
        self.tasks[name] = task
        return task

    async def stop(self) -> None:
        tasks = list(self.tasks.values())
        self.tasks.clear()
        for task in tasks:
            task.cancel()
        # Awaited so nothing of ours still runs after stop (return_exceptions: CancelledError is expected).
        await asyncio.gather(*tasks, return_exceptions=True)
