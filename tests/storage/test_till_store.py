"""Till order sessions, tabs and transactions (seed 002, issue 12): the Store contract on both stores, plus
Postgres-only concurrency (exactly-once completion, one open session per user, conditional updates)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tableside.storage import (
    GroupSnapshot,
    GroupWrite,
    InvalidTransition,
    OpenSessionExists,
    OrderRecord,
    OrderSessionChange,
    OrderSessionNotFound,
    OrderSessionStatus,
    OrderStatus,
    PostgresStore,
    Restaurant,
    RestaurantNotFound,
    RevisionMismatch,
    StaffRole,
    StaffUser,
    Store,
    TabClosed,
    Table,
    TableStatus,
    TabNotFound,
    TabStatus,
)

NOW = 1_700_000_000.0
HOUR = 3600.0
ACTIVE, PENDING = OrderSessionStatus.ACTIVE, OrderSessionStatus.PENDING_LOGOUT
COMPLETED, ASSIGNED = OrderSessionStatus.COMPLETED, OrderSessionStatus.ASSIGNED_TO_TAB


def item(line: str = "l1", menu: str = "m1", name: str = "Soup", price: int = 450, qty: int = 2, note: str = "") -> dict[str, Any]:
    return {"line_id": line, "menu_item_id": menu, "name": name, "unit_price": price, "qty": qty, "note": note}


ITEMS = [item(), item("l2", "m2", "Tea", 300, 1, "hot")]  # total 1200


async def seed(store: Store, *users: str, store_id: int = 1, tables: tuple[str, ...] = ()) -> None:
    if await store.get_restaurant(store_id) is None:
        await store.upsert_restaurant(Restaurant(store_id, f"R{store_id}"))
    for u in users:
        await store.upsert_staff(StaffUser(u, StaffRole.SERVER, "hash", store_id=store_id))
    for t in tables:
        await store.add_table(Table(t, store_id, f"Table {t}", TableStatus.VACANT, None, f"secret-{t}", NOW))


async def join(store: Store, table: str, group: str, token: str = "tok", now: float = NOW) -> Any:
    return await store.join_table(table, f"secret-{table}", token, f"mem-{token}", group, now + HOUR, now)


async def confirmed_table_order(store: Store, group: str, table: str, order_id: str, number: int,
                                items: list[dict[str, Any]], *, revision: int = 1) -> None:
    """A table order confirmed by the POS, through the actors' commit path (its number taken from the
    store's counter, as an order intent does)."""
    assert await store.next_order_number(1) == number
    rec = OrderRecord(
        order_id=order_id,
        order_number=number,
        restaurant_id=1,
        table_id=table,
        group_id=group,
        status=OrderStatus.CONFIRMED,
        items=items,
        total=sum(i["unit_price"] * i["qty"] for i in items),
        special_instructions="",
        placed_by="mem-tok",
        created_at=NOW + number,
        confirmed_at=NOW + number,
    )
    snap = GroupSnapshot(group, table, 1, revision, {"rev": revision})
    assert await store.commit_writes([GroupWrite(snap, revision - 1, order=rec)]) == [None]


# -- sessions ------------------------------------------------------------------------------------


async def test_create_get_and_one_open_session_per_user(store: Store) -> None:
    await seed(store, "alice", "bob")
    s = await store.create_order_session("alice", 1, ITEMS, "till-A", NOW)
    assert s.status is ACTIVE and s.revision == 1 and s.items == ITEMS and s.total == 1200
    assert s.user_id == "alice" and s.store_id == 1 and s.till_id == "till-A"
    assert s.created_at == s.updated_at == NOW and s.logout_time is None and s.tab_id is None
    assert s.transaction_id is None and s.order_id is None
    assert await store.get_order_session(s.session_id) == s
    assert await store.get_order_session(999) is None
    assert await store.get_open_order_session("alice") == s
    assert await store.get_open_order_session("bob") is None

    with pytest.raises(OpenSessionExists) as exc:
        await store.create_order_session("alice", 1, [], None, NOW + 1)
    assert exc.value.current == s
    # pending_logout is open too
    await store.update_order_session(s.session_id, 1, OrderSessionChange(status=PENDING), NOW + 2)
    with pytest.raises(OpenSessionExists):
        await store.create_order_session("alice", 1, [], None, NOW + 3)
    b = await store.create_order_session("bob", 1, [], None, NOW + 4)
    assert b.session_id != s.session_id and b.items == [] and b.till_id is None

    with pytest.raises(RestaurantNotFound):
        await store.create_order_session("carol", 7, [], None, NOW)


async def test_items_are_copied_not_aliased(store: Store) -> None:
    await seed(store, "alice")
    items = [item()]
    s = await store.create_order_session("alice", 1, items, None, NOW)
    items[0]["qty"] = 50
    s.items[0]["qty"] = 60
    stored = await store.get_order_session(s.session_id)
    assert stored is not None and stored.items[0]["qty"] == 2


async def test_update_is_conditional_on_the_revision(store: Store) -> None:
    await seed(store, "alice")
    s = await store.create_order_session("alice", 1, [item()], "A", NOW)
    u = await store.update_order_session(s.session_id, 1, OrderSessionChange(items=ITEMS), NOW + 5)
    assert u.revision == 2 and u.items == ITEMS and u.updated_at == NOW + 5 and u.till_id == "A"
    with pytest.raises(RevisionMismatch) as exc:
        await store.update_order_session(s.session_id, 1, OrderSessionChange(items=[]), NOW + 6)
    assert exc.value.current == u
    # till_id and status; to pending_logout sets logout_time, back to active clears it
    p = await store.update_order_session(s.session_id, 2, OrderSessionChange(status=PENDING, till_id="B"), NOW + 7)
    assert p.status is PENDING and p.logout_time == NOW + 7 and p.till_id == "B" and p.revision == 3
    a = await store.update_order_session(s.session_id, 3, OrderSessionChange(status=ACTIVE), NOW + 8)
    assert a.status is ACTIVE and a.logout_time is None and a.revision == 4 and a.items == ITEMS
    # an empty change still bumps the revision
    e = await store.update_order_session(s.session_id, 4, OrderSessionChange(), NOW + 9)
    assert e.revision == 5 and e.updated_at == NOW + 9
    assert await store.get_order_session(s.session_id) == e

    for bad in (COMPLETED, ASSIGNED):
        with pytest.raises(InvalidTransition):
            await store.update_order_session(s.session_id, 5, OrderSessionChange(status=bad), NOW + 10)
    assert (await store.get_order_session(s.session_id)) == e  # refused: nothing changed
    with pytest.raises(OrderSessionNotFound):
        await store.update_order_session(999, 1, OrderSessionChange(), NOW)

    await store.complete_order_session(s.session_id, 5, "card", NOW + 11)
    with pytest.raises(InvalidTransition):
        await store.update_order_session(s.session_id, 6, OrderSessionChange(items=[]), NOW + 12)


async def test_list_order_sessions_newest_first_with_filters(store: Store) -> None:
    await seed(store, "alice", "bob")
    await seed(store, "zed", store_id=2)
    a1 = await store.create_order_session("alice", 1, ITEMS, None, NOW)
    await store.complete_order_session(a1.session_id, None, "cash", NOW + 1)
    a2 = await store.create_order_session("alice", 1, ITEMS, None, NOW + 2)
    b1 = await store.create_order_session("bob", 1, [], None, NOW + 3)
    z1 = await store.create_order_session("zed", 2, [], None, NOW + 4)
    ids = [s.session_id for s in await store.list_order_sessions(1)]
    assert ids == [b1.session_id, a2.session_id, a1.session_id]
    assert [s.session_id for s in await store.list_order_sessions(1, status=ACTIVE)] == [b1.session_id, a2.session_id]
    assert [s.session_id for s in await store.list_order_sessions(1, user_id="alice")] == [a2.session_id, a1.session_id]
    assert [s.session_id for s in await store.list_order_sessions(1, user_id="alice", status=COMPLETED)] == [
        a1.session_id
    ]
    assert [s.session_id for s in await store.list_order_sessions(1, limit=1)] == [b1.session_id]
    assert [s.session_id for s in await store.list_order_sessions(2)] == [z1.session_id]
    assert await store.list_order_sessions(3) == []


async def test_delete_open_sessions_only(store: Store) -> None:
    await seed(store, "alice")
    s = await store.create_order_session("alice", 1, ITEMS, None, NOW)
    assert await store.delete_order_session(s.session_id) is True
    assert await store.get_order_session(s.session_id) is None
    assert await store.delete_order_session(s.session_id) is False
    p = await store.create_order_session("alice", 1, ITEMS, None, NOW)
    await store.update_order_session(p.session_id, 1, OrderSessionChange(status=PENDING), NOW)
    assert await store.delete_order_session(p.session_id) is True
    c = await store.create_order_session("alice", 1, ITEMS, None, NOW)
    await store.complete_order_session(c.session_id, None, "card", NOW)
    with pytest.raises(InvalidTransition):
        await store.delete_order_session(c.session_id)
    tab = await store.create_tab(1, "Bar", NOW)
    t = await store.create_order_session("alice", 1, ITEMS, None, NOW)
    await store.assign_order_session_to_tab(t.session_id, tab.tab_id, None, NOW)
    with pytest.raises(InvalidTransition):
        await store.delete_order_session(t.session_id)
    assert await store.get_order_session(c.session_id) is not None


# -- complete ------------------------------------------------------------------------------------


async def test_complete_makes_one_ticket_and_one_transaction(store: Store) -> None:
    await seed(store, "alice")
    assert await store.next_order_number(1) == 1  # the counter is shared with table orders
    s = await store.create_order_session("alice", 1, ITEMS, "A", NOW)
    done, tx, ticket = await store.complete_order_session(s.session_id, 1, "cash", NOW + 10)
    assert done.status is COMPLETED and done.revision == 2 and done.updated_at == NOW + 10
    assert done.transaction_id == tx.transaction_id and done.order_id == ticket.order_id == "ORD-1-2"
    assert tx.store_id == 1 and tx.order_session_id == s.session_id and tx.tab_id is None
    assert tx.total == 1200 and tx.payment_method == "cash" and tx.created_at == NOW + 10
    assert [(ln["source"], ln["ref"], ln["menu_item_id"], ln["name"], ln["unit_price"], ln["qty"], ln["note"])
            for ln in tx.lines] == [
        ("till", s.session_id, "m1", "Soup", 450, 2, ""),
        ("till", s.session_id, "m2", "Tea", 300, 1, "hot"),
    ]
    assert ticket.status is OrderStatus.CONFIRMED and ticket.order_number == 2 and ticket.restaurant_id == 1
    assert ticket.table_id == "" and ticket.group_id == f"till:{s.session_id}" and ticket.placed_by == "alice"
    assert ticket.confirmed_at == NOW + 10 and ticket.total == 1200 and ticket.kitchen_seq is not None
    assert ticket.items == [
        {"line_id": "l1", "menu_item_id": "m1", "name": "Soup", "qty": 2, "unit_price": 450, "note": "",
         "added_by": "alice"},
        {"line_id": "l2", "menu_item_id": "m2", "name": "Tea", "qty": 1, "unit_price": 300, "note": "hot",
         "added_by": "alice"},
    ]
    assert await store.get_order(ticket.order_id) == ticket
    assert await store.get_order_session(s.session_id) == done
    assert await store.get_transaction(tx.transaction_id) == tx
    assert await store.get_transaction(999) is None
    kitchen = await store.list_kitchen_orders(1, 0, 100)
    assert [(o.order_id, o.kitchen_seq) for o in kitchen] == [(ticket.order_id, ticket.kitchen_seq)]
    assert await store.next_order_number(1) == 3  # the ticket took number 2

    # exactly once: again (any revision, any payment method) is the same, nothing new
    for rev in (None, 1, 2, 99):
        again = await store.complete_order_session(s.session_id, rev, "card", NOW + 20)
        assert again == (done, tx, ticket)
    assert len(await store.list_kitchen_orders(1, 0, 100)) == 1
    assert await store.list_transactions(1) == [tx]
    # the session is no longer open: the user can start a new one
    assert await store.get_open_order_session("alice") is None
    assert (await store.create_order_session("alice", 1, [], None, NOW)).status is ACTIVE


async def test_complete_errors(store: Store) -> None:
    await seed(store, "alice", "bob", "carol")
    with pytest.raises(OrderSessionNotFound):
        await store.complete_order_session(999, None, "card", NOW)
    s = await store.create_order_session("alice", 1, ITEMS, None, NOW)
    with pytest.raises(RevisionMismatch) as exc:
        await store.complete_order_session(s.session_id, 5, "card", NOW)
    assert exc.value.current == s
    empty = await store.create_order_session("bob", 1, [], None, NOW)
    with pytest.raises(InvalidTransition):
        await store.complete_order_session(empty.session_id, None, "card", NOW)
    parked = await store.create_order_session("carol", 1, ITEMS, None, NOW)
    await store.update_order_session(parked.session_id, 1, OrderSessionChange(status=PENDING), NOW)
    with pytest.raises(InvalidTransition):
        await store.complete_order_session(parked.session_id, None, "card", NOW)
    tab = await store.create_tab(1, "Bar", NOW)
    await store.assign_order_session_to_tab(s.session_id, tab.tab_id, None, NOW)
    with pytest.raises(InvalidTransition):
        await store.complete_order_session(s.session_id, None, "card", NOW)
    # nothing was sent to the kitchen but the assigned session's ticket, no money taken
    assert len(await store.list_kitchen_orders(1, 0, 100)) == 1
    assert await store.list_transactions(1) == []


# -- tabs ----------------------------------------------------------------------------------------


async def test_tabs_at_the_till_assign_and_close(store: Store) -> None:
    await seed(store, "alice", "bob")
    await seed(store, "zed", store_id=2)
    tab = await store.create_tab(1, "Bar 3", NOW)
    assert tab.status is TabStatus.OPEN and tab.name == "Bar 3" and tab.store_id == 1 and tab.created_at == NOW
    assert tab.table_id is None and tab.group_id is None and tab.closed_at is None and tab.transaction_id is None
    assert tab.lines == [] and tab.total == 0
    assert await store.get_tab(tab.tab_id) == tab
    assert await store.get_tab(999) is None
    with pytest.raises(RestaurantNotFound):
        await store.create_tab(9, "x", NOW)

    a = await store.create_order_session("alice", 1, ITEMS, None, NOW)
    assigned, ticket = await store.assign_order_session_to_tab(a.session_id, tab.tab_id, 1, NOW + 1)
    assert assigned.status is ASSIGNED and assigned.tab_id == tab.tab_id and assigned.revision == 2
    assert assigned.order_id == ticket.order_id and assigned.transaction_id is None
    assert ticket.status is OrderStatus.CONFIRMED and ticket.table_id == "" and ticket.kitchen_seq is not None
    assert ticket.group_id == f"till:{a.session_id}" and ticket.placed_by == "alice"
    # exactly once on the same tab; another tab is an invalid transition
    assert await store.assign_order_session_to_tab(a.session_id, tab.tab_id, 99, NOW + 2) == (assigned, ticket)
    other = await store.create_tab(1, "Other", NOW)
    with pytest.raises(InvalidTransition):
        await store.assign_order_session_to_tab(a.session_id, other.tab_id, None, NOW)
    assert len(await store.list_kitchen_orders(1, 0, 100)) == 1

    b = await store.create_order_session("bob", 1, [item("x", "m3", "Cake", 500, 1)], None, NOW)
    await store.assign_order_session_to_tab(b.session_id, tab.tab_id, None, NOW + 3)
    got = await store.get_tab(tab.tab_id)
    assert got is not None and got.total == 1200 + 500
    assert [(ln["source"], ln["ref"], ln["name"], ln["qty"]) for ln in got.lines] == [
        ("till", a.session_id, "Soup", 2), ("till", a.session_id, "Tea", 1), ("till", b.session_id, "Cake", 1)
    ]

    # errors of assign
    c = await store.create_order_session("alice", 1, ITEMS, None, NOW)
    with pytest.raises(TabNotFound):
        await store.assign_order_session_to_tab(c.session_id, 999, None, NOW)
    ztab = await store.create_tab(2, "Elsewhere", NOW)
    with pytest.raises(TabNotFound):
        await store.assign_order_session_to_tab(c.session_id, ztab.tab_id, None, NOW)
    with pytest.raises(RevisionMismatch):
        await store.assign_order_session_to_tab(c.session_id, tab.tab_id, 7, NOW)
    with pytest.raises(OrderSessionNotFound):
        await store.assign_order_session_to_tab(999, tab.tab_id, None, NOW)
    empty = await store.create_order_session("bob", 1, [], None, NOW)
    with pytest.raises(InvalidTransition):
        await store.assign_order_session_to_tab(empty.session_id, tab.tab_id, None, NOW)

    # close: a transaction of the tab's lines, exactly once
    closed, tx = await store.close_tab(tab.tab_id, "card", NOW + 50)
    assert closed.status is TabStatus.CLOSED and closed.closed_at == NOW + 50
    assert closed.transaction_id == tx.transaction_id and closed.lines == got.lines
    assert tx.tab_id == tab.tab_id and tx.order_session_id is None and tx.total == 1700
    assert tx.lines == got.lines and tx.payment_method == "card" and tx.store_id == 1
    assert await store.close_tab(tab.tab_id, "cash", NOW + 60) == (closed, tx)
    assert await store.get_tab(tab.tab_id) == closed
    with pytest.raises(TabClosed) as exc:
        await store.assign_order_session_to_tab(c.session_id, tab.tab_id, None, NOW)
    assert exc.value.tab.tab_id == tab.tab_id
    with pytest.raises(TabNotFound):
        await store.close_tab(999, "card", NOW)

    # listings: newest first
    assert [t.tab_id for t in await store.list_tabs(1)] == [other.tab_id, tab.tab_id]
    assert [t.tab_id for t in await store.list_tabs(1, status=TabStatus.OPEN)] == [other.tab_id]
    assert [t.tab_id for t in await store.list_tabs(1, status=TabStatus.CLOSED)] == [tab.tab_id]
    assert [t.tab_id for t in await store.list_tabs(1, limit=1)] == [other.tab_id]
    assert (await store.list_tabs(1, status=TabStatus.CLOSED))[0] == closed
    assert [t.tab_id for t in await store.list_tabs(2)] == [ztab.tab_id]
    assert await store.list_transactions(1) == [tx]


async def test_a_table_sitting_has_a_tab_closed_by_checkout(store: Store) -> None:
    await seed(store, "alice", tables=("T1", "T2"))
    assert await store.get_group_tab("g1") is None
    joined = await join(store, "T1", "g1", "a")
    assert joined.opened_group
    await join(store, "T1", "g-unused", "b")  # a second phone joins the sitting: no second tab
    tab = await store.get_group_tab("g1")
    assert tab is not None and tab.status is TabStatus.OPEN and tab.name == "Table T1"
    assert tab.table_id == "T1" and tab.group_id == "g1" and tab.store_id == 1 and tab.lines == []
    assert await store.get_group_tab("g-unused") is None
    assert [t.tab_id for t in await store.list_tabs(1)] == [tab.tab_id]

    # confirmed table orders are on the bill; processing / failed ones are not
    await confirmed_table_order(store, "g1", "T1", "ORD-1-1", 1, [item("a", "m1", "Soup", 450, 2)])
    assert await store.next_order_number(1) == 2
    processing = OrderRecord("ORD-1-2", 2, 1, "T1", "g1", OrderStatus.PROCESSING, [item("b", "m9", "X", 999, 1)],
                             999, "", "mem-a", NOW + 2)
    assert await store.commit_writes([GroupWrite(GroupSnapshot("g1", "T1", 1, 2, {}), 1, order=processing)]) == [None]
    await confirmed_table_order(store, "g1", "T1", "ORD-1-3", 3, [item("c", "m2", "Tea", 300, 3, "iced")], revision=3)
    # and a till session put on the table's tab (its ticket names the table)
    s = await store.create_order_session("alice", 1, [item("d", "m4", "Wine", 800, 1)], None, NOW)
    _, ticket = await store.assign_order_session_to_tab(s.session_id, tab.tab_id, None, NOW + 5)
    assert ticket.table_id == "T1"
    tab = await store.get_group_tab("g1")
    assert tab is not None
    assert [(ln["source"], ln["ref"], ln["menu_item_id"], ln["name"], ln["unit_price"], ln["qty"], ln["note"])
            for ln in tab.lines] == [
        ("order", "ORD-1-1", "m1", "Soup", 450, 2, ""),
        ("order", "ORD-1-3", "m2", "Tea", 300, 3, "iced"),
        ("till", s.session_id, "m4", "Wine", 800, 1, ""),
    ]
    assert tab.total == 900 + 900 + 800

    paid = await store.checkout_table("T1", NOW + 10, payment_method="cash")
    assert paid.status is TableStatus.PAID and paid.current_group_id == "g1"
    closed = await store.get_group_tab("g1")
    assert closed is not None and closed.status is TabStatus.CLOSED and closed.closed_at == NOW + 10
    assert closed.transaction_id is not None
    tx = await store.get_transaction(closed.transaction_id)
    assert tx is not None and tx.tab_id == tab.tab_id and tx.total == 2600 and tx.payment_method == "cash"
    assert tx.lines == tab.lines and tx.created_at == NOW + 10
    # closing it again answers the checkout's transaction
    assert (await store.close_tab(tab.tab_id, "card", NOW + 11))[1] == tx

    # the default payment method is card; reset after checkout leaves the transaction alone
    await join(store, "T2", "g2", "c")
    await store.checkout_table("T2", NOW + 12)
    tab2 = await store.get_group_tab("g2")
    assert tab2 is not None and tab2.transaction_id is not None
    tx2 = await store.get_transaction(tab2.transaction_id)
    assert tx2 is not None and tx2.payment_method == "card" and tx2.total == 0 and tx2.lines == []
    await store.reset_table("T1", NOW + 20)
    assert await store.get_group_tab("g1") == closed
    assert [t.transaction_id for t in await store.list_transactions(1)] == [tx2.transaction_id, tx.transaction_id]
    # a new sitting of the table opens a new tab
    await join(store, "T1", "g3", "d", now=NOW + 30)
    t3 = await store.get_group_tab("g3")
    assert t3 is not None and t3.status is TabStatus.OPEN and t3.tab_id != tab.tab_id


async def test_reset_without_checkout_closes_the_tab_without_a_transaction(store: Store) -> None:
    await seed(store, tables=("T1", "T2"))
    await join(store, "T1", "g1", "a")
    await confirmed_table_order(store, "g1", "T1", "ORD-1-1", 1, [item()])
    await store.reset_table("T1", NOW + 5)
    tab = await store.get_group_tab("g1")
    assert tab is not None and tab.status is TabStatus.CLOSED and tab.closed_at == NOW + 5
    assert tab.transaction_id is None and tab.total == 900
    assert await store.list_transactions(1) == []
    with pytest.raises(TabClosed):  # closed without payment: there is no transaction to answer
        await store.close_tab(tab.tab_id, "card", NOW + 6)
    # the idle-group fail-safe ends a sitting like a reset
    await join(store, "T2", "g2", "b")
    assert await store.close_idle_groups(NOW + 10 * HOUR, NOW + 10 * HOUR) == [("T2", "g2")]
    tab2 = await store.get_group_tab("g2")
    assert tab2 is not None and tab2.status is TabStatus.CLOSED and tab2.transaction_id is None


async def test_close_tab_of_a_table_leaves_the_table_alone(store: Store) -> None:
    await seed(store, tables=("T1",))
    await join(store, "T1", "g1", "a")
    tab = await store.get_group_tab("g1")
    assert tab is not None
    closed, tx = await store.close_tab(tab.tab_id, "other", NOW + 1)
    assert closed.status is TabStatus.CLOSED and tx.payment_method == "other"
    t = await store.get_table("T1")
    assert t is not None and t.status is TableStatus.OCCUPIED
    # checkout later: the tab is already closed, no second transaction
    await store.checkout_table("T1", NOW + 2)
    assert await store.list_transactions(1) == [tx]


async def test_removing_a_staff_user_drops_open_sessions_but_never_paid_history(store: Store) -> None:
    """Order sessions are an audit trail: removing a staff user deletes their open session, never a
    completed one (or its transaction)."""
    await seed(store, "alice", "bob")
    a = await store.create_order_session("alice", 1, ITEMS, None, NOW)
    assert await store.remove_staff("alice") is True
    assert await store.get_order_session(a.session_id) is None
    b = await store.create_order_session("bob", 1, ITEMS, None, NOW)
    _, tx, _ = await store.complete_order_session(b.session_id, None, "card", NOW)
    assert await store.remove_staff("bob") is True
    assert await store.get_staff("bob") is None
    kept = await store.get_order_session(b.session_id)
    assert kept is not None and kept.status is OrderSessionStatus.COMPLETED
    assert await store.get_transaction(tx.transaction_id) == tx


# -- stale sessions ------------------------------------------------------------------------------


async def test_park_stale_sessions(store: Store) -> None:
    await seed(store, "alice", "bob", "carol", "dave")
    old = await store.create_order_session("alice", 1, ITEMS, "A", NOW)
    fresh = await store.create_order_session("bob", 1, ITEMS, "B", NOW + 100)
    parked_already = await store.create_order_session("carol", 1, [], None, NOW)
    await store.update_order_session(parked_already.session_id, 1, OrderSessionChange(status=PENDING), NOW)
    done = await store.create_order_session("dave", 1, ITEMS, None, NOW)
    await store.complete_order_session(done.session_id, None, "card", NOW)

    parked = await store.park_stale_order_sessions(NOW + 50, NOW + 200)
    assert [p.session_id for p in parked] == [old.session_id]
    p = parked[0]
    assert p.status is PENDING and p.logout_time == NOW + 200 and p.revision == 2 and p.items == ITEMS
    assert await store.get_order_session(old.session_id) == p
    assert (await store.get_order_session(fresh.session_id)) == fresh
    assert await store.park_stale_order_sessions(NOW + 50, NOW + 300) == []
    # parked, never deleted: it is still the user's open session
    assert await store.get_open_order_session("alice") == p


# -- Postgres only: real concurrency ---------------------------------------------------------------


@pytest.fixture
async def pg(pg_url: str) -> AsyncIterator[PostgresStore]:
    """Concurrency between connections is a Postgres matter (never parametrised over the memory store)."""
    store = await PostgresStore.connect(pg_url, pool_size=12)
    await store.truncate_all()
    try:
        yield store
    finally:
        await store.close()


async def test_pg_concurrent_completes_make_one_transaction_and_one_ticket(pg: PostgresStore) -> None:
    await seed(pg, "alice")
    s = await pg.create_order_session("alice", 1, ITEMS, None, NOW)
    results = await asyncio.gather(
        *(pg.complete_order_session(s.session_id, 1, "card", NOW + i) for i in range(10)), return_exceptions=True
    )
    assert all(not isinstance(r, BaseException) for r in results), results
    assert len({r[1].transaction_id for r in results if not isinstance(r, BaseException)}) == 1
    assert len({r[2].order_id for r in results if not isinstance(r, BaseException)}) == 1
    assert len(await pg.list_transactions(1)) == 1
    kitchen = await pg.list_kitchen_orders(1, 0, 100)
    assert len(kitchen) == 1 and kitchen[0].group_id == f"till:{s.session_id}"
    assert await pg.next_order_number(1) == 2  # exactly one number was taken


async def test_pg_concurrent_creates_make_one_session(pg: PostgresStore) -> None:
    await seed(pg, "alice")
    results = await asyncio.gather(
        *(pg.create_order_session("alice", 1, [item(str(i))], f"till-{i}", NOW) for i in range(10)),
        return_exceptions=True,
    )
    made = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, OpenSessionExists)]
    assert len(made) == 1 and len(refused) == 9, results
    assert all(r.current == made[0] for r in refused)
    assert len(await pg.list_order_sessions(1)) == 1


async def test_pg_concurrent_updates_of_one_revision_one_wins(pg: PostgresStore) -> None:
    await seed(pg, "alice")
    s = await pg.create_order_session("alice", 1, [], None, NOW)
    results = await asyncio.gather(
        pg.update_order_session(s.session_id, 1, OrderSessionChange(items=[item("a")]), NOW + 1),
        pg.update_order_session(s.session_id, 1, OrderSessionChange(items=[item("b")]), NOW + 1),
        return_exceptions=True,
    )
    won = [r for r in results if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, RevisionMismatch)]
    assert len(won) == 1 and len(lost) == 1, results
    assert lost[0].current == won[0] and won[0].revision == 2
    assert await pg.get_order_session(s.session_id) == won[0]


async def test_pg_concurrent_assign_and_close_of_one_tab(pg: PostgresStore) -> None:
    """A session assigned while the tab is being closed is either on the bill or refused (TabClosed)."""
    await seed(pg, *(f"u{i}" for i in range(6)))
    tab = await pg.create_tab(1, "Bar", NOW)
    sessions = [await pg.create_order_session(f"u{i}", 1, [item(str(i))], None, NOW) for i in range(6)]
    results = await asyncio.gather(
        *(pg.assign_order_session_to_tab(s.session_id, tab.tab_id, None, NOW) for s in sessions),
        pg.close_tab(tab.tab_id, "card", NOW + 1),
        return_exceptions=True,
    )
    closed = results[-1]
    assert not isinstance(closed, BaseException)
    _, tx = closed
    on_bill = {ln["ref"] for ln in tx.lines}
    for s, r in zip(sessions, results[:-1], strict=True):
        if isinstance(r, TabClosed):
            assert s.session_id not in on_bill
        else:
            assert not isinstance(r, BaseException), r
            assert s.session_id in on_bill
