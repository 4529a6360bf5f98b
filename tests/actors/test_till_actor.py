"""TillActor (docs/till.md, "How it is built") on the in-memory store and a fake clock: every change is
read from the store and written conditionally, answered after the write, and published to the user."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tableside.actors.till import (
    AssignToTab,
    Caller,
    Complete,
    Delete,
    IfMatchRequired,
    ItemRejected,
    LoginRecover,
    LogoutPark,
    Saved,
    SaveOpen,
    TakeOver,
    TillContext,
    TillDirectory,
    TillMoved,
    Update,
)
from tableside.auth import StaffAuth
from tableside.clock import FakeClock
from tableside.demo import seed_demo
from tableside.menu import MenuCatalog
from tableside.protocol.till import TillLine
from tableside.storage.interface import (
    InvalidTransition,
    OrderSessionNotFound,
    OrderSessionStatus,
    RevisionMismatch,
    StaffRole,
)
from tableside.storage.memory import MemoryStore

STORE = 1
A = Caller("sam", "till-A")
B = Caller("sam", "till-B")
MANAGER = Caller("boss", None)


class World:
    def __init__(self, store: MemoryStore, menu: MenuCatalog, clock: FakeClock) -> None:
        self.store, self.menu, self.clock = store, menu, clock
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.kitchen_wakes: list[int] = []
        self.till = TillDirectory(TillContext(
            store=store, menu=menu, clock=clock,
            publish=lambda user, msg: self.events.append((user, msg)),
            on_order_confirmed=self.kitchen_wakes.append, idle_seconds=60,
        ))

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        return [m for _, m in self.events if m["type"] == type_]

    async def create(self, *lines: TillLine, caller: Caller = A) -> Any:
        saved: Saved = await self.till.ask(caller.username, SaveOpen(caller, STORE, lines, None))
        return saved.session


@pytest.fixture
async def world() -> Any:
    store = MemoryStore()
    await seed_demo(store, STORE, "Demo", 2)
    auth = StaffAuth(store, 3600)
    await auth.set_user("sam", StaffRole.SERVER, "pw-sam-123", STORE)
    await auth.set_user("boss", StaffRole.MANAGER, "pw-boss-123", STORE)
    menu = MenuCatalog(store)
    await menu.load([STORE, STORE + 1])
    w = World(store, menu, FakeClock())
    yield w
    await w.till.stop_all()


async def test_create_prices_from_the_menu_and_publishes(world: World) -> None:
    session = await world.create(TillLine("gyoza", 2), TillLine("asahi", 1, "cold"))
    assert session.status == OrderSessionStatus.ACTIVE and session.till_id == "till-A" and session.revision == 1
    gyoza = world.menu.get("gyoza")
    assert gyoza is not None
    assert session.items[0]["unit_price"] == gyoza.price and session.items[0]["name"] == gyoza.name
    assert session.items[1]["note"] == "cold"
    assert session.total == 2 * gyoza.price + session.items[1]["unit_price"]
    assert [u for u, _ in world.events] == ["sam"]
    assert world.of_type("order_session_updated")[0]["session"]["revision"] == 1


async def test_a_second_create_needs_if_match_and_then_updates(world: World) -> None:
    first = await world.create(TillLine("gyoza", 1))
    with pytest.raises(IfMatchRequired):
        await world.create(TillLine("mochi", 1))
    line_id = first.items[0]["line_id"]
    saved: Saved = await world.till.ask("sam", SaveOpen(A, STORE, (TillLine("gyoza", 3, "", line_id),), 1))
    assert not saved.created and saved.session.session_id == first.session_id and saved.session.revision == 2
    assert saved.session.items[0]["qty"] == 3 and saved.session.items[0]["line_id"] == line_id


async def test_a_kept_line_keeps_its_price_and_a_new_line_takes_the_menu_price(world: World) -> None:
    session = await world.create(TillLine("gyoza", 1))
    line_id = session.items[0]["line_id"]
    old_price = session.items[0]["unit_price"]
    item = world.menu.get("gyoza")
    assert item is not None
    item.price = old_price + 500  # the menu changes under the open order
    saved: Saved = await world.till.ask("sam", Update(A, session.session_id, 1, (
        TillLine("gyoza", 2, "", line_id), TillLine("gyoza", 1))))
    assert saved.session.items[0]["unit_price"] == old_price
    assert saved.session.items[1]["unit_price"] == old_price + 500
    assert saved.session.items[1]["line_id"] != line_id


async def test_unknown_another_stores_and_sold_out_items_are_refused_when_new(world: World) -> None:
    session = await world.create(TillLine("gyoza", 1))
    for item, code in (("nope", "unknown_item"), ("s2-espresso", "unknown_item")):
        with pytest.raises(ItemRejected) as err:
            await world.till.ask("sam", Update(A, session.session_id, 1, (TillLine(item, 1),)))
        assert err.value.code == code
    await world.menu.set_availability("gyoza", False)
    await world.menu.set_availability("mochi", False)
    with pytest.raises(ItemRejected) as err:
        await world.till.ask("sam", Update(A, session.session_id, 1, (TillLine("mochi", 1),)))
    assert err.value.code == "item_unavailable"
    # a sold-out item already on the order stays
    line_id = session.items[0]["line_id"]
    saved: Saved = await world.till.ask("sam", Update(A, session.session_id, 1, (TillLine("gyoza", 4, "", line_id),)))
    assert saved.session.items[0]["qty"] == 4
    assert (await world.store.get_order_session(session.session_id)).revision == 2  # type: ignore[union-attr]


async def test_a_stale_revision_is_refused_with_the_current_session(world: World) -> None:
    session = await world.create(TillLine("gyoza", 1))
    first = world.till.ask("sam", Update(A, session.session_id, 1, (TillLine("mochi", 1),)))
    second = world.till.ask("sam", Update(A, session.session_id, 1, (TillLine("asahi", 1),)))
    results = await asyncio.gather(first, second, return_exceptions=True)
    assert isinstance(results[0], Saved)
    assert isinstance(results[1], RevisionMismatch) and results[1].current.revision == 2


async def test_another_till_of_the_same_user_gets_moved_a_manager_does_not(world: World) -> None:
    session = await world.create(TillLine("gyoza", 1))
    with pytest.raises(TillMoved) as err:
        await world.till.ask("sam", Update(B, session.session_id, 1, (TillLine("mochi", 1),)))
    assert err.value.session.till_id == "till-A"
    saved: Saved = await world.till.ask("sam", Update(MANAGER, session.session_id, 1, (TillLine("mochi", 1),)))
    assert saved.session.till_id == "till-A" and saved.session.items[0]["menu_item_id"] == "mochi"
    with pytest.raises(TillMoved):
        await world.till.ask("sam", Complete(B, session.session_id, None, "card"))
    with pytest.raises(TillMoved):
        await world.till.ask("sam", Delete(B, session.session_id))


async def test_status_moves_only_between_active_and_pending_logout(world: World) -> None:
    session = await world.create(TillLine("gyoza", 1))
    with pytest.raises(InvalidTransition):
        await world.till.ask("sam", Update(A, session.session_id, 1, None, OrderSessionStatus.COMPLETED))
    saved: Saved = await world.till.ask("sam", Update(A, session.session_id, 1, None,
                                                      OrderSessionStatus.PENDING_LOGOUT))
    assert saved.session.status == OrderSessionStatus.PENDING_LOGOUT and saved.session.logout_time is not None


async def test_complete_twice_at_once_makes_one_transaction_and_one_ticket(world: World) -> None:
    session = await world.create(TillLine("gyoza", 2))
    one, two = await asyncio.gather(
        world.till.ask("sam", Complete(A, session.session_id, None, "cash")),
        world.till.ask("sam", Complete(MANAGER, session.session_id, 1, "card")),
    )
    assert one.transaction.transaction_id == two.transaction.transaction_id
    assert one.order.order_id == two.order.order_id and one.transaction.payment_method == "cash"
    assert one.transaction.total == session.total
    assert len(await world.store.list_kitchen_orders(STORE, 0, 100)) == 1
    assert world.kitchen_wakes == [STORE]
    assert [m["session"]["status"] for m in world.of_type("order_session_updated")] == ["active", "completed"]
    with pytest.raises(InvalidTransition):
        await world.till.ask("sam", Update(A, session.session_id, 2, (TillLine("mochi", 1),)))
    with pytest.raises(InvalidTransition):
        await world.till.ask("sam", Delete(A, session.session_id))


async def test_an_empty_session_cannot_be_completed(world: World) -> None:
    session = await world.create()
    with pytest.raises(InvalidTransition):
        await world.till.ask("sam", Complete(A, session.session_id, None, "card"))


async def test_assign_to_tab_once(world: World) -> None:
    tab = await world.store.create_tab(STORE, "Bar 1", world.clock.now())
    session = await world.create(TillLine("asahi", 2))
    one = await world.till.ask("sam", AssignToTab(A, session.session_id, tab.tab_id, None))
    two = await world.till.ask("sam", AssignToTab(A, session.session_id, tab.tab_id, None))
    assert one.session.status == OrderSessionStatus.ASSIGNED_TO_TAB and one.order.order_id == two.order.order_id
    assert one.tab is not None and one.tab.total == session.total
    assert len(await world.store.list_kitchen_orders(STORE, 0, 100)) == 1


async def test_take_over_moves_the_session_and_tells_the_old_till(world: World) -> None:
    session = await world.create(TillLine("gyoza", 1))
    saved: Saved = await world.till.ask("sam", TakeOver(B, session.session_id))
    assert saved.session.till_id == "till-B" and saved.session.status == OrderSessionStatus.ACTIVE
    assert world.of_type("session_moved") == [
        {"type": "session_moved", "session_id": session.session_id, "till_id": "till-B"}]
    with pytest.raises(TillMoved):
        await world.till.ask("sam", Update(A, session.session_id, saved.session.revision, (TillLine("mochi", 1),)))


async def test_logout_parks_and_login_elsewhere_recovers(world: World) -> None:
    session = await world.create(TillLine("gyoza", 1))
    assert await world.till.ask("sam", LogoutPark(B)) is None  # another till's logout leaves it
    parked = await world.till.ask("sam", LogoutPark(A))
    assert parked.status == OrderSessionStatus.PENDING_LOGOUT and parked.logout_time == world.clock.now()
    answer = await world.till.ask("sam", LoginRecover(B))
    assert answer.warning is None and answer.session.status == OrderSessionStatus.ACTIVE
    assert answer.session.till_id == "till-B" and answer.session.logout_time is None
    warned = await world.till.ask("sam", LoginRecover(A))
    assert warned.warning["code"] == "active_on_other_till" and warned.warning["till_id"] == "till-B"
    assert warned.session.session_id == session.session_id


async def test_delete_an_open_session(world: World) -> None:
    session = await world.create(TillLine("gyoza", 1))
    assert await world.till.ask("sam", Delete(A, session.session_id)) is True
    assert world.events[-1][1] == {"type": "order_session_updated", "session": None, "session_id": session.session_id}
    with pytest.raises(OrderSessionNotFound):
        await world.till.ask("sam", Delete(A, session.session_id))


async def test_an_idle_actor_stops_and_a_new_one_answers(world: World) -> None:
    await world.create(TillLine("gyoza", 1))
    assert world.till.active_count == 1
    await world.clock.advance(61)
    for _ in range(20):
        if world.till.active_count == 0:
            break
        await asyncio.sleep(0)
    assert world.till.active_count == 0
    answer = await world.till.ask("sam", LoginRecover(A))
    assert answer.session is not None and world.till.active_count == 1
