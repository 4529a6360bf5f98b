"""``seed_demo_reservations``: each demo store gets a chef, a sommelier and a 60- and a 90-minute course,
idempotently; the first store gets a lunch break only while its hours are the default."""

from __future__ import annotations

from tableside.demo import DEMO_HOURS_1, seed_demo, seed_demo_reservations
from tableside.storage import MemoryStore
from tableside.storage.reservations_memory import MemoryReservations


async def test_demo_reservations_are_seeded_once_and_keep_changes() -> None:
    store = MemoryStore()
    res = MemoryReservations(store)
    await seed_demo(store, 1, "Demo", 4)
    await seed_demo_reservations(store, res, 1)
    for rid in (1, 2):
        staff = await res.list_bookable_staff(rid)
        assert sorted(s.role for s in staff) == ["chef", "sommelier"]
        assert [c.duration for c in await res.list_courses(rid)] == [60, 90]
    one = await store.get_restaurant(1)
    assert one is not None and one.business_hours == DEMO_HOURS_1
    two = await store.get_restaurant(2)
    assert two is not None and two.business_hours["mon"] == []  # the trattoria's own hours stay

    # a user changes things; a restart keeps them
    course = (await res.list_courses(1))[0]
    course.price = 1
    await res.upsert_course(course)
    one.business_hours = {"mon": [["09:00", "10:00"]], "closed_dates": []}
    await store.upsert_restaurant(one)
    await seed_demo(store, 1, "Demo", 4)
    await seed_demo_reservations(store, res, 1)
    assert len(await res.list_bookable_staff(1)) == 2 and len(await res.list_courses(1)) == 2
    assert (await res.list_courses(1))[0].price == 1
    again = await store.get_restaurant(1)
    assert again is not None and again.business_hours["mon"] == [["09:00", "10:00"]]
