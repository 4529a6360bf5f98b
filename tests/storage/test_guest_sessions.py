"""Guest sessions and guest carts (seed 001) on both stores: expiry, sliding touch, carts, conversion and
merge, concurrency (no lost update) and the cleanup on two processes at once."""

from __future__ import annotations

import asyncio
import secrets
import uuid

import pytest

from tableside.storage import MenuItem, PostgresStore, Restaurant, Store
from tableside.storage.interface import (
    GuestCartFull,
    GuestCartLineNotFound,
    GuestQuantityTooLarge,
    GuestSession,
    GuestSessionNotFound,
    RestaurantNotFound,
    User,
)

NOW = 1_700_000_000.0
DAY = 86_400.0


def new_session(now: float = NOW, ttl: float = DAY) -> GuestSession:
    return GuestSession(secrets.token_hex(32), now, now + ttl, now)


async def seed(store: Store) -> None:
    await store.upsert_restaurant(Restaurant(1, "One"))
    await store.upsert_restaurant(Restaurant(2, "Two"))
    for i in range(3):
        await store.upsert_menu_item(MenuItem(f"a{i}", 1, f"A{i}", "Mains", 500 + i))
    await store.upsert_menu_item(MenuItem("b0", 2, "B0", "Mains", 900))


async def session_at_store(store: Store, store_id: int = 1, now: float = NOW) -> str:
    g = new_session(now)
    await store.create_guest_session(g)
    await store.select_guest_store(g.session_id, store_id, now)
    return g.session_id


async def make_user(store: Store) -> str:
    uid = str(uuid.uuid4())
    await store.create_user(User(uid, "Ann", f"{uid}@example.com", None, None, "h", NOW, NOW))
    return uid


async def test_create_get_and_expiry(store: Store) -> None:
    g = new_session()
    assert len(g.session_id) == 64
    await store.create_guest_session(g)
    got = await store.get_guest_session(g.session_id, NOW + 1)
    assert got == g
    assert await store.get_guest_session("0" * 64, NOW) is None
    assert await store.get_guest_session(g.session_id, NOW + DAY) is None  # expired at expires_at
    expired = await store.get_guest_session(g.session_id, NOW + DAY, include_expired=True)
    assert expired is not None and expired.session_id == g.session_id
    with pytest.raises(GuestSessionNotFound):
        await store.select_guest_store(g.session_id, 1, NOW + DAY)


async def test_touch_slides_expiry_at_most_once_a_minute(store: Store) -> None:
    g = new_session()
    await store.create_guest_session(g)
    assert not await store.touch_guest_session(g.session_id, NOW + 30, NOW + 30 + DAY)  # within the minute
    assert await store.touch_guest_session(g.session_id, NOW + 61, NOW + 61 + DAY)
    got = await store.get_guest_session(g.session_id, NOW + 62)
    assert got is not None and got.expires_at == NOW + 61 + DAY and got.last_accessed_at == NOW + 61
    assert not await store.touch_guest_session(g.session_id, NOW + 100, NOW + 100 + DAY)
    # still alive past the first expiry thanks to the slide
    assert await store.get_guest_session(g.session_id, NOW + DAY + 30) is not None
    assert not await store.touch_guest_session(g.session_id, NOW + 3 * DAY, NOW + 4 * DAY)  # expired: no revival
    assert not await store.touch_guest_session("f" * 64, NOW + 100, NOW + DAY)


async def test_select_store_and_a_cart(store: Store) -> None:
    await seed(store)
    g = new_session()
    await store.create_guest_session(g)
    with pytest.raises(RestaurantNotFound):
        await store.select_guest_store(g.session_id, 99, NOW)
    picked = await store.select_guest_store(g.session_id, 1, NOW)
    assert picked.selected_store_id == 1
    sid = g.session_id
    first = await store.add_guest_cart_item(sid, "a0", 2, NOW)
    again = await store.add_guest_cart_item(sid, "a0", 3, NOW + 1)
    assert again.item_id == first.item_id and again.quantity == 5
    second = await store.add_guest_cart_item(sid, "a1", 1, NOW + 2)
    assert [(x.menu_item_id, x.quantity) for x in await store.list_guest_cart(sid)] == [("a0", 5), ("a1", 1)]
    assert await store.count_guest_cart_lines(sid) == 2
    with pytest.raises(GuestQuantityTooLarge):
        await store.add_guest_cart_item(sid, "a0", 95, NOW)  # 5 + 95 > 99: refused, unchanged
    assert (await store.list_guest_cart(sid))[0].quantity == 5
    assert (await store.add_guest_cart_item(sid, "a0", 94, NOW)).quantity == 99
    assert (await store.set_guest_cart_quantity(sid, second.item_id, 7, NOW)).quantity == 7
    for bad in (0, 100):
        with pytest.raises(GuestQuantityTooLarge):
            await store.set_guest_cart_quantity(sid, second.item_id, bad, NOW)
    other = await session_at_store(store)
    with pytest.raises(GuestCartLineNotFound):  # a line of another session is not found
        await store.set_guest_cart_quantity(other, second.item_id, 3, NOW)
    assert not await store.delete_guest_cart_item(other, second.item_id)
    assert await store.delete_guest_cart_item(sid, second.item_id)
    assert not await store.delete_guest_cart_item(sid, second.item_id)
    assert [x.menu_item_id for x in await store.list_guest_cart(sid)] == ["a0"]
    # picking the same store keeps the cart; another store empties it (a cart holds one store's items)
    await store.select_guest_store(sid, 1, NOW)
    assert await store.count_guest_cart_lines(sid) == 1
    await store.select_guest_store(sid, 2, NOW)
    assert await store.list_guest_cart(sid) == []


async def test_a_cart_holds_at_most_max_lines(store: Store) -> None:
    await seed(store)
    sid = await session_at_store(store)
    await store.add_guest_cart_item(sid, "a0", 1, NOW, max_lines=2)
    await store.add_guest_cart_item(sid, "a1", 1, NOW, max_lines=2)
    with pytest.raises(GuestCartFull):
        await store.add_guest_cart_item(sid, "a2", 1, NOW, max_lines=2)
    assert (await store.add_guest_cart_item(sid, "a1", 1, NOW, max_lines=2)).quantity == 2  # existing line: fine


async def test_take_returns_the_lines_and_empties_the_cart(store: Store) -> None:
    await seed(store)
    sid = await session_at_store(store)
    await store.add_guest_cart_item(sid, "a0", 2, NOW)
    await store.add_guest_cart_item(sid, "a1", 1, NOW)
    taken, again = await asyncio.gather(store.take_guest_cart(sid), store.take_guest_cart(sid))
    both = taken + again
    assert sorted((x.menu_item_id, x.quantity) for x in both) == [("a0", 2), ("a1", 1)]
    assert await store.list_guest_cart(sid) == []


async def test_fifty_concurrent_adds_lose_no_update(store: Store) -> None:
    await seed(store)
    sid = await session_at_store(store)
    await asyncio.gather(*(store.add_guest_cart_item(sid, "a0", 1, NOW) for _ in range(50)))
    lines = await store.list_guest_cart(sid)
    assert [(x.menu_item_id, x.quantity) for x in lines] == [("a0", 50)]


async def test_concurrent_new_lines_never_overshoot_the_cap(store: Store) -> None:
    await seed(store)
    sid = await session_at_store(store)
    results = await asyncio.gather(
        *(store.add_guest_cart_item(sid, f"a{i}", 1, NOW, max_lines=2) for i in range(3)), return_exceptions=True
    )
    assert sum(isinstance(r, GuestCartFull) for r in results) == 1
    assert await store.count_guest_cart_lines(sid) == 2


async def test_conversion_keeps_the_cart_and_a_later_login_merges(store: Store) -> None:
    await seed(store)
    uid = await make_user(store)
    first = await session_at_store(store)
    await store.add_guest_cart_item(first, "a0", 2, NOW)
    assert await store.get_user_cart_session(uid, NOW) is None
    cart = await store.convert_guest_session(first, uid, NOW)
    assert cart is not None and cart.session_id == first and cart.converted_to_user_id == uid
    mine = await store.get_user_cart_session(uid, NOW)
    assert mine is not None and mine.session_id == first
    # a later login from another guest session (same store) merges into the user's cart
    second = await session_at_store(store)
    await store.add_guest_cart_item(second, "a0", 98, NOW)
    await store.add_guest_cart_item(second, "a1", 3, NOW)
    merged = await store.convert_guest_session(second, uid, NOW + 5)
    assert merged is not None and merged.session_id == first
    assert [(x.menu_item_id, x.quantity) for x in await store.list_guest_cart(first)] == [("a0", 99), ("a1", 3)]
    assert await store.list_guest_cart(second) == []  # the lines moved
    after = await store.get_guest_session(second, NOW + 5)
    assert after is not None and after.converted_to_user_id == uid
    # converting the user's own cart again changes nothing
    again = await store.convert_guest_session(first, uid, NOW + 6)
    assert again is not None and again.session_id == first and await store.count_guest_cart_lines(first) == 2
    # another account logging in with this session does not take it
    other = await make_user(store)
    assert await store.convert_guest_session(first, other, NOW + 7) is None
    assert await store.get_user_cart_session(other, NOW + 7) is None
    with pytest.raises(GuestSessionNotFound):
        await store.convert_guest_session("0" * 64, uid, NOW)


async def test_merge_skips_lines_of_another_store_and_adopts_a_store(store: Store) -> None:
    await seed(store)
    uid = await make_user(store)
    bare = new_session()
    await store.create_guest_session(bare)  # no store picked: the user's cart is empty and storeless
    await store.convert_guest_session(bare.session_id, uid, NOW)
    two = await session_at_store(store, 2)
    await store.add_guest_cart_item(two, "b0", 1, NOW)
    cart = await store.convert_guest_session(two, uid, NOW)
    assert cart is not None and cart.session_id == bare.session_id and cart.selected_store_id == 2
    assert [x.menu_item_id for x in await store.list_guest_cart(bare.session_id)] == ["b0"]
    one = await session_at_store(store, 1)
    await store.add_guest_cart_item(one, "a0", 1, NOW)
    await store.convert_guest_session(one, uid, NOW)
    assert [x.menu_item_id for x in await store.list_guest_cart(bare.session_id)] == ["b0"]
    assert [x.menu_item_id for x in await store.list_guest_cart(one)] == ["a0"]  # stays with its session


async def test_cleanup_deletes_expired_sessions_and_their_lines(store: Store) -> None:
    await seed(store)
    old = await session_at_store(store)
    await store.add_guest_cart_item(old, "a0", 1, NOW)
    fresh = new_session(NOW + DAY / 2)
    await store.create_guest_session(fresh)
    report = await store.cleanup(NOW + DAY)
    assert report.expired_guest_sessions == 1
    assert await store.get_guest_session(old, NOW, include_expired=True) is None
    assert await store.list_guest_cart(old) == []
    assert await store.get_guest_session(fresh.session_id, NOW + DAY) is not None


async def test_cleanup_on_two_processes_at_once(store: Store) -> None:
    """Two nodes' cleanups at once (on Postgres two connections): every expired session is deleted by
    exactly one of them, the counts add up."""
    await seed(store)
    for _ in range(40):
        sid = await session_at_store(store)
        await store.add_guest_cart_item(sid, "a0", 1, NOW)
    live = new_session(NOW + DAY)
    await store.create_guest_session(live)
    if isinstance(store, PostgresStore):
        other = await PostgresStore.connect(store.engine.url.render_as_string(hide_password=False)
                                            .replace("postgresql+asyncpg", "postgresql"))
    else:
        other = store
    try:
        counts = await asyncio.gather(
            store.delete_expired_guest_sessions(NOW + DAY + 1),
            other.delete_expired_guest_sessions(NOW + DAY + 1),
        )
    finally:
        if other is not store:
            await other.close()
    assert sum(counts) == 40
    assert await store.get_guest_session(live.session_id, NOW + DAY + 1) is not None


def test_cleanup_in_two_os_processes_at_once() -> None:
    """The same as two real node processes: two Python processes run the cleanup's one DELETE against one
    database at the same moment; every expired session is deleted (and counted) by exactly one of them."""

    from tests.pg import create_database_sync, drop_database_sync

    scratch_db_url = create_database_sync("ts_gclean")
    try:
        _two_processes_clean(scratch_db_url)
    finally:
        drop_database_sync(scratch_db_url)


def _two_processes_clean(scratch_db_url: str) -> None:
    import subprocess
    import sys
    import textwrap
    import time

    async def prepare() -> None:
        pg = await PostgresStore.connect(scratch_db_url)
        try:
            await seed(pg)
            for _ in range(60):
                sid = await session_at_store(pg)
                await pg.add_guest_cart_item(sid, "a0", 1, NOW)
        finally:
            await pg.close()

    asyncio.run(prepare())
    script = textwrap.dedent(
        f"""
        import asyncio, sys, time
        from tableside.storage.postgres import PostgresStore
        async def main():
            pg = await PostgresStore.connect({scratch_db_url!r})
            start = float(sys.argv[1])
            while time.time() < start:
                await asyncio.sleep(0.005)
            print(await pg.delete_expired_guest_sessions({NOW + DAY + 1!r}))
            await pg.close()
        asyncio.run(main())
        """
    )
    start = str(time.time() + 2.0)  # both past their imports and connected, then at the same moment
    procs = [
        subprocess.Popen([sys.executable, "-c", script, start], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    counts = [int(p.communicate(timeout=60)[0].strip()) for p in procs]
    assert sum(counts) == 60, counts
