"""Joins decided in batches (issue 14, "joins at handshake speed"), on both stores.

``join_tables`` decides many joins at once (on Postgres in one autocommit statement, no row lock held across
a round trip) and must answer exactly as if the joins had run one after another: the cap exact, a vacant
table opened once with its tab, a wrong secret refused without taking a place, a paid table refused. The
join committer (``storage/joins.py``) batches concurrent ``join_table`` calls into such batches."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa

from tableside.storage import PostgresStore, Store
from tableside.storage import postgres as pg
from tableside.storage.interface import (
    BadQrSecret,
    GroupFull,
    JoinRequest,
    JoinResult,
    StorageError,
    TableNotFound,
    TablePaid,
    TableStatus,
)
from tableside.storage.joins import JoinCommitter, decide_rounds
from tests.storage.test_store import HOUR, NOW, join, seed


def req(table: str, i: int | str, *, secret: str | None = None, cap: int | None = None, now: float = NOW) -> JoinRequest:
    return JoinRequest(
        table_id=table,
        qr_secret=f"secret-{table}" if secret is None else secret,
        token_hash=f"tok-{table}-{i}",
        member_id=f"mem-{table}-{i}",
        new_group_id=f"g-{table}-{i}",
        expires_at=now + HOUR,
        now=now,
        max_members=cap,
    )


def ok(results: list[JoinResult | StorageError]) -> list[JoinResult]:
    return [r for r in results if isinstance(r, JoinResult)]


async def open_tabs(store: Store, table: str) -> list[Any]:
    return [t for t in await store.list_tabs(1) if t.table_id == table]


async def test_one_batch_keeps_the_cap_exact_across_tables(store: Store) -> None:
    await seed(store, "T1", "T2", "T3")
    await join(store, "T2", "tok-pre", "mem-pre", group="g-2")  # T2 already has one member
    # 60 joins of three tables, interleaved, in one batch: T1 and T3 vacant, T2 occupied.
    batch = [req(f"T{1 + i % 3}", i, cap=4) for i in range(60)]
    results = await store.join_tables(batch)
    assert len(results) == 60
    for table, places in (("T1", 4), ("T2", 3), ("T3", 4)):
        mine = [(r, res) for r, res in zip(batch, results, strict=True) if r.table_id == table]
        accepted = [res for _, res in mine if isinstance(res, JoinResult)]
        # exactly the first ones in submission order get the places
        assert [isinstance(res, JoinResult) for _, res in mine] == [True] * places + [False] * (20 - places)
        assert all(isinstance(res, GroupFull) and res.max_members == 4 for _, res in mine[places:])
        group_ids = {res.group_id for res in accepted}
        assert len(group_ids) == 1
        assert len(await store.live_members(group_ids.pop(), NOW)) == 4
        for r, _ in mine[places:]:
            assert await store.resolve_token(r.token_hash, NOW) is None  # a refused join issues no token
    assert {r.group_id for r in ok(results) if r.table_id == "T2"} == {"g-2"}


async def test_sixty_concurrent_joins_of_a_few_tables_never_overshoot(store: Store) -> None:
    await seed(store, "T1", "T2", "T3")
    calls = [join(store, f"T{1 + i % 3}", f"tok-{i}", f"mem-{i}", group=f"g-{i}", max_members=5) for i in range(60)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    joined = [r for r in results if isinstance(r, JoinResult)]
    assert all(isinstance(r, GroupFull) for r in results if not isinstance(r, JoinResult))
    assert len(joined) == 15
    for table in ("T1", "T2", "T3"):
        mine = [r for r in joined if r.table_id == table]
        assert len(mine) == 5 and sum(r.opened_group for r in mine) == 1
        assert len({r.group_id for r in mine}) == 1
        assert len(await store.live_members(mine[0].group_id, NOW)) == 5
        assert len(await open_tabs(store, table)) == 1


async def test_twenty_simultaneous_first_joins_open_the_table_once_with_its_tab(store: Store) -> None:
    await seed(store, "T1")
    results = await store.join_tables([req("T1", i) for i in range(20)])
    joined = ok(results)
    assert len(joined) == 20
    assert [r.opened_group for r in joined] == [True] + [False] * 19
    assert {r.group_id for r in joined} == {"g-T1-0"}  # the first request's new group
    t = await store.get_table("T1")
    assert t is not None and t.status is TableStatus.OCCUPIED and t.current_group_id == "g-T1-0"
    tabs = await open_tabs(store, "T1")
    assert len(tabs) == 1 and tabs[0].group_id == "g-T1-0"
    # and as twenty concurrent join_table calls through the committer
    await seed(store, "T2")
    calls = [join(store, "T2", f"tok-2-{i}", f"mem-2-{i}", group=f"g-2-{i}") for i in range(20)]
    again = await asyncio.gather(*calls)
    assert sum(r.opened_group for r in again) == 1 and len({r.group_id for r in again}) == 1
    assert len(await open_tabs(store, "T2")) == 1


async def test_a_wrong_secret_among_good_joins_is_refused_and_takes_no_place(store: Store) -> None:
    await seed(store, "T1")
    batch = [
        req("T1", 0, secret="wrong"),  # before the opener: must not open the table
        req("T1", 1, cap=2),
        req("T1", 2, secret="secret-T1x", cap=2),
        req("T1", 3, secret="", cap=2),
        req("T1", 4, cap=2),
        req("T1", 5, cap=2),
    ]
    results = await store.join_tables(batch)
    assert [type(r) for r in results] == [BadQrSecret, JoinResult, BadQrSecret, BadQrSecret, JoinResult, GroupFull]
    first = results[1]
    assert isinstance(first, JoinResult) and first.opened_group and first.group_id == "g-T1-1"
    for i in (0, 2, 3):
        assert await store.resolve_token(batch[i].token_hash, NOW) is None


async def test_paid_and_unknown_tables_in_a_batch(store: Store) -> None:
    await seed(store, "T1", "T2")
    await join(store, "T1", "tok-x", "mem-x", group="g-1")
    await store.checkout_table("T1", NOW)
    results = await store.join_tables(
        [req("T1", 1), req("T1", 2, secret="wrong"), req("T9", 3), req("T2", 4), req("T9\x00", 5), req("T\ud800", 6)]
    )
    assert isinstance(results[0], TablePaid)
    assert isinstance(results[1], BadQrSecret)  # the secret first: a wrong one learns nothing about the table
    assert all(isinstance(results[i], TableNotFound) for i in (2, 4, 5))  # NUL, lone surrogate: no such table
    assert isinstance(results[3], JoinResult) and results[3].opened_group
    t = await store.get_table("T1")
    assert t is not None and t.status is TableStatus.PAID


async def test_a_token_hash_twice_in_a_batch_behaves_as_in_sequence(store: Store) -> None:
    await seed(store, "T1", "T2")
    a = req("T1", "a")
    b = JoinRequest("T2", "secret-T2", a.token_hash, "mem-b", "g-b", NOW + 2 * HOUR, NOW)
    results = await store.join_tables([a, b, req("T1", "c", cap=2), req("T1", "d", cap=2)])
    # b rebound a's token to T2: a's member no longer counts at T1, so c and d both find a place
    assert [type(r) for r in results] == [JoinResult, JoinResult, JoinResult, JoinResult]
    [late] = await store.join_tables([req("T1", "e", cap=2)])
    assert isinstance(late, GroupFull)
    info = await store.resolve_token(a.token_hash, NOW)
    assert info is not None and info.table_id == "T2" and info.member_id == "mem-b"


async def test_expired_members_do_not_count_in_a_batch(store: Store) -> None:
    await seed(store, "T1")
    await join(store, "T1", "tok-a", "mem-a", group="g-1", expires_at=NOW + 10, max_members=2)
    results = await store.join_tables([req("T1", i, cap=2, now=NOW + 10) for i in range(3)])
    assert [type(r) for r in results] == [JoinResult, JoinResult, GroupFull]


def test_rounds_keep_each_tables_order() -> None:
    a0, a1 = req("A", 0), req("A", 1)
    dup = JoinRequest("B", "s", a0.token_hash, "m", "g", NOW, NOW)
    b1 = req("B", 1)
    other_cap = req("A", 2, cap=3)
    a3 = req("A", 3)
    # dup rebinds a0's token: everything after it is decided after it; A's cap changes: a new round
    assert decide_rounds([a0, a1, dup, b1, other_cap, a3]) == [[0, 1], [2], [3, 4], [5]]
    assert decide_rounds([a0, req("B", 1), req("A", 1, cap=3), a3]) == [[0, 1], [2], [3]]
    assert decide_rounds([a0, dup], [1]) == [[1]]


async def test_committer_batches_and_reports_each_outcome() -> None:
    calls: list[list[str]] = []
    gate = asyncio.Event()

    async def decide(batch: Any) -> list[JoinResult | StorageError]:
        calls.append([r.member_id for r in batch])
        await gate.wait()
        return [
            BadQrSecret(r.table_id) if r.qr_secret == "wrong" else JoinResult(r.table_id, 1, "g", r.member_id, 0, False)
            for r in batch
        ]

    committer = JoinCommitter(decide, in_flight=2)
    first = asyncio.ensure_future(committer.join(req("T1", 0)))
    await asyncio.sleep(0)
    # queued while the first batch is in flight: T1's joins wait for it, T2's go in a concurrent batch
    rest = [asyncio.ensure_future(committer.join(r)) for r in (req("T1", 1), req("T2", 2, secret="wrong"))]
    for _ in range(5):
        await asyncio.sleep(0)
    assert calls == [["mem-T1-0"], ["mem-T2-2"]]
    gate.set()
    assert (await first).member_id == "mem-T1-0"
    assert (await rest[0]).member_id == "mem-T1-1"
    with pytest.raises(BadQrSecret):
        await rest[1]
    assert calls[2:] == [["mem-T1-1"]]
    await committer.stop()


@pytest.mark.parametrize("retries", [3, 1])
async def test_postgres_joins_from_two_processes_keep_the_cap(
    pg_store: PostgresStore, retries: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two stores on one database (two server processes): their statements race on the same tables and
    the row-version check makes the loser retry, so the cap stays exact and a table opens once. With one
    try only, the losers take the locked fallback (a transaction holding the row lock) at once."""
    store = pg_store
    monkeypatch.setattr(pg, "_JOIN_RETRIES", retries)
    await seed(store, "T1", "T2")
    other = await PostgresStore.connect(str(store.engine.url.render_as_string(hide_password=False)))
    try:
        calls = [
            (store if i % 2 else other).join_table(
                f"T{1 + i % 4 // 2}", f"secret-T{1 + i % 4 // 2}", f"tok-{i}", f"mem-{i}", f"g-{i}",
                NOW + HOUR, NOW, max_members=7,
            )
            for i in range(60)
        ]
        # Hold both rows (and change them) until both stores' statements wait for them, so they meet at the
        # rows and every later round races too.
        async with store.engine.begin() as conn:
            await conn.execute(sa.text("UPDATE tables SET updated_at = updated_at WHERE table_id IN ('T1', 'T2')"))
            running = asyncio.ensure_future(asyncio.gather(*calls, return_exceptions=True))
            await wait_for_a_lock_waiter(store, 2)
        results = await running
    finally:
        await other.close()
    joined = [r for r in results if isinstance(r, JoinResult)]
    assert all(isinstance(r, GroupFull) for r in results if not isinstance(r, JoinResult))
    for table in ("T1", "T2"):
        mine = [r for r in joined if r.table_id == table]
        assert len(mine) == 7 and sum(r.opened_group for r in mine) == 1 and len({r.group_id for r in mine}) == 1
        assert len(await store.live_members(mine[0].group_id, NOW)) == 7
        assert len(await open_tabs(store, table)) == 1


@pytest.mark.parametrize("retries", [3, 1])
async def test_postgres_a_join_during_a_checkout_sees_the_paid_table(
    pg_store: PostgresStore, retries: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkout holding the table's row lock: the batch statement waits for it, finds a newer row
    version and decides again on the new one (paid), instead of joining a closed sitting (with one try
    only, in the locked fallback)."""
    store = pg_store
    monkeypatch.setattr(pg, "_JOIN_RETRIES", retries)
    await seed(store, "T1")
    await join(store, "T1", "tok-a", "mem-a", group="g-1")
    async with store.engine.begin() as conn:
        await conn.execute(sa.text("SELECT 1 FROM tables WHERE table_id = 'T1' FOR UPDATE"))
        pending = asyncio.ensure_future(join(store, "T1", "tok-b", "mem-b"))
        await wait_for_a_lock_waiter(store)  # the join's statement waits for the row
        assert not pending.done()
        await conn.execute(sa.text("UPDATE tables SET status = 'paid' WHERE table_id = 'T1'"))
    with pytest.raises(TablePaid):
        await pending
    assert await store.resolve_token("tok-b", NOW) is None


async def wait_for_a_lock_waiter(store: PostgresStore, waiters: int = 1) -> None:
    query = sa.text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()")
    for _ in range(1000):
        async with store.engine.connect() as conn:
            if (await conn.execute(query)).scalar_one() >= waiters:
                return
        await asyncio.sleep(0.01)
    raise AssertionError("the join never waited for the table's row lock")


async def test_a_batch_refuses_a_seated_table_opened_meanwhile(store: Store) -> None:
    await seed(store, "T1")
    await store.open_sitting("T1", "g-seated", NOW)
    results = await store.join_tables([req("T1", 0), req("T1", 1)])
    assert [r.group_id for r in ok(results)] == ["g-seated", "g-seated"]
    assert not any(r.opened_group for r in ok(results))
    assert len(await open_tabs(store, "T1")) == 1

