"""Several stores in one deployment (issue 11): the store rows, their validation and staff bound to a
store, on both stores (MemoryStore and PostgresStore)."""

from __future__ import annotations

from typing import Any

import pytest

from tableside.storage import InvalidStoreData, Restaurant, RestaurantNotFound, StaffRole, StaffUser, Store
from tableside.storage.interface import default_business_hours, validate_business_hours, validate_timezone

NOW = 1_700_000_000.0

HOURS: dict[str, Any] = {
    "mon": [["11:00", "14:00"], ["17:00", "22:00"]],
    "tue": [["11:00", "22:00"]],
    "wed": [],
    "thu": [["11:00", "22:00"]],
    "fri": [["11:00", "24:00"]],
    "sat": [["10:00", "23:00"]],
    "sun": [["10:00", "21:00"]],
    "closed_dates": ["2026-12-31", "2026-12-25"],
}


async def test_stores_round_trip_with_all_fields_in_id_order(store: Store) -> None:
    await store.upsert_restaurant(Restaurant(2, "Harbour", "1 Quay St", "+81 3 1234", HOURS, "Asia/Tokyo"))
    await store.upsert_restaurant(Restaurant(1, "Bistro"))
    stores = await store.list_restaurants()
    assert [s.restaurant_id for s in stores] == [1, 2]
    first, second = stores
    assert first.business_hours == default_business_hours() and first.timezone == "UTC"
    assert (second.name, second.address, second.phone, second.timezone) == (
        "Harbour", "1 Quay St", "+81 3 1234", "Asia/Tokyo"
    )
    assert second.business_hours["mon"] == [["11:00", "14:00"], ["17:00", "22:00"]]
    assert second.business_hours["wed"] == []
    assert second.business_hours["closed_dates"] == ["2026-12-25", "2026-12-31"]  # normalised: sorted
    assert second.created_at > 0 and second.store_id == 2
    created = second.created_at
    # an update keeps created_at and the order counter
    assert await store.next_order_number(2) == 1
    await store.upsert_restaurant(Restaurant(2, "Harbour II", timezone="Europe/Paris"))
    again = await store.get_restaurant(2)
    assert again is not None and again.name == "Harbour II" and again.timezone == "Europe/Paris"
    assert again.created_at == pytest.approx(created)
    assert await store.next_order_number(2) == 2


@pytest.mark.parametrize(
    "hours",
    [
        [],
        {"monday": [["11:00", "22:00"]]},
        {"mon": [["11:00"]]},
        {"mon": [["22:00", "11:00"]]},
        {"mon": [["11:00", "11:00"]]},
        {"mon": [["25:00", "26:00"]]},
        {"mon": [["11:00", "15:00"], ["14:00", "22:00"]]},
        {"mon": "11:00-22:00"},
        {"closed_dates": ["31.12.2026"]},
        {"closed_dates": "2026-12-31"},
    ],
)
async def test_bad_business_hours_are_refused_and_nothing_is_written(store: Store, hours: Any) -> None:
    with pytest.raises(InvalidStoreData):
        await store.upsert_restaurant(Restaurant(1, "R", business_hours=hours))
    assert await store.get_restaurant(1) is None


@pytest.mark.parametrize("tz", ["Mars/Olympus", "", "../etc/passwd", "/etc/localtime", 5])
async def test_unknown_timezones_are_refused(store: Store, tz: Any) -> None:
    with pytest.raises(InvalidStoreData):
        await store.upsert_restaurant(Restaurant(1, "R", timezone=tz))
    assert await store.list_restaurants() == []


def test_validators_accept_the_documented_shapes() -> None:
    assert validate_timezone("America/New_York") == "America/New_York"
    assert validate_business_hours({})["sun"] == []  # a missing day is closed
    assert validate_business_hours(HOURS)["fri"] == [["11:00", "24:00"]]


async def test_staff_store_binding_is_stored_and_read_with_the_session(store: Store) -> None:
    await store.upsert_restaurant(Restaurant(1, "A"))
    await store.upsert_restaurant(Restaurant(2, "B"))
    await store.upsert_staff(StaffUser("m2", StaffRole.MANAGER, "h", store_id=2))
    await store.upsert_staff(StaffUser("root", StaffRole.ADMIN, "h"))
    m2 = await store.get_staff("m2")
    assert m2 is not None and m2.store_id == 2
    root = await store.get_staff("root")
    assert root is not None and root.store_id is None
    await store.create_staff_session("t1", "m2", StaffRole.MANAGER, NOW + 100)
    session = await store.resolve_staff_session("t1", NOW)
    assert session is not None and session.store_id == 2
    # moving the user to another store applies to the open session at once
    await store.upsert_staff(StaffUser("m2", StaffRole.MANAGER, "h", store_id=1))
    session = await store.resolve_staff_session("t1", NOW)
    assert session is not None and session.store_id == 1
    with pytest.raises(RestaurantNotFound):
        await store.upsert_staff(StaffUser("ghost", StaffRole.SERVER, "h", store_id=99))
    assert await store.get_staff("ghost") is None
