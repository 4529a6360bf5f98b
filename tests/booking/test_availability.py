"""Bookable slots: business hours with breaks and closed days, staff busy time, the now/lead cut-off, daylight
saving, ``slot_json`` offsets, and property tests against a brute-force reference."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tableside.booking import (
    BookingInputError,
    Busy,
    Slot,
    available_slots,
    day_windows,
    free_ranges,
    is_closed,
    local_instant,
    parse_date,
    parse_start_time,
    slot_json,
    validate_duration,
)

TOKYO = ZoneInfo("Asia/Tokyo")
NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")

HOURS: dict[str, Any] = {
    "mon": [["11:00", "14:00"], ["17:00", "22:00"]],
    "tue": [["11:00", "14:00"], ["17:00", "22:00"]],
    "wed": [],
    "thu": [["17:00", "24:00"]],
    "fri": [["11:00", "14:00"], ["17:00", "22:00"]],
    "sat": [["11:00", "22:00"]],
    "closed_dates": ["2026-03-20"],
}
MONDAY = date(2026, 3, 16)


def tokyo(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=TOKYO)


def slots(day: date = MONDAY, duration: int = 60, staff: list[str] | None = None,
          busy: list[Busy] | None = None, hours: dict[str, Any] | None = None, tz: str = "Asia/Tokyo",
          **kw: Any) -> list[Slot]:
    return available_slots(business_hours=HOURS if hours is None else hours, tz=tz, day=day,
                           duration_minutes=duration, staff_ids=["a"] if staff is None else staff,
                           busy=busy or [], **kw)


def starts(found: list[Slot]) -> list[str]:
    return [s.start.strftime("%H:%M") for s in found]


def utc(moment: datetime) -> datetime:
    """Compare as instants: Python compares two datetimes of the same zone by wall time, ignoring fold."""
    return moment.astimezone(UTC)


def elapsed(a: datetime, b: datetime) -> timedelta:
    return b.astimezone(UTC) - a.astimezone(UTC)


# --- windows ---------------------------------------------------------------------------------------------


def test_day_windows_keep_breaks_and_are_in_the_store_zone() -> None:
    windows = day_windows(HOURS, "Asia/Tokyo", MONDAY)
    assert windows == [(tokyo(MONDAY, 11), tokyo(MONDAY, 14)), (tokyo(MONDAY, 17), tokyo(MONDAY, 22))]
    assert all(w.tzinfo == TOKYO for pair in windows for w in pair)


def test_closed_weekday_missing_weekday_and_closed_date() -> None:
    assert day_windows(HOURS, "Asia/Tokyo", date(2026, 3, 18)) == []  # wed: []
    assert day_windows(HOURS, "Asia/Tokyo", date(2026, 3, 22)) == []  # sun: missing
    assert day_windows(HOURS, "Asia/Tokyo", date(2026, 3, 20)) == []  # a friday in closed_dates
    assert day_windows(HOURS, "Asia/Tokyo", date(2026, 3, 27)) != []  # the next friday is open
    assert is_closed(HOURS, date(2026, 3, 20)) and is_closed(HOURS, date(2026, 3, 22))
    assert not is_closed(HOURS, MONDAY)
    assert slots(day=date(2026, 3, 20)) == []


def test_24_00_is_the_next_days_midnight() -> None:
    thursday = date(2026, 3, 19)
    [(opens, closes)] = day_windows(HOURS, "Asia/Tokyo", thursday)
    assert closes == datetime(2026, 3, 20, 0, 0, tzinfo=TOKYO)
    found = slots(day=thursday, duration=60)
    assert starts(found)[-1] == "23:00" and found[-1].end == closes
    assert local_instant(thursday, "24:00", TOKYO) == closes


def test_bad_business_hours_are_a_typed_error() -> None:
    with pytest.raises(BookingInputError) as err:
        day_windows({"mon": [["11:00"]]}, "Asia/Tokyo", MONDAY)
    assert err.value.code == "invalid_business_hours"
    with pytest.raises(BookingInputError):
        day_windows({"mon": [["25:00", "26:00"]]}, "Asia/Tokyo", MONDAY)
    with pytest.raises(BookingInputError) as err:
        day_windows(HOURS, "Mars/Olympus", MONDAY)
    assert err.value.code == "invalid_timezone"
    with pytest.raises(BookingInputError) as err:
        day_windows({"fri": [["23:00", "24:00"]]}, "Asia/Tokyo", date.max)  # the calendar's last day
    assert err.value.code == "invalid_date"


# --- slots -----------------------------------------------------------------------------------------------


def test_a_course_never_crosses_a_break_or_closing() -> None:
    found = slots(duration=90)
    assert starts(found) == ["11:00", "11:30", "12:00", "12:30", "17:00", "17:30", "18:00", "18:30", "19:00",
                             "19:30", "20:00", "20:30"]
    assert all(s.end - s.start == timedelta(minutes=90) for s in found)
    # A course longer than any window: nothing.
    assert slots(duration=301) == [] and starts(slots(duration=300)) == ["17:00"]


def test_grid_is_aligned_to_each_windows_opening() -> None:
    hours = {"mon": [["11:15", "12:15"], ["17:10", "18:00"]]}
    assert starts(slots(hours=hours, duration=20, step_minutes=15)) == [
        "11:15", "11:30", "11:45", "17:10", "17:25", "17:40"]


def test_busy_per_staff_adjacent_allowed_overlap_refused() -> None:
    busy = [Busy("a", tokyo(MONDAY, 12), tokyo(MONDAY, 13))]
    found = slots(staff=["a", "b"], busy=busy)
    a = starts([s for s in found if s.staff_id == "a"])
    b = starts([s for s in found if s.staff_id == "b"])
    assert "11:00" in a  # [11:00, 12:00) touches [12:00, 13:00): allowed
    assert "13:00" in a  # starts as the busy one ends
    assert "11:30" not in a and "12:00" not in a and "12:30" not in a
    assert "11:30" in b and "12:00" in b  # another staff member is unaffected
    # Busy time of a staff member not asked about changes nothing.
    assert slots(staff=["b"], busy=busy) == slots(staff=["b"])


def test_busy_in_another_zone_is_compared_as_an_instant() -> None:
    # 03:00-04:00 UTC is 12:00-13:00 in Tokyo.
    busy = [Busy("a", datetime(2026, 3, 16, 3, tzinfo=UTC), datetime(2026, 3, 16, 4, tzinfo=UTC))]
    assert starts(slots(busy=busy))[:3] == ["11:00", "13:00", "17:00"]


def test_slots_are_sorted_by_start_then_staff_and_staff_dedupe() -> None:
    found = slots(staff=["b", "a", "b"])
    assert found == sorted(found)
    assert [s.staff_id for s in found[:2]] == ["a", "b"]
    assert len(found) == 2 * len(slots(staff=["a"]))
    assert Slot(tokyo(MONDAY, 11), tokyo(MONDAY, 12), "b") > Slot(tokyo(MONDAY, 11), tokyo(MONDAY, 12), "a")


def test_now_and_lead_cut_off() -> None:
    now = tokyo(MONDAY, 11, 40)
    assert starts(slots(now=now))[:2] == ["12:00", "12:30"]
    assert starts(slots(now=now, lead_minutes=60))[:2] == ["13:00", "17:00"]
    assert starts(slots(now=tokyo(MONDAY, 12)))[0] == "12:00"  # start == now + lead is fine
    assert slots(now=tokyo(MONDAY, 23)) == []
    # now in another zone is the same instant.
    assert slots(now=now.astimezone(UTC)) == slots(now=now)


def test_bad_arguments_are_typed_errors() -> None:
    for kw in ({"duration": 0}, {"duration": 1441}, {"step_minutes": 0}, {"lead_minutes": -1}):
        with pytest.raises(BookingInputError):
            slots(**kw)
    with pytest.raises(BookingInputError):
        slots(now=datetime(2026, 3, 16, 12))  # naive
    with pytest.raises(BookingInputError):
        slots(busy=[Busy("a", datetime(2026, 3, 16, 12), datetime(2026, 3, 16, 13))])


# --- daylight saving -------------------------------------------------------------------------------------


NIGHT = {d: [["00:00", "04:00"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


def test_new_york_spring_forward_night_is_three_real_hours() -> None:
    day = date(2026, 3, 8)  # 02:00 EST -> 03:00 EDT
    [(opens, closes)] = day_windows(NIGHT, "America/New_York", day)
    assert opens.isoformat() == "2026-03-08T00:00:00-05:00"
    assert closes.isoformat() == "2026-03-08T04:00:00-04:00"
    assert elapsed(opens, closes) == timedelta(hours=3)
    found = slots(day=day, hours=NIGHT, tz="America/New_York", duration=60)
    assert [slot_json(s)["start_time"] for s in found] == [
        "2026-03-08T00:00:00-05:00", "2026-03-08T00:30:00-05:00", "2026-03-08T01:00:00-05:00",
        "2026-03-08T01:30:00-05:00", "2026-03-08T03:00:00-04:00"]
    assert all(elapsed(s.start, s.end) == timedelta(minutes=60) for s in found)
    assert slot_json(found[3])["end_time"] == "2026-03-08T03:30:00-04:00"  # 01:30 EST + 60 real minutes


def test_new_york_fall_back_night_is_five_real_hours() -> None:
    day = date(2026, 11, 1)  # 02:00 EDT -> 01:00 EST
    [(opens, closes)] = day_windows(NIGHT, "America/New_York", day)
    assert elapsed(opens, closes) == timedelta(hours=5)
    found = slots(day=day, hours=NIGHT, tz="America/New_York", duration=60)
    assert len(found) == 9
    assert [slot_json(s)["start_time"][11:] for s in found][2:6] == [
        "01:00:00-04:00", "01:30:00-04:00", "01:00:00-05:00", "01:30:00-05:00"]  # in real (UTC) order
    assert all(elapsed(s.start, s.end) == timedelta(minutes=60) for s in found)
    assert len({s.start.astimezone(UTC) for s in found}) == 9


def test_new_york_windows_inside_the_transition() -> None:
    # 01:00-03:00 on the spring night: 03:00 EDT is one real hour after 01:00 EST.
    spring = {"sun": [["01:00", "03:00"]]}
    [(opens, closes)] = day_windows(spring, "America/New_York", date(2026, 3, 8))
    assert elapsed(opens, closes) == timedelta(hours=1)
    assert starts(slots(day=date(2026, 3, 8), hours=spring, tz="America/New_York", duration=30)) == [
        "01:00", "01:30"]
    # A nonexistent wall time resolves forward; a gap that inverts a window drops it.
    assert local_instant(date(2026, 3, 8), "02:30", NEW_YORK).isoformat() == "2026-03-08T03:30:00-04:00"
    assert day_windows({"sun": [["02:30", "03:00"]]}, "America/New_York", date(2026, 3, 8)) == []
    # Two windows the gap made overlap stay disjoint.
    two = day_windows({"sun": [["01:00", "02:30"], ["03:00", "04:00"]]}, "America/New_York", date(2026, 3, 8))
    assert two[0][1] <= two[1][0] and elapsed(two[0][0], two[1][1]) == timedelta(hours=2)
    # 01:00-03:00 on the fall night: 01:00 is its first (EDT) occurrence, so three real hours.
    [(opens, closes)] = day_windows(spring, "America/New_York", date(2026, 11, 1))
    assert opens.isoformat() == "2026-11-01T01:00:00-04:00"
    assert closes.isoformat() == "2026-11-01T03:00:00-05:00"
    assert elapsed(opens, closes) == timedelta(hours=3)
    assert len(slots(day=date(2026, 11, 1), hours={"sun": [["01:00", "03:00"]]}, tz="America/New_York",
                     duration=60)) == 5


def test_berlin_transitions() -> None:
    evening = {d: [["00:00", "04:00"], ["18:00", "24:00"]] for d in ("sun",)}
    spring, fall = date(2026, 3, 29), date(2026, 10, 25)  # 02:00 -> 03:00 CEST; 03:00 CEST -> 02:00 CET
    sw = day_windows(evening, "Europe/Berlin", spring)
    assert [elapsed(a, b) for a, b in sw] == [timedelta(hours=3), timedelta(hours=6)]
    assert sw[1][0].isoformat() == "2026-03-29T18:00:00+02:00"
    assert sw[1][1].isoformat() == "2026-03-30T00:00:00+02:00"
    fw = day_windows(evening, "Europe/Berlin", fall)
    assert [elapsed(a, b) for a, b in fw] == [timedelta(hours=5), timedelta(hours=6)]
    assert fw[1][0].isoformat() == "2026-10-25T18:00:00+01:00"
    assert len(slots(day=spring, hours=evening, tz="Europe/Berlin", duration=120)) == 3 + 9
    assert len(slots(day=fall, hours=evening, tz="Europe/Berlin", duration=120)) == 7 + 9
    assert local_instant(spring, "02:30", BERLIN).isoformat() == "2026-03-29T03:30:00+02:00"
    assert local_instant(fall, "02:30", BERLIN).isoformat() == "2026-10-25T02:30:00+02:00"  # first one


# --- json, ranges, parsing -------------------------------------------------------------------------------


def test_slot_json_carries_the_store_offset() -> None:
    [first, *_] = slots()
    assert slot_json(first) == {"start_time": "2026-03-16T11:00:00+09:00",
                                "end_time": "2026-03-16T12:00:00+09:00", "staff_id": "a"}
    [summer] = slots(day=date(2026, 7, 6), hours={"mon": [["12:00", "13:00"]]}, tz="Europe/Berlin")
    assert slot_json(summer)["start_time"] == "2026-07-06T12:00:00+02:00"


def test_free_ranges_merge_contiguous_and_overlapping_slots_of_any_staff() -> None:
    busy = [Busy("a", tokyo(MONDAY, 17), tokyo(MONDAY, 22)), Busy("b", tokyo(MONDAY, 11), tokyo(MONDAY, 22))]
    busy.append(Busy("a", tokyo(MONDAY, 11), tokyo(MONDAY, 12)))
    found = slots(staff=["a", "b"], busy=busy)
    assert free_ranges(found) == [(tokyo(MONDAY, 12), tokyo(MONDAY, 14))]
    assert free_ranges(slots()) == [
        (tokyo(MONDAY, 11), tokyo(MONDAY, 14)), (tokyo(MONDAY, 17), tokyo(MONDAY, 22))]
    assert free_ranges([]) == []


def test_parse_date() -> None:
    assert parse_date("2026-03-16") == MONDAY
    for bad in ("2026-3-16", "2026-02-30", "16/03/2026", "", None, 20260316, "2026-03-16x"):
        with pytest.raises(BookingInputError) as err:
            parse_date(bad)
        assert err.value.code == "invalid_date"


def test_parse_start_time_needs_an_offset() -> None:
    assert parse_start_time("2026-03-16T15:00:00+09:00", "Asia/Tokyo") == tokyo(MONDAY, 15)
    z = parse_start_time("2026-03-16T06:00:00Z", "Asia/Tokyo")
    assert z == tokyo(MONDAY, 15) and z.isoformat() == "2026-03-16T15:00:00+09:00"
    for bad in ("2026-03-16T15:00:00", "2026-03-16", "tomorrow", "", None, "x" * 1000, "2026-13-01T00:00Z"):
        with pytest.raises(BookingInputError) as err:
            parse_start_time(bad, "Asia/Tokyo")
        assert err.value.code == "invalid_start_time"
    with pytest.raises(BookingInputError):
        parse_start_time("2026-03-16T15:00:00+09:00", "Nowhere/Here")


def test_validate_duration() -> None:
    assert validate_duration(1) == 1 and validate_duration(1440) == 1440
    for bad in (0, 1441, -5, 1.5, "60", True, None):
        with pytest.raises(BookingInputError) as err:
            validate_duration(bad)
        assert err.value.code == "invalid_duration"


# --- properties ------------------------------------------------------------------------------------------

ZONES = ["UTC", "Asia/Tokyo", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe"]
DAYS = [date(2026, 3, 8), date(2026, 3, 29), date(2026, 10, 4), date(2026, 10, 25), date(2026, 11, 1),
        date(2026, 3, 16), date(2026, 4, 5)]


@st.composite
def hours_of_a_day(draw: st.DrawFn) -> list[list[str]]:
    cuts = sorted(draw(st.sets(st.integers(0, 48), min_size=0, max_size=6)))
    pairs = [cuts[i:i + 2] for i in range(0, len(cuts) - 1, 2)]
    return [[f"{c * 30 // 60:02d}:{c * 30 % 60:02d}" for c in p] for p in pairs if p[0] < p[1]]


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    tz = draw(st.sampled_from(ZONES))
    day = draw(st.sampled_from(DAYS))
    where = ZoneInfo(tz)
    pairs = draw(hours_of_a_day())
    hours = {"mon": pairs, "tue": pairs, "wed": pairs, "thu": pairs, "fri": pairs, "sat": pairs, "sun": pairs}
    base = datetime(day.year, day.month, day.day, tzinfo=where).astimezone(UTC)
    staff = draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=0, max_size=3, unique=True))
    busy = [
        Busy(draw(st.sampled_from(["a", "b", "c"])), base + timedelta(minutes=s),
             base + timedelta(minutes=s + n))
        for s, n in draw(st.lists(st.tuples(st.integers(-120, 1560), st.integers(1, 300)), max_size=5))
    ]
    now = draw(st.none() | st.integers(-60, 1500).map(lambda m: base + timedelta(minutes=m)))
    return {"business_hours": hours, "tz": tz, "day": day, "staff_ids": staff, "busy": busy, "now": now,
            "duration_minutes": draw(st.integers(1, 240)),
            "step_minutes": draw(st.sampled_from([5, 15, 30, 45, 60])),
            "lead_minutes": draw(st.integers(0, 120))}


def reference(case: dict[str, Any]) -> list[Slot]:
    """Brute force: walk every minute of every window and keep the grid points that pass every rule."""
    where = ZoneInfo(case["tz"])
    duration = timedelta(minutes=case["duration_minutes"])
    out = []
    for opens, closes in day_windows(case["business_hours"], case["tz"], case["day"]):
        minute = 0
        while True:
            start = opens.astimezone(UTC) + timedelta(minutes=minute)
            if start >= closes:
                break
            minute += 1
            if (minute - 1) % case["step_minutes"]:
                continue
            end = start + duration
            if end > closes:
                continue
            if case["now"] is not None and start < case["now"] + timedelta(minutes=case["lead_minutes"]):
                continue
            for staff in case["staff_ids"]:
                if all(not (b.start < end and start < b.end) for b in case["busy"] if b.staff_id == staff):
                    out.append(Slot(start.astimezone(where), end.astimezone(where), staff))
    return sorted(out)


@settings(max_examples=150, deadline=None)
@given(cases())
def test_every_slot_fits_a_window_avoids_busy_and_has_the_duration(case: dict[str, Any]) -> None:
    found = available_slots(**case)
    windows = day_windows(case["business_hours"], case["tz"], case["day"])
    for slot in found:
        assert slot.start.tzinfo == ZoneInfo(case["tz"])
        assert elapsed(slot.start, slot.end) == timedelta(minutes=case["duration_minutes"])
        assert any(utc(a) <= utc(slot.start) and utc(slot.end) <= utc(b) for a, b in windows)
        mine = [b for b in case["busy"] if b.staff_id == slot.staff_id]
        assert not any(b.start < slot.end and slot.start < b.end for b in mine)
        if case["now"] is not None:
            assert slot.start >= case["now"] + timedelta(minutes=case["lead_minutes"])
    assert found == sorted(found)
    for a, b in free_ranges(found):
        assert utc(a) < utc(b)


@settings(max_examples=150, deadline=None)
@given(cases())
def test_slots_match_a_brute_force_reference(case: dict[str, Any]) -> None:
    found = available_slots(**case)
    assert found == reference(case)
    assert [slot_json(s) for s in found] == [slot_json(s) for s in reference(case)]


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(ZONES), st.sampled_from(DAYS), hours_of_a_day())
def test_windows_are_ascending_disjoint_and_on_the_day(tz: str, day: date, pairs: list[list[str]]) -> None:
    every_day = {d: pairs for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    windows = day_windows(every_day, tz, day)
    for a, b in windows:
        assert utc(a) < utc(b) and a.tzinfo == ZoneInfo(tz)
        assert a.date() == day
    for (_, b), (c, _) in zip(windows, windows[1:], strict=False):
        assert utc(b) <= utc(c)
