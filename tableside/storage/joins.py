"""Group commit for joins: many guests' joins share one storage round trip.

A join used to be a transaction of its own that held the table's row lock across several round trips, so
joins of a busy restaurant queued behind each other (about 90 joins + handshakes per second). Here each
``join()`` is queued; a single drainer takes everything queued and hands it to ``Store.join_tables`` in one
call (on Postgres one autocommit statement), exactly like ``GroupCommitter`` does for cart writes. There is
no timer: a lone join goes out at once, under load batches grow by themselves.

While a batch is in flight, joins of the tables it holds wait for the next batch (other tables' joins may
go out in a concurrent batch): two in-flight statements of one process never contend for one table, so
the store's optimistic check (``PostgresStore.join_tables``) only ever retries against other processes or
staff actions.

``decide_rounds`` is the store-independent part of ``join_tables``: it splits a batch into rounds in which
one statement can decide every request exactly as if they had run one after another.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable, Iterable, Sequence

from tableside.storage.committer import settle_batch
from tableside.storage.interface import JoinRequest, JoinResult, StorageError

Decide = Callable[[Sequence[JoinRequest]], Awaitable[list[JoinResult | StorageError]]]
_Pending = tuple[JoinRequest, "asyncio.Future[JoinResult]"]


class JoinCommitterStopped(RuntimeError):
    """``join`` after ``stop()``."""


def decide_rounds(
    requests: Sequence[JoinRequest], indexes: Sequence[int] | None = None, decided: Iterable[str] = ()
) -> list[list[int]]:
    """Split request indexes (in order) into rounds that one statement can decide exactly.

    Within a round a token hash appears once (``INSERT ... ON CONFLICT DO UPDATE`` may not touch a row
    twice in one statement), a member appears once per table (the cap counts distinct members: the batch's
    earlier joins are counted by rank, which is only exact when every accepted join is a new member) and a
    table's requests share one ``max_members``. A request pushed to a later round takes every later request
    of its table with it, so each table's requests are decided in their submission order. A token hash seen
    again rebinds a token (perhaps of another table, whose live count it changes): everything after it goes
    in later rounds (``decided``: the token hashes of requests already decided, for a batch taken in several
    calls)."""
    order = range(len(requests)) if indexes is None else indexes
    rounds: list[list[int]] = []
    used: list[set[tuple[str, ...]]] = []
    caps: list[dict[str, int | None]] = []
    table_round: dict[str, int] = {}
    tokens: set[str] = set(decided)
    floor = 0
    for i in order:
        r = requests[i]
        k = max(floor, table_round.get(r.table_id, 0))
        while k < len(rounds) and (
            ("t", r.token_hash) in used[k]
            or ("m", r.table_id, r.member_id) in used[k]
            or caps[k].get(r.table_id, r.max_members) != r.max_members
        ):
            k += 1
        if k == len(rounds):
            rounds.append([])
            used.append(set())
            caps.append({})
        rounds[k].append(i)
        used[k].update({("t", r.token_hash), ("m", r.table_id, r.member_id)})
        caps[k][r.table_id] = r.max_members
        table_round[r.table_id] = k
        if r.token_hash in tokens:
            floor = k + 1
        tokens.add(r.token_hash)
    return rounds


class JoinCommitter:
    """Batches ``join()`` calls into ``decide(batch)`` calls (``Store.join_tables``)."""

    def __init__(self, decide: Decide, max_batch: int = 500, *, in_flight: int = 2) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self._decide = decide
        self._max_batch = max_batch
        self._queue: collections.deque[_Pending] = collections.deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._slots = asyncio.Semaphore(in_flight)
        self._inflight: set[asyncio.Task[None]] = set()
        self._busy: collections.Counter[str] = collections.Counter()  # tables of in-flight batches
        # Metrics: decide calls made and joins submitted through them.
        self.batches = 0
        self.joins = 0

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop the drainer runs on (a store reused on another loop needs a new committer)."""
        return self._loop

    @property
    def pending(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._loop = asyncio.get_running_loop()
            self._task = self._loop.create_task(self._drain(), name="join-committer")

    async def stop(self) -> None:
        """Stop accepting joins, decide everything already queued, then end the drainer."""
        self._stopping = True
        self._wakeup.set()
        task, self._task = self._task, None
        if task is not None:
            await task

    async def join(self, request: JoinRequest) -> JoinResult:
        """Decide ``request`` (with whatever else is queued); raises the request's StorageError.

        If the caller is cancelled before the drainer takes the request, it is dropped; after that its
        outcome is decided (a token may be stored for nobody: it expires unused) but not reported."""
        if self._stopping:
            raise JoinCommitterStopped("join committer is stopped")
        if self._task is None:
            self.start()
        fut: asyncio.Future[JoinResult] = asyncio.get_running_loop().create_future()
        self._queue.append((request, fut))
        self._wakeup.set()
        return await fut

    def _take(self) -> list[_Pending]:
        """Up to max_batch queued joins whose table no in-flight batch holds, in queue order; the rest
        stay queued in order (a table whose first join is held back keeps all its later joins back)."""
        batch: list[_Pending] = []
        held: collections.deque[_Pending] = collections.deque()
        blocked: set[str] = set()
        while self._queue and len(batch) < self._max_batch:
            item = self._queue.popleft()
            if item[1].cancelled():
                continue
            table_id = item[0].table_id
            if table_id in blocked or self._busy[table_id]:
                blocked.add(table_id)
                held.append(item)
            else:
                batch.append(item)
        held.extend(self._queue)
        self._queue = held
        return batch

    async def _drain(self) -> None:
        while True:
            if not self._queue:
                if self._stopping:
                    if self._inflight:
                        await asyncio.gather(*self._inflight, return_exceptions=True)
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            # Take a slot first, then the batch: joins keep piling up while we wait.
            await self._slots.acquire()
            batch = self._take()
            if not batch:
                self._slots.release()
                if self._queue:  # everything queued waits for a table in flight: wait for a batch to end
                    self._wakeup.clear()
                    await self._wakeup.wait()
                continue
            for request, _ in batch:
                self._busy[request.table_id] += 1
            task = asyncio.get_running_loop().create_task(self._run_batch(batch))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _run_batch(self, batch: list[_Pending]) -> None:
        try:
            await self._decide_batch(batch)
        finally:
            for request, _ in batch:
                self._busy[request.table_id] -= 1
                if not self._busy[request.table_id]:
                    del self._busy[request.table_id]
            self._slots.release()
            self._wakeup.set()  # joins held back for these tables may go now

    async def _decide_batch(self, batch: list[_Pending]) -> None:
        self.batches += 1
        self.joins += len(batch)
        await settle_batch(
            [fut for _, fut in batch], self._decide([r for r, _ in batch]), "join_tables", "joins"
        )
