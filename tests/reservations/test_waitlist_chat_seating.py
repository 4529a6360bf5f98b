"""The waitlist (promotion in order, offers that expire, accept -> pending -> confirmed, a lost Redis queue),
the availability chat checked against the availability, and seating (the table's sitting opens; phones join)."""

from __future__ import annotations

from datetime import date

import pytest

from tableside.booking import free_ranges
from tableside.reservations import BookingRefused, MemoryWaitlistQueue
from tableside.storage import Restaurant, Table, TableStatus
from tableside.storage.interface import InvalidTransition, TableNotFound, TabStatus
from tableside.storage.reservations import (
    AlreadyWaiting,
    ReservationStatus,
    WaitlistEntryNotFound,
    WaitlistStatus,
)
from tests.reservations.conftest import CHEF, LONG, SHORT, SOMM, Env, jst

SIX = jst(2026, 12, 1, 18, 0)


async def _full_at_six(env: Env) -> tuple[str, str]:
    a, _ = await env.svc.book(env.users[0], 1, SHORT, CHEF, SIX)
    b, _ = await env.svc.book(env.users[0], 1, SHORT, SOMM, SIX)
    await env.settle()
    return a.reservation_id, b.reservation_id


async def test_waitlist_promotion_in_order(env: Env) -> None:
    chef_r, _ = await _full_at_six(env)
    _, u1, u2, u3 = env.users
    entries = []
    for n, u in enumerate((u1, u2, u3), start=1):
        e, pos = await env.svc.join_waitlist(u, 1, SHORT, SIX)
        assert e.status == WaitlistStatus.WAITING and pos == n
        entries.append(e)
    with pytest.raises(AlreadyWaiting):
        await env.svc.join_waitlist(u1, 1, SHORT, SIX)
    env.events.clear()

    await env.svc.cancel(chef_r)  # the slot frees: the first is offered it
    mine = await env.svc.my_waitlist(u1)
    first = mine[0][0]
    assert first.status == WaitlistStatus.OFFERED and first.offered_staff_id == CHEF
    assert first.offered_until == env.clock.now() + 600
    held = await env.svc.get(first.reservation_id or "")
    assert held.user_id == u1 and held.status == ReservationStatus.PENDING and held.hold_expires_at == first.offered_until
    assert [(u, m["type"]) for u, m in env.events if m["type"] == "waitlist_offer"] == [(u1, "waitlist_offer")]
    assert (await env.svc.my_waitlist(u2))[0][1] == 1 and (await env.svc.my_waitlist(u3))[0][1] == 2
    assert "18:00" not in [s.start.strftime("%H:%M") for s in (await env.svc.availability(1, SIX.date(), SHORT)).slots]

    await env.tick(600)  # the offer runs out: the second is offered
    await env.svc.sweep()
    assert (await env.svc.my_waitlist(u1))[0][0].status == WaitlistStatus.EXPIRED
    assert (await env.svc.get(held.reservation_id)).status == ReservationStatus.CANCELED
    second = (await env.svc.my_waitlist(u2))[0][0]
    assert second.status == WaitlistStatus.OFFERED and (await env.svc.my_waitlist(u3))[0][1] == 1
    with pytest.raises(WaitlistEntryNotFound):
        await env.svc.accept_offer(u3, second.entry_id)  # not theirs
    with pytest.raises(BookingRefused) as err:
        await env.svc.accept_offer(u3, entries[2].entry_id)
    assert err.value.code == "not_offered"

    r, p = await env.svc.accept_offer(u2, second.entry_id)  # accept -> pending, paying
    assert r.status == ReservationStatus.PENDING and r.user_id == u2 and p.amount == 10000
    assert (await env.svc.my_waitlist(u2))[0][0].status == WaitlistStatus.ACCEPTED
    await env.settle()
    assert (await env.svc.get(r.reservation_id)).status == ReservationStatus.CONFIRMED
    again, _ = await env.svc.accept_offer(u2, second.entry_id)
    assert again.reservation_id == r.reservation_id
    third = (await env.svc.my_waitlist(u3))[0]
    assert third[0].status == WaitlistStatus.WAITING and third[1] == 1


async def test_an_expired_offer_cannot_be_accepted_and_leaving_passes_it_on(env: Env) -> None:
    chef_r, _ = await _full_at_six(env)
    _, u1, u2, _ = env.users
    e1, _ = await env.svc.join_waitlist(u1, 1, SHORT, SIX)
    e2, _ = await env.svc.join_waitlist(u2, 1, SHORT, SIX)
    await env.svc.cancel(chef_r)
    await env.tick(600)
    with pytest.raises(BookingRefused) as err:
        await env.svc.accept_offer(u1, e1.entry_id)
    assert err.value.code == "offer_expired"
    await env.svc.sweep()
    assert (await env.svc.my_waitlist(u2))[0][0].status == WaitlistStatus.OFFERED
    left = await env.svc.leave_waitlist(u2, e2.entry_id)  # declines: the held slot frees
    assert left.status == WaitlistStatus.CANCELED
    assert "18:00" in [s.start.strftime("%H:%M") for s in (await env.svc.availability(1, SIX.date(), SHORT, CHEF)).slots]


async def test_a_staff_preference_is_kept_and_a_free_slot_is_offered_at_once(env: Env) -> None:
    chef_r, somm_r = await _full_at_six(env)
    _, u1, u2, _ = env.users
    e1, _ = await env.svc.join_waitlist(u1, 1, SHORT, SIX, staff_id=SOMM)  # only with the sommelier
    e2, _ = await env.svc.join_waitlist(u2, 1, SHORT, SIX)
    await env.svc.cancel(chef_r)  # the chef frees: u1 does not want him, u2 gets him
    assert (await env.svc.my_waitlist(u1))[0][0].status == WaitlistStatus.WAITING
    assert (await env.svc.my_waitlist(u2))[0][0].offered_staff_id == CHEF
    await env.svc.cancel(somm_r)
    assert (await env.svc.my_waitlist(u1))[0][0].offered_staff_id == SOMM
    e3, pos = await env.svc.join_waitlist(env.users[3], 1, LONG, jst(2026, 12, 1, 19, 30))  # free now
    assert e3.status == WaitlistStatus.OFFERED and pos is None


async def test_the_queue_is_rebuilt_from_the_rows(menv: Env) -> None:
    chef_r, _ = await _full_at_six(menv)
    _, u1, u2, _ = menv.users
    await menv.svc.join_waitlist(u1, 1, SHORT, SIX)
    await menv.svc.join_waitlist(u2, 1, SHORT, SIX)
    assert isinstance(menv.queue, MemoryWaitlistQueue)
    menv.queue.forget_all()  # Redis lost it
    assert (await menv.svc.my_waitlist(u2))[0][1] == 2
    assert await menv.queue.entries(1, SHORT, SIX.timestamp()) is not None
    await menv.svc.cancel(chef_r)
    assert (await menv.svc.my_waitlist(u1))[0][0].status == WaitlistStatus.OFFERED


# -- chat ---------------------------------------------------------------------------------------------------


async def test_chat_answers_from_the_availability(env: Env) -> None:
    u = env.users[0]
    fri = date(2026, 12, 4)
    await env.svc.book(u, 1, LONG, CHEF, jst(2026, 12, 4, 12, 0))
    await env.svc.book(u, 1, LONG, SOMM, jst(2026, 12, 4, 12, 0))
    ans = await env.svc.chat(u, "is Friday free?", "web")
    avail = await env.svc.availability(1, fri, SHORT)  # the shortest course
    expected = [(s.strftime("%H:%M"), e.strftime("%H:%M")) for s, e in free_ranges(avail.slots)]
    assert ans.lang == "en" and ans.date == fri and ans.ranges == expected == [("13:30", "14:30"), ("17:00", "22:00")]
    assert "13:30–14:30" in ans.reply and "17:00–22:00" in ans.reply
    ja = await env.svc.chat(u, "金曜日の夜は空いてる？", "web")
    assert ja.lang == "ja" and ja.ranges == [("17:00", "22:00")] and "17:00〜22:00" in ja.reply
    closed = await env.svc.chat(u, "明日空いてる？", "web")  # Wednesday: closed
    assert closed.ranges == [] and "定休日" in closed.reply
    hello = await env.svc.chat(u, "hello", "line")
    assert hello.ranges is None and hello.date is None and "free" in hello.reply
    log = await env.svc.chat_log(u, "web")
    assert [e["role"] for e in log] == ["user", "assistant"] * 3
    assert log[0]["message"] == "is Friday free?" and log[1]["message"] == ans.reply
    assert [e["message"] for e in await env.svc.chat_log(u, "line")] == ["hello", hello.reply]
    assert ans.json()["ranges"] == [["13:30", "14:30"], ["17:00", "22:00"]]
    with pytest.raises(BookingRefused):
        await env.svc.chat(u, "x" * 501, "web")


async def test_chat_of_a_named_store(env: Env) -> None:
    ans = await env.svc.chat(env.users[0], "is Friday free?", "web", store_id=2)  # no courses there
    assert ans.ranges == []


# -- seating ------------------------------------------------------------------------------------------------


async def test_seating_opens_the_sitting_that_phones_join(env: Env) -> None:
    await env.store.add_table(Table("t1", 1, "Table 1", TableStatus.VACANT, None, "qr-t1", 0.0))
    await env.store.add_table(Table("t2", 1, "Table 2", TableStatus.VACANT, None, "qr-t2", 0.0))
    await env.store.upsert_restaurant(Restaurant(2, "Other", timezone="UTC"))
    await env.store.add_table(Table("x1", 2, "Elsewhere", TableStatus.VACANT, None, "qr-x1", 0.0))
    r, _ = await env.svc.book(env.users[0], 1, SHORT, CHEF, SIX)
    with pytest.raises(InvalidTransition):  # pending: not paid yet
        await env.svc.seat(r.reservation_id, "t1")
    await env.settle()
    with pytest.raises(TableNotFound):
        await env.svc.seat(r.reservation_id, "x1")
    await env.store.join_table("t2", "qr-t2", "a" * 64, "m0", "g-phone", env.clock.now() + 3600, env.clock.now())
    with pytest.raises(BookingRefused) as err:
        await env.svc.seat(r.reservation_id, "t2")
    assert err.value.code == "table_occupied"

    env.events.clear()
    seated, table = await env.svc.seat(r.reservation_id, "t1", lambda: "g-resv")
    assert seated.status == ReservationStatus.SEATED and seated.table_id == "t1" and seated.group_id == "g-resv"
    assert table.status == TableStatus.OCCUPIED and table.current_group_id == "g-resv"
    tab = await env.store.get_group_tab("g-resv")
    assert tab is not None and tab.status == TabStatus.OPEN
    assert env.events[-1][1]["reservation"]["status"] == "seated"
    joined = await env.store.join_table("t1", "qr-t1", "b" * 64, "m1", "g-other", env.clock.now() + 3600,
                                        env.clock.now())
    assert joined.group_id == "g-resv" and not joined.opened_group
    again, _ = await env.svc.seat(r.reservation_id, "t1")
    assert again.status == ReservationStatus.SEATED
    assert [h["status"] for h in await env.svc.history(env.users[0])][0] == "seated"


async def test_seating_a_reservation_canceled_meanwhile_gives_the_table_back(menv: Env) -> None:
    await menv.store.add_table(Table("t1", 1, "Table 1", TableStatus.VACANT, None, "qr-t1", 0.0))
    r, _ = await menv.svc.book(menv.users[0], 1, SHORT, CHEF, SIX)
    await menv.settle()
    real = menv.res.seat_reservation

    async def canceled_meanwhile(*args: object) -> object:
        await menv.res.cancel_reservation(r.reservation_id, menv.clock.now())
        return await real(*args)  # type: ignore[arg-type]

    menv.res.seat_reservation = canceled_meanwhile  # type: ignore[method-assign]
    with pytest.raises(InvalidTransition):
        await menv.svc.seat(r.reservation_id, "t1", lambda: "g1")
    t = await menv.store.get_table("t1")
    assert t is not None and t.status == TableStatus.VACANT


async def test_no_show(env: Env) -> None:
    r, _ = await env.svc.book(env.users[0], 1, SHORT, CHEF, SIX)
    await env.settle()
    with pytest.raises(BookingRefused) as err:
        await env.svc.no_show(r.reservation_id)
    assert err.value.code == "too_early"
    await env.tick(SIX.timestamp() + 15 * 60 - env.clock.now())
    ns = await env.svc.no_show(r.reservation_id)
    assert ns.status == ReservationStatus.NO_SHOW
    assert (await env.svc.no_show(r.reservation_id)).status == ReservationStatus.NO_SHOW


async def test_day_timeline(env: Env) -> None:
    await env.svc.book(env.users[0], 1, SHORT, CHEF, SIX)
    await env.svc.book(env.users[1], 1, SHORT, SOMM, jst(2026, 12, 1, 12, 0))
    await env.svc.book(env.users[1], 1, SHORT, SOMM, jst(2026, 12, 3, 12, 0))
    day = await env.svc.day(1, date(2026, 12, 1))
    assert [r.start_time for r in day.reservations] == [jst(2026, 12, 1, 12, 0).timestamp(), SIX.timestamp()]
    assert {s.staff_id for s in day.staff} == {CHEF, SOMM} and day.store.timezone == "Asia/Tokyo"
