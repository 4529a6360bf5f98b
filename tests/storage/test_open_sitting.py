"""``Store.open_sitting`` (issue 13: staff seat a reservation) on both stores: a vacant table becomes occupied
with the new group and its open tab, no token is made, and the party's phones then join that same group."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tableside.storage import Restaurant, Store, Table, TableStatus
from tableside.storage.interface import InvalidTransition, TableNotFound, TabStatus

NOW = 1_700_000_000.0


async def _table(store: Store, table_id: str = "t1") -> Table:
    await store.upsert_restaurant(Restaurant(1, "One"))
    t = Table(table_id, 1, "Table 1", TableStatus.VACANT, None, "secret-" + table_id, NOW)
    await store.add_table(t)
    return t


async def test_open_sitting_opens_the_group_and_its_tab(store: Store) -> None:
    await _table(store)
    gid = str(uuid.uuid4())
    t = await store.open_sitting("t1", gid, NOW + 5)
    assert t.status == TableStatus.OCCUPIED and t.current_group_id == gid and t.updated_at == NOW + 5
    got = await store.get_table("t1")
    assert got is not None and got.status == TableStatus.OCCUPIED and got.current_group_id == gid
    tab = await store.get_group_tab(gid)
    assert tab is not None and tab.status == TabStatus.OPEN and tab.table_id == "t1" and tab.store_id == 1
    assert await store.live_members(gid, NOW + 6) == set()  # no token made


async def test_phones_join_the_opened_sitting(store: Store) -> None:
    await _table(store)
    gid = str(uuid.uuid4())
    await store.open_sitting("t1", gid, NOW)
    res = await store.join_table("t1", "secret-t1", "h" * 64, "m1", str(uuid.uuid4()), NOW + 3600, NOW + 1)
    assert res.group_id == gid and not res.opened_group
    tab = await store.get_group_tab(gid)
    assert tab is not None and tab.status == TabStatus.OPEN


async def test_open_sitting_refusals(store: Store) -> None:
    await _table(store)
    with pytest.raises(TableNotFound):
        await store.open_sitting("nope", str(uuid.uuid4()), NOW)
    gid = str(uuid.uuid4())
    await store.open_sitting("t1", gid, NOW)
    with pytest.raises(InvalidTransition):
        await store.open_sitting("t1", str(uuid.uuid4()), NOW + 1)
    # a table a phone opened is not vacant either
    await _table(store, "t2")
    await store.join_table("t2", "secret-t2", "k" * 64, "m1", str(uuid.uuid4()), NOW + 3600, NOW)
    with pytest.raises(InvalidTransition):
        await store.open_sitting("t2", str(uuid.uuid4()), NOW + 1)
    # paid: not vacant until reset
    await store.checkout_table("t1", NOW + 2)
    with pytest.raises(InvalidTransition):
        await store.open_sitting("t1", str(uuid.uuid4()), NOW + 3)
    await store.reset_table("t1", NOW + 4)
    gid2 = str(uuid.uuid4())
    t = await store.open_sitting("t1", gid2, NOW + 5)
    assert t.current_group_id == gid2
    old = await store.get_group_tab(gid)
    assert old is not None and old.status != TabStatus.OPEN


async def test_concurrent_open_sitting_and_join_share_one_group(store: Store) -> None:
    await _table(store)
    gid = str(uuid.uuid4())
    results = await asyncio.gather(
        store.open_sitting("t1", gid, NOW),
        store.join_table("t1", "secret-t1", "j" * 64, "m1", str(uuid.uuid4()), NOW + 3600, NOW),
        return_exceptions=True,
    )
    t = await store.get_table("t1")
    assert t is not None and t.status == TableStatus.OCCUPIED
    join = results[1]
    assert not isinstance(join, BaseException) and join.group_id == t.current_group_id
    if isinstance(results[0], BaseException):
        assert isinstance(results[0], InvalidTransition)
    else:
        assert t.current_group_id == gid
