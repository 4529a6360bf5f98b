"""The shared Store contract suite: each test runs against MemoryStore and PostgresStore."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from tableside.storage import (
    BadQrSecret,
    GroupFull,
    GroupSnapshot,
    GroupWrite,
    InvalidTransition,
    InvalidWrite,
    MenuItem,
    MenuItemNotFound,
    OrderNotFound,
    OrderRecord,
    OrderStatus,
    Restaurant,
    RestaurantNotFound,
    StaffRole,
    StaffUser,
    StaleWrite,
    Store,
    Table,
    TableNotFound,
    TablePaid,
    TableStatus,
)

NOW = 1_700_000_000.0
HOUR = 3600.0


async def seed(store: Store, *tables: str, restaurant_id: int = 1) -> None:
    await store.upsert_restaurant(Restaurant(restaurant_id, f"R{restaurant_id}"))
    for t in tables:
        await store.add_table(
            Table(t, restaurant_id, f"Table {t}", TableStatus.VACANT, None, f"secret-{t}", NOW)
        )


async def join(store: Store, table: str, token: str, member: str, group: str = "g-new", **kw: Any) -> Any:
    return await store.join_table(
        table,
        kw.get("secret", f"secret-{table}"),
        token,
        member,
        group,
        kw.get("expires_at", NOW + HOUR),
        kw.get("now", NOW),
        max_members=kw.get("max_members"),
    )


def snap(group: str, revision: int, state: dict[str, Any] | None = None, table: str = "T1") -> GroupSnapshot:
    return GroupSnapshot(group, table, 1, revision, state if state is not None else {"rev": revision})


def order(
    order_id: str,
    group: str = "g1",
    status: OrderStatus = OrderStatus.PROCESSING,
    number: int = 1,
    restaurant_id: int = 1,
    created_at: float = NOW,
    **kw: Any,
) -> OrderRecord:
    return OrderRecord(
        order_id=order_id,
        order_number=number,
        restaurant_id=restaurant_id,
        table_id="T1",
        group_id=group,
        status=status,
        items=[{"line_id": "l1", "menu_item_id": "m1", "name": "Soup", "qty": 2, "unit_price": 450}],
        total=900,
        special_instructions="no onions",
        placed_by="mem-1",
        created_at=created_at,
        **kw,
    )


# -- tables, restaurants, menu ------------------------------------------------------------------


async def test_restaurant_and_tables_crud(store: Store) -> None:
    await seed(store, "T2", "T1")
    assert await store.get_restaurant(1) == Restaurant(1, "R1")
    assert await store.get_restaurant(99) is None
    await store.upsert_restaurant(Restaurant(1, "Renamed"))
    assert (await store.get_restaurant(1)) == Restaurant(1, "Renamed")

    # add_table is idempotent seeding: an existing table is left untouched.
    await store.add_table(Table("T1", 1, "other", TableStatus.VACANT, None, "other-secret", NOW + 5))
    t1 = await store.get_table("T1")
    assert t1 is not None and t1.name == "Table T1" and t1.qr_secret == "secret-T1"
    assert t1.status is TableStatus.VACANT and t1.current_group_id is None and t1.updated_at == NOW

    assert [t.table_id for t in await store.list_tables(1)] == ["T1", "T2"]
    assert await store.list_tables(2) == []
    renamed = await store.rename_table("T2", "Window")
    assert renamed.name == "Window" and (await store.get_table("T2")) == renamed
    with pytest.raises(TableNotFound):
        await store.rename_table("nope", "x")

    await store.remove_table("T2")
    assert await store.get_table("T2") is None
    await store.remove_table("T2")  # idempotent
    with pytest.raises(RestaurantNotFound):
        await store.add_table(Table("X1", 42, "x", TableStatus.VACANT, None, "s", NOW))


async def test_menu_and_availability(store: Store) -> None:
    await seed(store)
    await store.upsert_menu_item(MenuItem("m2", 1, "Tea", "drinks", 250, sort_order=2))
    await store.upsert_menu_item(MenuItem("m1", 1, "Soup", "starters", 450, sort_order=1))
    await store.upsert_menu_item(MenuItem("m3", 2, "Other", "x", 1))
    menu = await store.list_menu(1)
    assert [m.menu_item_id for m in menu] == ["m1", "m2"]
    assert menu[0] == MenuItem("m1", 1, "Soup", "starters", 450, True, 1)

    off = await store.set_item_availability("m1", False)
    assert off.available is False
    assert [m.available for m in await store.list_menu(1)] == [False, True]
    assert (await store.set_item_availability("m1", True)).available is True

    await store.upsert_menu_item(MenuItem("m1", 1, "Soup of the day", "starters", 500, False, 1))
    assert (await store.list_menu(1))[0] == MenuItem("m1", 1, "Soup of the day", "starters", 500, False, 1)
    with pytest.raises(MenuItemNotFound):
        await store.set_item_availability("nope", True)


async def test_rotate_qr_secret_refuses_old_secret(store: Store) -> None:
    await seed(store, "T1")
    t = await store.rotate_qr_secret("T1", "fresh", NOW + 10)
    assert t.qr_secret == "fresh" and t.updated_at == NOW + 10
    with pytest.raises(BadQrSecret):
        await join(store, "T1", "tok", "m1")
    res = await join(store, "T1", "tok", "m1", secret="fresh")
    assert res.opened_group
    with pytest.raises(TableNotFound):
        await store.rotate_qr_secret("nope", "x", NOW)


# -- joining and tokens -------------------------------------------------------------------------


async def test_first_join_opens_group_later_joins_share_it(store: Store) -> None:
    await seed(store, "T1")
    first = await join(store, "T1", "tok-a", "mem-a", group="g-1", now=NOW + 1)
    assert first.opened_group and first.group_id == "g-1" and first.restaurant_id == 1
    assert first.member_id == "mem-a" and first.expires_at == NOW + HOUR and first.table_id == "T1"
    t = await store.get_table("T1")
    assert t is not None and t.status is TableStatus.OCCUPIED and t.current_group_id == "g-1"
    assert t.updated_at == NOW + 1

    second = await join(store, "T1", "tok-b", "mem-b", group="g-ignored")
    assert not second.opened_group and second.group_id == "g-1"

    a = await store.resolve_token("tok-a", NOW + 5)
    b = await store.resolve_token("tok-b", NOW + 5)
    assert a is not None and (a.table_id, a.restaurant_id, a.group_id, a.member_id) == (
        "T1",
        1,
        "g-1",
        "mem-a",
    )
    assert b is not None and b.member_id == "mem-b" and b.group_id == "g-1" and b.expires_at == NOW + HOUR
    assert await store.resolve_token("unknown", NOW) is None


async def test_join_errors(store: Store) -> None:
    await seed(store, "T1")
    with pytest.raises(TableNotFound):
        await join(store, "T9", "tok", "m")
    with pytest.raises(BadQrSecret):
        await join(store, "T1", "tok", "m", secret="wrong")
    with pytest.raises(BadQrSecret):
        await join(store, "T1", "tok", "m", secret="")
    # a refused join changes nothing
    t = await store.get_table("T1")
    assert t is not None and t.status is TableStatus.VACANT
    assert await store.resolve_token("tok", NOW) is None

    await join(store, "T1", "tok", "m")
    await store.checkout_table("T1", NOW)
    with pytest.raises(TablePaid):
        await join(store, "T1", "tok2", "m2")
    # wrong secret is reported before the status, so it reveals nothing about the table
    with pytest.raises(BadQrSecret):
        await join(store, "T1", "tok2", "m2", secret="wrong")


async def test_concurrent_first_joins_open_exactly_one_group(store: Store) -> None:
    await seed(store, "T1")
    results = await asyncio.gather(
        *(join(store, "T1", f"tok-{i}", f"mem-{i}", group=f"g-{i}") for i in range(20))
    )
    assert sum(r.opened_group for r in results) == 1
    assert len({r.group_id for r in results}) == 1
    opened = next(r for r in results if r.opened_group)
    t = await store.get_table("T1")
    assert t is not None and t.current_group_id == opened.group_id
    for i in range(20):
        info = await store.resolve_token(f"tok-{i}", NOW)
        assert info is not None and info.group_id == opened.group_id and info.member_id == f"mem-{i}"


async def test_token_expiry_and_cleanup(store: Store) -> None:
    await seed(store, "T1")
    await join(store, "T1", "short", "m1", expires_at=NOW + 10)
    await join(store, "T1", "long", "m2", expires_at=NOW + 100)
    assert await store.resolve_token("short", NOW + 9.5) is not None
    assert await store.resolve_token("short", NOW + 10) is None  # expires_at is exclusive
    assert await store.resolve_token("long", NOW + 10) is not None
    assert await store.delete_expired_tokens(NOW + 10) == 1
    assert await store.delete_expired_tokens(NOW + 10) == 0
    assert await store.resolve_token("long", NOW + 50) is not None
    report = await store.cleanup(NOW + 100)
    assert report.expired_tokens == 1 and report.expired_staff_sessions == 0
    assert await store.resolve_token("long", NOW) is None


async def test_checkout_and_reset_lifecycle(store: Store) -> None:
    await seed(store, "T1", "T2")
    with pytest.raises(InvalidTransition):
        await store.checkout_table("T1", NOW)  # vacant
    with pytest.raises(TableNotFound):
        await store.checkout_table("T9", NOW)
    with pytest.raises(TableNotFound):
        await store.reset_table("T9", NOW)

    await join(store, "T1", "a", "ma", group="g-1")
    await join(store, "T1", "b", "mb")
    await join(store, "T2", "c", "mc", group="g-2")
    paid = await store.checkout_table("T1", NOW + 1)
    assert paid.status is TableStatus.PAID and paid.current_group_id == "g-1" and paid.updated_at == NOW + 1
    # tokens of the checked-out group are gone; other tables' are not
    assert await store.resolve_token("a", NOW + 2) is None
    assert await store.resolve_token("b", NOW + 2) is None
    assert await store.resolve_token("c", NOW + 2) is not None
    with pytest.raises(InvalidTransition):
        await store.checkout_table("T1", NOW + 2)  # already paid

    vacant = await store.reset_table("T1", NOW + 3)
    assert vacant.status is TableStatus.VACANT and vacant.current_group_id is None
    again = await store.reset_table("T1", NOW + 4)  # resetting a vacant table is a harmless no-op
    assert again.status is TableStatus.VACANT and again.updated_at == NOW + 3

    reopened = await join(store, "T1", "d", "md", group="g-3")
    assert reopened.opened_group and reopened.group_id == "g-3"

    # reset of an occupied table (staff clearing a table without checkout) drops its tokens too
    reset = await store.reset_table("T2", NOW + 5)
    assert reset.status is TableStatus.VACANT and reset.current_group_id is None
    assert await store.resolve_token("c", NOW + 5) is None


async def test_remove_table_drops_its_tokens(store: Store) -> None:
    await seed(store, "T1")
    await join(store, "T1", "a", "ma")
    await store.remove_table("T1")
    assert await store.resolve_token("a", NOW) is None


# -- group state and commit_writes --------------------------------------------------------------


async def test_commit_writes_revision_checks(store: Store) -> None:
    assert await store.load_group("g1") is None
    assert await store.commit_writes([]) == []
    assert await store.commit_writes([GroupWrite(snap("g1", 1), 0)]) == [None]
    loaded = await store.load_group("g1")
    assert loaded == snap("g1", 1)

    res = await store.commit_writes(
        [
            GroupWrite(snap("g1", 5), 3),  # stale: stored is 1
            GroupWrite(snap("g2", 1), 0),  # fresh insert
            GroupWrite(snap("g3", 2), 1),  # stale: no row but expects 1
            GroupWrite(snap("g1", 2, {"x": [1, 2]}), 1),  # same group as the stale write: applies
        ]
    )
    assert (
        isinstance(res[0], StaleWrite)
        and res[1] is None
        and isinstance(res[2], StaleWrite)
        and res[3] is None
    )
    assert await store.load_group("g1") == snap("g1", 2, {"x": [1, 2]})
    assert await store.load_group("g2") == snap("g2", 1)
    assert await store.load_group("g3") is None

    # expected 0 for an existing group is stale (another activation created it first)
    res = await store.commit_writes([GroupWrite(snap("g2", 1, {"other": True}), 0)])
    assert isinstance(res[0], StaleWrite)
    assert await store.load_group("g2") == snap("g2", 1)


async def test_stale_writes_orders_are_not_written(store: Store) -> None:
    await store.commit_writes([GroupWrite(snap("g1", 1), 0), GroupWrite(snap("g2", 1), 0)])
    res = await store.commit_writes(
        [
            GroupWrite(snap("g1", 2), 7, order=order("ORD-1-1", "g1")),  # stale
            GroupWrite(snap("g2", 2), 1, order=order("ORD-1-2", "g2", number=2)),  # fresh
        ]
    )
    assert isinstance(res[0], StaleWrite) and res[1] is None
    assert await store.get_order("ORD-1-1") is None
    got = await store.get_order("ORD-1-2")
    assert got is not None and got.status is OrderStatus.PROCESSING and got.kitchen_seq is None
    assert (await store.load_group("g1")) == snap("g1", 1)


async def test_two_writes_of_one_group_in_one_batch_apply_in_order(store: Store) -> None:
    res = await store.commit_writes(
        [
            GroupWrite(snap("g1", 1), 0, order=order("ORD-1-1")),
            GroupWrite(
                snap("g1", 2), 1, order=order("ORD-1-1", status=OrderStatus.CONFIRMED, pos_ticket_id="P1")
            ),
            GroupWrite(snap("g1", 3), 1),  # stale after the second
        ]
    )
    assert res[0] is None and res[1] is None and isinstance(res[2], StaleWrite)
    assert (await store.load_group("g1")) == snap("g1", 2)
    got = await store.get_order("ORD-1-1")
    assert got is not None and got.status is OrderStatus.CONFIRMED and got.kitchen_seq == 1


async def test_concurrent_batches_race_for_a_new_group(store: Store) -> None:
    results = await asyncio.gather(
        *(store.commit_writes([GroupWrite(snap("g1", 1, {"who": i}), 0)]) for i in range(10))
    )
    assert sum(r[0] is None for r in results) == 1
    assert all(r[0] is None or isinstance(r[0], StaleWrite) for r in results)
    winner = next(i for i, r in enumerate(results) if r[0] is None)
    assert (await store.load_group("g1")) == snap("g1", 1, {"who": winner})


async def test_group_state_is_copied_not_aliased(store: Store) -> None:
    state: dict[str, Any] = {"cart": [{"qty": 1}]}
    write = GroupWrite(snap("g1", 1, state), 0, order=order("ORD-1-1"))
    await store.commit_writes([write])
    state["cart"][0]["qty"] = 99
    assert write.order is not None
    write.order.items[0]["qty"] = 99
    loaded = await store.load_group("g1")
    assert loaded is not None and loaded.state == {"cart": [{"qty": 1}]}
    loaded.state["cart"].append("junk")
    assert (await store.load_group("g1")) == snap("g1", 1, {"cart": [{"qty": 1}]})
    got = await store.get_order("ORD-1-1")
    assert got is not None and got.items[0]["qty"] == 2
    got.items.clear()
    again = await store.get_order("ORD-1-1")
    assert again is not None and len(again.items) == 1


async def test_large_batch(store: Store) -> None:
    writes = [GroupWrite(snap(f"g{i:04}", 1, {"i": i, "pad": "x" * 200}), 0) for i in range(1000)]
    assert await store.commit_writes(writes) == [None] * 1000
    updates = [GroupWrite(snap(f"g{i:04}", 2, {"i": -i}), 1 if i % 2 else 5) for i in range(1000)]
    res = await store.commit_writes(updates)
    assert [r is None for r in res] == [bool(i % 2) for i in range(1000)]
    assert (await store.load_group("g0001")) == snap("g0001", 2, {"i": -1})
    assert (await store.load_group("g0002")) == snap("g0002", 1, {"i": 2, "pad": "x" * 200})


async def test_non_json_write_is_refused_alone(store: Store) -> None:
    res = await store.commit_writes(
        [
            GroupWrite(snap("g1", 1, {"bad": {1, 2}}), 0),  # a set is not JSON
            GroupWrite(snap("g2", 1, {"nan": float("nan")}), 0),  # jsonb has no NaN
            GroupWrite(snap("g3", 1, {"ok": (1, 2)}), 0),  # a tuple is stored as a JSON array
        ]
    )
    assert isinstance(res[0], InvalidWrite) and isinstance(res[1], InvalidWrite) and res[2] is None
    assert await store.load_group("g1") is None and await store.load_group("g2") is None
    assert (await store.load_group("g3")) == snap("g3", 1, {"ok": [1, 2]})


async def test_concurrent_confirmations_get_distinct_kitchen_seqs(store: Store) -> None:
    await asyncio.gather(
        *(
            store.commit_writes(
                [GroupWrite(snap(f"g{i}", 1), 0, order=order(f"ORD-1-{i}", f"g{i}", number=i))]
            )
            for i in range(20)
        )
    )
    await asyncio.gather(
        *(
            store.commit_writes(
                [
                    GroupWrite(
                        snap(f"g{i}", 2),
                        1,
                        order=order(f"ORD-1-{i}", f"g{i}", OrderStatus.CONFIRMED, number=i),
                    )
                ]
            )
            for i in range(20)
        )
    )
    kitchen = await store.list_kitchen_orders(1, 0, 100)
    seqs = [o.kitchen_seq for o in kitchen]
    assert len(kitchen) == 20 and len(set(seqs)) == 20 and None not in seqs


# -- orders ---------------------------------------------------------------------------------------


async def test_order_upsert_and_kitchen_seq_assigned_once(store: Store) -> None:
    o = order("ORD-1-1", kitchen_seq=777)  # a caller-provided kitchen_seq is ignored
    await store.commit_writes([GroupWrite(snap("g1", 1), 0, order=o)])
    got = await store.get_order("ORD-1-1")
    assert got is not None and got.kitchen_seq is None and got.status is OrderStatus.PROCESSING
    assert got.kitchen_status == "new" and got.items == o.items and got.total == 900
    assert got.special_instructions == "no onions" and got.placed_by == "mem-1" and got.created_at == NOW

    await store.set_kitchen_status("ORD-1-1", "seen")
    confirmed = order("ORD-1-1", status=OrderStatus.CONFIRMED, pos_ticket_id="POS-9", confirmed_at=NOW + 2)
    confirmed.items = []  # items/total are fixed at insertion; an update only carries the POS outcome
    confirmed.total = 0
    await store.commit_writes([GroupWrite(snap("g1", 2), 1, order=confirmed)])
    got = await store.get_order("ORD-1-1")
    assert got is not None and got.status is OrderStatus.CONFIRMED and got.pos_ticket_id == "POS-9"
    assert got.confirmed_at == NOW + 2 and got.kitchen_seq is not None and got.total == 900
    assert len(got.items) == 1 and got.kitchen_status == "seen"
    seq = got.kitchen_seq

    # confirming again (e.g. a replayed POS answer) keeps the ticket number
    await store.commit_writes([GroupWrite(snap("g1", 3), 2, order=confirmed)])
    got = await store.get_order("ORD-1-1")
    assert got is not None and got.kitchen_seq == seq

    # an order inserted directly as confirmed gets the next kitchen_seq; failed ones never get one
    await store.commit_writes(
        [
            GroupWrite(snap("g2", 1), 0, order=order("ORD-1-2", "g2", OrderStatus.CONFIRMED, 2)),
            GroupWrite(
                snap("g3", 1), 0, order=order("ORD-1-3", "g3", OrderStatus.FAILED, 3, error="POS refused")
            ),
        ]
    )
    o2, o3 = await store.get_order("ORD-1-2"), await store.get_order("ORD-1-3")
    assert o2 is not None and o2.kitchen_seq is not None and o2.kitchen_seq > seq
    assert (
        o3 is not None
        and o3.kitchen_seq is None
        and o3.status is OrderStatus.FAILED
        and o3.error == "POS refused"
    )
    assert await store.get_order("nope") is None


async def test_order_listings(store: Store) -> None:
    await store.commit_writes(
        [
            GroupWrite(snap("g1", 1), 0, order=order("ORD-1-2", "g1", number=2, created_at=NOW + 2)),
            GroupWrite(snap("g2", 1), 0, order=order("ORD-1-3", "g2", OrderStatus.FAILED, 3, created_at=NOW)),
        ]
    )
    await store.commit_writes(
        [GroupWrite(snap("g1", 2), 1, order=order("ORD-1-1", "g1", number=1, created_at=NOW + 1))]
    )
    assert [o.order_id for o in await store.list_group_orders("g1")] == ["ORD-1-1", "ORD-1-2"]
    assert await store.list_group_orders("g9") == []
    assert [o.order_id for o in await store.list_orders_by_status(OrderStatus.PROCESSING)] == [
        "ORD-1-1",
        "ORD-1-2",
    ]
    assert [o.order_id for o in await store.list_orders_by_status(OrderStatus.FAILED)] == ["ORD-1-3"]
    assert await store.list_orders_by_status(OrderStatus.CONFIRMED) == []
    with pytest.raises(OrderNotFound):
        await store.set_kitchen_status("nope", "done")


async def test_list_kitchen_orders_cursor(store: Store) -> None:
    # confirm 5 orders of restaurant 1 one batch at a time, interleaved with restaurant 2 and non-confirmed
    rev: dict[str, int] = {}

    async def put(o: OrderRecord) -> None:
        g = o.group_id
        prev = rev.get(g, 0)
        rev[g] = prev + 1
        assert await store.commit_writes([GroupWrite(snap(g, prev + 1), prev, order=o)]) == [None]

    for i in range(1, 6):
        await put(order(f"ORD-1-{i}", f"g{i}", OrderStatus.CONFIRMED, i))
        await put(order(f"ORD-2-{i}", f"h{i}", OrderStatus.CONFIRMED, i, restaurant_id=2))
    await put(order("ORD-1-9", "g9", OrderStatus.PROCESSING, 9))

    page1 = await store.list_kitchen_orders(1, 0, 3)
    assert [o.order_id for o in page1] == ["ORD-1-1", "ORD-1-2", "ORD-1-3"]
    seqs = [o.kitchen_seq or 0 for o in page1]
    assert all(seqs) and seqs == sorted(seqs)
    cursor = page1[-1].kitchen_seq
    assert cursor is not None
    page2 = await store.list_kitchen_orders(1, cursor, 3)
    assert [o.order_id for o in page2] == ["ORD-1-4", "ORD-1-5"]
    last = page2[-1].kitchen_seq
    assert last is not None
    assert await store.list_kitchen_orders(1, last, 3) == []
    # a new confirmation shows up after the cursor
    await put(order("ORD-1-9", "g9", OrderStatus.CONFIRMED, 9))
    assert [o.order_id for o in await store.list_kitchen_orders(1, last, 3)] == ["ORD-1-9"]
    assert len(await store.list_kitchen_orders(2, 0, 100)) == 5


async def test_next_order_number_strictly_increasing_and_concurrent(store: Store) -> None:
    await seed(store)
    await store.upsert_restaurant(Restaurant(2, "R2"))
    assert [await store.next_order_number(1) for _ in range(3)] == [1, 2, 3]
    assert await store.next_order_number(2) == 1
    numbers = await asyncio.gather(*(store.next_order_number(1) for _ in range(50)))
    assert len(set(numbers)) == 50 and set(numbers) == set(range(4, 54))
    # re-seeding the restaurant must not reset the counter
    await store.upsert_restaurant(Restaurant(1, "R1 again"))
    assert await store.next_order_number(1) == 54
    with pytest.raises(RestaurantNotFound):
        await store.next_order_number(99)


# -- staff ----------------------------------------------------------------------------------------


async def test_staff_users_and_sessions(store: Store) -> None:
    alice = StaffUser("alice", StaffRole.MANAGER, "hash-a")
    await store.upsert_staff(alice)
    await store.upsert_staff(StaffUser("bob", StaffRole.KITCHEN, "hash-b"))
    assert await store.get_staff("alice") == alice
    assert await store.get_staff("nobody") is None
    assert [u.username for u in await store.list_staff()] == ["alice", "bob"]
    await store.upsert_staff(StaffUser("alice", StaffRole.ADMIN, "hash-a2"))
    got = await store.get_staff("alice")
    assert got is not None and got.role is StaffRole.ADMIN and got.password_hash == "hash-a2" and got.active

    await store.create_staff_session("s1", "alice", StaffRole.ADMIN, NOW + 10)
    await store.create_staff_session("s2", "bob", StaffRole.KITCHEN, NOW + 100)
    sess = await store.resolve_staff_session("s1", NOW)
    assert sess is not None and (sess.username, sess.role, sess.expires_at) == (
        "alice",
        StaffRole.ADMIN,
        NOW + 10,
    )
    assert await store.resolve_staff_session("s1", NOW + 10) is None
    assert await store.resolve_staff_session("zzz", NOW) is None
    assert await store.delete_expired_staff_sessions(NOW + 10) == 1
    assert await store.delete_expired_staff_sessions(NOW + 10) == 0

    # deactivating a user ends their sessions
    assert await store.resolve_staff_session("s2", NOW) is not None
    await store.upsert_staff(StaffUser("bob", StaffRole.KITCHEN, "hash-b", active=False))
    assert await store.resolve_staff_session("s2", NOW) is None
    await store.upsert_staff(StaffUser("bob", StaffRole.KITCHEN, "hash-b", active=True))
    assert await store.resolve_staff_session("s2", NOW) is not None
    await store.delete_staff_session("s2")
    await store.delete_staff_session("s2")
    assert await store.resolve_staff_session("s2", NOW) is None


async def test_returned_records_are_copies(store: Store) -> None:
    await seed(store, "T1")
    t = await store.get_table("T1")
    assert t is not None
    t.name = "mutated"
    t2 = await store.get_table("T1")
    assert t2 is not None and t2.name == "Table T1"
    item = MenuItem("m1", 1, "Soup", "s", 100)
    await store.upsert_menu_item(item)
    item.price = 1
    assert (await store.list_menu(1))[0].price == 100


def test_deepcopy_of_records_is_cheap_sanity() -> None:
    # GroupSnapshot uses slots; deepcopy must still work (MemoryStore relies on it).
    s = snap("g", 1, {"a": [1]})
    c = copy.deepcopy(s)
    assert c == s and c.state is not s.state


async def test_close_idle_groups_resets_only_abandoned_sittings(store: Store) -> None:
    await seed(store, "T1", "T2", "T3")
    idle = await join(store, "T1", "tok-idle", "m1", "g-idle", now=NOW)
    busy = await join(store, "T2", "tok-busy", "m2", "g-busy", now=NOW)
    # The busy group wrote a snapshot recently; the idle one never did.
    applied = await store.commit_writes(
        [GroupWrite(GroupSnapshot("g-busy", "T2", 1, 1, {"last_updated": NOW + 5 * HOUR}), 0)]
    )
    assert applied == [None]
    cutoff = NOW + 6 * HOUR - 6 * HOUR + 1  # everything untouched since NOW counts as idle
    closed = await store.close_idle_groups(cutoff, NOW + 6 * HOUR)
    assert closed == [("T1", idle.group_id)]
    t1 = await store.get_table("T1")
    assert t1 is not None and t1.status == TableStatus.VACANT and t1.current_group_id is None
    assert await store.resolve_token("tok-idle", NOW + 6 * HOUR) is None
    assert await store.resolve_token("tok-busy", NOW + 0.5 * HOUR) is not None
    # Idempotent: a second node running the same job closes nothing more.
    assert await store.close_idle_groups(cutoff, NOW + 6 * HOUR) == []
    assert busy.group_id == "g-busy"


async def test_order_numbers_can_be_reserved_in_blocks(store: Store) -> None:
    await seed(store, "T1")
    first = await store.next_order_number(1, 10)
    second = await store.next_order_number(1)
    assert second == first + 10
    with pytest.raises(ValueError):
        await store.next_order_number(1, 0)


# -- the member cap (issue 8) ------------------------------------------------------------------------


async def test_join_refused_when_the_group_is_full(store: Store) -> None:
    await seed(store, "T1")
    for i in range(3):
        await join(store, "T1", f"tok-{i}", f"mem-{i}", group="g-1", max_members=3)
    with pytest.raises(GroupFull) as err:
        await join(store, "T1", "tok-x", "mem-x", max_members=3)
    assert err.value.max_members == 3 and err.value.table_id == "T1"
    assert await store.resolve_token("tok-x", NOW) is None  # a refused join issues no token
    assert await store.live_members("g-1", NOW) == {"mem-0", "mem-1", "mem-2"}
    # Without a cap (or a larger one) the join goes through.
    assert (await join(store, "T1", "tok-y", "mem-y", max_members=4)).group_id == "g-1"


async def test_concurrent_joins_never_overshoot_the_cap(store: Store) -> None:
    await seed(store, "T1")
    results = await asyncio.gather(
        *(join(store, "T1", f"tok-{i}", f"mem-{i}", group=f"g-{i}", max_members=50) for i in range(60)),
        return_exceptions=True,
    )
    joined = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(joined) == 50 and len(refused) == 10
    assert all(isinstance(r, GroupFull) for r in refused)
    group_id = joined[0].group_id
    assert {r.group_id for r in joined} == {group_id}
    assert len(await store.live_members(group_id, NOW)) == 50


async def test_expired_and_revoked_members_free_their_place(store: Store) -> None:
    await seed(store, "T1")
    await join(store, "T1", "tok-a", "mem-a", group="g-1", expires_at=NOW + 10, max_members=2)
    await join(store, "T1", "tok-b", "mem-b", expires_at=NOW + HOUR, max_members=2)
    with pytest.raises(GroupFull):
        await join(store, "T1", "tok-c", "mem-c", now=NOW + 9, max_members=2)
    # mem-a's token expired (not yet cleaned up): it no longer counts.
    assert await store.live_members("g-1", NOW + 10) == {"mem-b"}
    await join(store, "T1", "tok-c", "mem-c", now=NOW + 10, max_members=2)
    with pytest.raises(GroupFull):
        await join(store, "T1", "tok-d", "mem-d", now=NOW + 11, max_members=2)
    # mem-b leaves: its token is revoked at once and its place is free.
    assert await store.revoke_member("g-1", "mem-b") == 1
    assert await store.revoke_member("g-1", "mem-b") == 0
    assert await store.resolve_token("tok-b", NOW + 11) is None
    assert await store.live_members("g-1", NOW + 11) == {"mem-c"}
    assert (await join(store, "T1", "tok-d", "mem-d", now=NOW + 11, max_members=2)).group_id == "g-1"
    # revoking only touches that member of that group
    assert await store.revoke_member("g-other", "mem-c") == 0
    assert await store.resolve_token("tok-c", NOW + 11) is not None


async def test_a_new_sitting_starts_with_every_place_free(store: Store) -> None:
    await seed(store, "T1")
    await join(store, "T1", "tok-a", "mem-a", group="g-1", max_members=1)
    with pytest.raises(GroupFull):
        await join(store, "T1", "tok-b", "mem-b", max_members=1)
    await store.reset_table("T1", NOW)
    again = await join(store, "T1", "tok-b", "mem-b", group="g-2", max_members=1)
    assert again.opened_group and again.group_id == "g-2"
