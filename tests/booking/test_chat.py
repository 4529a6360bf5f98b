"""The availability chat: the seed's example word for word, every date form in both languages, times of day,
the wording of free / fully booked / closed days, and any text at all without an exception."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tableside.booking import (
    MAX_TEXT_CHARS,
    Busy,
    Question,
    Slot,
    answer,
    available_slots,
    detect_language,
    free_ranges,
    help_text,
    is_closed,
    narrow,
    parse_question,
    reply,
)

TZ = "Asia/Tokyo"
ZONE = ZoneInfo(TZ)
TODAY = date(2026, 11, 30)  # a Monday
THU = date(2026, 12, 3)


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZONE)


def ask(text: str, today: date = TODAY) -> Question:
    question = parse_question(text, today, TZ)
    assert question is not None, text
    return question


def test_the_seeds_example_word_for_word() -> None:
    question = ask("明日空いてる？")
    assert question.lang == "ja" and question.day == date(2026, 12, 1) and question.relative == "tomorrow"
    ranges = [(at(question.day, 15), at(question.day, 17))]
    assert answer(question, ranges, closed=False) == "明日は15:00〜17:00が空いています。予約しますか？"


def test_the_seeds_example_from_real_availability() -> None:
    """The chat words what ``available_slots`` finds: open 11-22, staff busy except 15:00-17:00."""
    tomorrow = date(2026, 12, 1)
    hours = {"tue": [["11:00", "22:00"]]}
    busy = [Busy("chef", at(tomorrow, 11), at(tomorrow, 15)),
            Busy("chef", at(tomorrow, 17), at(tomorrow, 22))]
    found = available_slots(business_hours=hours, tz=TZ, day=tomorrow, duration_minutes=60,
                            staff_ids=["chef"], busy=busy)
    question = ask("明日空いてる？")
    text = answer(question, free_ranges(found), closed=is_closed(hours, tomorrow))
    assert text == "明日は15:00〜17:00が空いています。予約しますか？"


@pytest.mark.parametrize(
    ("text", "day", "relative"),
    [
        ("今日空いてる？", TODAY, "today"),
        ("本日は予約できますか", TODAY, "today"),
        ("明日空いてる？", date(2026, 12, 1), "tomorrow"),
        ("あした予約できる？", date(2026, 12, 1), "tomorrow"),
        ("明後日は空いてますか", date(2026, 12, 2), "day_after"),
        ("あさって空いてる？", date(2026, 12, 2), "day_after"),
        ("今週末空いてる？", date(2026, 12, 5), "weekend"),
        ("週末は空いてますか", date(2026, 12, 5), "weekend"),
        ("来週末は空いてる？", date(2026, 12, 12), "next_weekend"),
        ("今夜空いてる？", TODAY, "tonight"),
        ("金曜空いてる？", date(2026, 12, 4), None),
        ("金曜日は空いてますか", date(2026, 12, 4), None),
        ("(金)は空いてる？", date(2026, 12, 4), None),
        ("（金）空いてる？", date(2026, 12, 4), None),
        ("月曜空いてる？", date(2026, 12, 7), None),  # today is Monday: a bare name is strictly after today
        ("今週の月曜空いてる？", TODAY, None),
        ("来週の金曜は空いてる？", date(2026, 12, 11), None),
        ("来週金曜空いてる？", date(2026, 12, 11), None),
        ("12月3日空いてる？", THU, None),
        ("１２月３日は空いてますか", THU, None),  # full-width digits
        ("12/3は空いてる？", THU, None),
        ("2026-12-03 空いてる？", THU, None),
        ("2026年12月3日は予約できますか", THU, None),
        ("11月1日空いてる？", date(2027, 11, 1), None),  # passed this year: next year's
        ("空いてる？", TODAY, "today"),  # no day: today
    ],
)
def test_japanese_days(text: str, day: date, relative: str | None) -> None:
    question = ask(text)
    assert (question.lang, question.day, question.relative) == ("ja", day, relative)


@pytest.mark.parametrize(
    ("text", "day", "relative"),
    [
        ("Is today free?", TODAY, "today"),
        ("any table tonight?", TODAY, "tonight"),
        ("Is tomorrow free?", date(2026, 12, 1), "tomorrow"),
        ("available the day after tomorrow?", date(2026, 12, 2), "day_after"),
        ("is friday free?", date(2026, 12, 4), None),
        ("Fri available?", date(2026, 12, 4), None),
        ("is monday free?", date(2026, 12, 7), None),  # today is Monday: strictly after today
        ("is this monday free?", TODAY, None),
        ("this friday?", date(2026, 12, 4), None),
        ("next friday available?", date(2026, 12, 11), None),
        ("next monday?", date(2026, 12, 7), None),
        ("this weekend?", date(2026, 12, 5), "weekend"),
        ("anything free next weekend?", date(2026, 12, 12), "next_weekend"),
        ("Dec 3 free?", THU, None),
        ("December 3rd available?", THU, None),
        ("3 Dec?", THU, None),
        ("the 3rd of December, any table?", THU, None),
        ("12/3 free?", THU, None),
        ("2026-12-03 available?", THU, None),
        ("Nov 1 free?", date(2027, 11, 1), None),
        ("do you have a table?", TODAY, "today"),
    ],
)
def test_english_days(text: str, day: date, relative: str | None) -> None:
    question = ask(text)
    assert (question.lang, question.day, question.relative) == ("en", day, relative)


def test_weekday_rules_from_each_day_of_a_week() -> None:
    for offset in range(7):
        today = TODAY + timedelta(days=offset)
        bare, this, nxt = ask("friday free?", today).day, ask("this friday free?", today).day, ask(
            "next friday free?", today).day
        assert bare.weekday() == this.weekday() == nxt.weekday() == 4
        assert 1 <= (bare - today).days <= 7
        assert 0 <= (this - today).days <= 6
        monday_next_week = today - timedelta(days=today.weekday()) + timedelta(days=7)
        assert nxt == monday_next_week + timedelta(days=4)
        weekend = ask("this weekend?", today).day
        assert weekend == today if today.weekday() >= 5 else weekend == date(2026, 12, 5)


@pytest.mark.parametrize(
    ("text", "part", "window"),
    [
        ("明日の夜空いてる？", "night", (17 * 60, 24 * 60)),
        ("明日ランチ空いてる？", "lunch", (11 * 60, 15 * 60)),
        ("明日の午後は空いてる？", "afternoon", (12 * 60, 18 * 60)),
        ("明日の夕方空いてる？", "evening", (16 * 60, 19 * 60)),
        ("明日15時空いてる？", "from", (15 * 60, 24 * 60)),
        ("明日の午後3時半は空いてる？", "from", (15 * 60 + 30, 24 * 60)),
        ("明日の夜7時は空いてる？", "from", (19 * 60, 24 * 60)),
        ("tomorrow evening free?", "evening", (17 * 60, 24 * 60)),
        ("lunch tomorrow?", "lunch", (11 * 60, 15 * 60)),
        ("dinner on friday?", "evening", (17 * 60, 24 * 60)),
        ("tomorrow afternoon?", "afternoon", (12 * 60, 18 * 60)),
        ("tomorrow at 3pm?", "from", (15 * 60, 24 * 60)),
        ("tomorrow 7:30 pm?", "from", (19 * 60 + 30, 24 * 60)),
        ("tomorrow at 12am?", "from", (0, 24 * 60)),
        ("tomorrow at 18:30?", "from", (18 * 60 + 30, 24 * 60)),
        ("tonight?", "evening", (17 * 60, 24 * 60)),
    ],
)
def test_times_of_day(text: str, part: str, window: tuple[int, int]) -> None:
    question = ask(text)
    assert (question.part, question.window) == (part, window)


def test_not_an_availability_question() -> None:
    for text in ("こんにちは", "hello", "thanks!", "", "   ", "予約をキャンセルしたい", "cancel my booking tomorrow",
                 "メニューを見せて", "what is the wifi password", "明日"):
        assert parse_question(text, TODAY, TZ) is None, text
    assert parse_question(None, TODAY, TZ) is None
    assert parse_question(123, TODAY, TZ) is None


def test_language_detection() -> None:
    assert detect_language("明日") == "ja" and detect_language("あした") == "ja" and detect_language("カフェ") == "ja"
    assert detect_language("tomorrow") == "en" and detect_language("😀 12/3?") == "en"
    assert ask("Dec 3 空いてる？").lang == "ja"


def test_japanese_answers() -> None:
    tomorrow = ask("明日空いてる？")
    two = [(at(tomorrow.day, 11), at(tomorrow.day, 12)), (at(tomorrow.day, 15), at(tomorrow.day, 17))]
    assert answer(tomorrow, two, closed=False) == "明日は11:00〜12:00、15:00〜17:00が空いています。予約しますか？"
    assert answer(tomorrow, [], closed=False) == "明日は空きがありません。"
    assert answer(tomorrow, [], closed=True) == "明日は空きがありません（定休日です）。"
    thursday = ask("12月3日空いてる？")
    assert answer(thursday, [], closed=False) == "12月3日(木)は空きがありません。"
    late = [(at(THU, 22), at(THU + timedelta(days=1), 0))]
    assert answer(thursday, late, closed=False) == "12月3日(木)は22:00〜24:00が空いています。予約しますか？"
    next_year = ask("2027-01-05 空いてる？")
    assert answer(next_year, [], closed=True) == "2027年1月5日(火)は空きがありません（定休日です）。"
    assert answer(ask("明日の夜空いてる？"), [], closed=False) == "明日の夜は空きがありません。"
    assert answer(ask("明日15時空いてる？"), two[1:], closed=False) == (
        "明日の15:00以降は15:00〜17:00が空いています。予約しますか？")


def test_english_answers() -> None:
    tomorrow = ask("is tomorrow free?")
    ranges = [(at(tomorrow.day, 15), at(tomorrow.day, 17))]
    assert answer(tomorrow, ranges, closed=False) == (
        "Tomorrow (Tue 1 Dec) is free 15:00–17:00. Shall I book it?")
    assert answer(tomorrow, [], closed=False) == "Tomorrow (Tue 1 Dec) is fully booked."
    assert answer(tomorrow, [], closed=True) == "We are closed tomorrow (Tue 1 Dec)."
    thursday = ask("Dec 3?")
    assert answer(thursday, [], closed=True) == "We are closed on Thu 3 Dec."
    two = [(at(THU, 11), at(THU, 12)), (at(THU, 18), at(THU, 21))]
    assert answer(thursday, two, closed=False) == (
        "Thu 3 Dec is free 11:00–12:00, 18:00–21:00. Shall I book it?")
    assert answer(ask("lunch on Dec 3?"), [], closed=False) == "Thu 3 Dec is fully booked at lunchtime."
    assert answer(ask("Dec 3 after 7pm?"), [], closed=False) == "Thu 3 Dec is fully booked from 19:00."
    assert answer(ask("2027-01-05 free?"), [], closed=False) == "Tue 5 Jan 2027 is fully booked."


TUESDAY_HOURS = {"tue": [["11:00", "14:00"], ["17:00", "22:00"]]}


def tomorrows_slots(busy: list[Busy], duration: int = 120) -> list[Slot]:
    return available_slots(business_hours=TUESDAY_HOURS, tz=TZ, day=date(2026, 12, 1),
                           duration_minutes=duration, staff_ids=["chef", "sommelier"], busy=busy)


def test_a_time_of_day_keeps_the_slots_that_start_in_it() -> None:
    tue = date(2026, 12, 1)
    # The chef is taken from 19:00, the sommelier all day: two-hour courses at 11:00-12:00 and 17:00.
    busy = [Busy("chef", at(tue, 19), at(tue, 22)), Busy("sommelier", at(tue, 11), at(tue, 22))]
    found = tomorrows_slots(busy)
    assert reply(ask("明日空いてる？"), found, closed=False) == (
        "明日は11:00〜14:00、17:00〜19:00が空いています。予約しますか？")
    # 17:00-19:00 holds one two-hour course starting at 17:00: offered whole.
    assert reply(ask("明日の夜空いてる？"), found, closed=False) == (
        "明日の夜は17:00〜19:00が空いています。予約しますか？")
    assert reply(ask("明日のランチは？"), found, closed=False) == (
        "明日のランチは11:00〜14:00が空いています。予約しますか？")
    # From 18:00: no course can start (17:00 is the last), so nothing, rather than a cut "18:00-19:00".
    assert reply(ask("明日18時空いてる？"), found, closed=False) == "明日の18:00以降は空きがありません。"
    assert reply(ask("tomorrow at 5pm?"), found, closed=False) == (
        "Tomorrow (Tue 1 Dec) is free 17:00–19:00. Shall I book it?")
    assert reply(ask("lunch tomorrow?"), tomorrows_slots([Busy("chef", at(tue, 11), at(tue, 14)),
                                                         Busy("sommelier", at(tue, 11), at(tue, 14))]),
                 closed=False) == "Tomorrow (Tue 1 Dec) is fully booked at lunchtime."
    # A lunch course may run past the lunch window's end: shown whole.
    assert narrow(ask("lunch tomorrow?"), found) == [s for s in found if s.start.hour < 15]
    assert narrow(ask("is tomorrow free?"), found) == found
    closed_day = available_slots(business_hours=TUESDAY_HOURS, tz=TZ, day=date(2026, 12, 2),
                                 duration_minutes=60, staff_ids=["chef"], busy=[])
    wednesday = ask("明後日空いてる？")
    assert reply(wednesday, closed_day, closed=is_closed(TUESDAY_HOURS, wednesday.day)) == (
        "明後日は空きがありません（定休日です）。")


def test_answer_times_are_in_the_stores_zone() -> None:
    question = ask("明日空いてる？")
    utc = ZoneInfo("UTC")
    ranges = [(datetime(2026, 12, 1, 6, tzinfo=utc), datetime(2026, 12, 1, 8, tzinfo=utc))]  # 15:00-17:00 JST
    assert answer(question, ranges, closed=False) == "明日は15:00〜17:00が空いています。予約しますか？"


def test_help_text() -> None:
    assert "明日空いてる" in help_text("ja")
    assert "tomorrow" in help_text("en") and help_text("xx") == help_text("en")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=700), st.dates(), st.sampled_from(["ja", "en"]))
def test_any_text_is_safe(text: str, today: date, lang: str) -> None:
    question = parse_question(text, today, TZ)
    if question is not None:
        assert question.lang in ("ja", "en")
        reply = answer(question, [], closed=False) + answer(question, [], closed=True)
        assert reply
    assert help_text(lang)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(["明日", "今日", "金曜", "来週の", "12月", "3日", "空いてる", "？", "夜", "15時", "午後",
                              "tomorrow", "friday", "next", "this", "dec", "3", "/", "-", "2026", "pm",
                              "free",
                              "?", " ", "😀", "\u0000", "\ufeff", "99", "13/45", "2月30日", "9999-12-31"]),
             max_size=12).map("".join),
    st.dates(),
)
def test_near_miss_phrases_are_safe(text: str, today: date) -> None:
    question = parse_question(text, today, TZ)
    if question is not None:
        answer(question, [(at(question.day, 15), at(question.day, 17))] if question.day < date(9999, 12, 31)
               else [], closed=False)


def test_very_long_and_odd_input() -> None:
    long = "明日空いてる？" + "あ" * 100_000
    assert ask(long).day == date(2026, 12, 1)
    assert parse_question("x" * 100_000 + "tomorrow free?", TODAY, TZ) is None  # only the first 500 chars
    assert len("x" * MAX_TEXT_CHARS) == MAX_TEXT_CHARS
    for text in ("😀😀😀", "\u0000\u0000", "?" * 600, "12/99 free?", "2026-02-30 free?", "99月99日空いてる？"):
        question = parse_question(text, TODAY, TZ)
        if question is not None:
            assert answer(question, [], closed=False)
    # The edges of the calendar.
    assert parse_question("tomorrow free?", date.max, TZ) is None
    for text in ("next friday free?", "this weekend?", "来週末空いてる？", "12月31日空いてる？", "Jan 1 free?"):
        question = parse_question(text, date(9999, 12, 28), TZ)
        if question is not None:
            assert answer(question, [], closed=True)
