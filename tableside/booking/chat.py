"""A rule-based answerer for availability questions ("明日空いてる？", "is Friday free?"): pure.

:func:`parse_question` reads the language, the day and an optional time of day from a message (today is
passed in, never read from a clock); the caller computes the day's slots (``availability``) and :func:`reply`
(or :func:`answer`, given free ranges) words them: "明日は15:00〜17:00が空いています。予約しますか？". A
message that is not an availability question gives ``None``; the caller then sends :func:`help_text`.
Nothing here raises on any text. A time of day ("夜", "lunch", "15時", "7pm") keeps the slots that start in
it (:func:`narrow`).

Which day a weekday name means: a bare name ("friday", "金曜") is the next such day *strictly after* today
(on a Friday, "friday" is a week away: "today" says today); "this friday" / "今週の金曜" is the next one *on
or after* today; "next friday" / "来週の金曜" is the Friday of the following Monday-based week. "this
weekend" / "週末" is today on a Saturday or Sunday, else the coming Saturday; "next weekend" / "来週末" the
Saturday of the following week. A date without a year is this year's, or next year's once it has passed.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from .availability import BookingInputError, Slot, free_ranges, local_instant, zone

MAX_TEXT_CHARS = 500

_JA_CHARS = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uff66-\uff9f]")

# (key, pattern); the first that matches wins, so longer phrases come first.
_RELATIVE_JA: tuple[tuple[str, str], ...] = (
    ("day_after", r"明後日|あさって"),
    ("tomorrow", r"明日|あした"),
    ("tonight", r"今夜|今晩|こんや|こんばん"),
    ("today", r"今日|本日|きょう"),
    ("next_weekend", r"来週末"),
    ("weekend", r"今週末|週末|土日"),
)
_RELATIVE_EN: tuple[tuple[str, str], ...] = (
    ("day_after", r"\bday after tomorrow\b|\bovermorrow\b"),
    ("tomorrow", r"\btomorrow\b|\btmrw?\b|\btomorow\b"),
    ("tonight", r"\btonight\b|\bthis evening\b"),
    ("today", r"\btoday\b"),
    ("next_weekend", r"\bnext weekend\b"),
    ("weekend", r"\b(?:this |the )?weekend\b"),
)
_RELATIVE_WORDS = {
    "ja": {
        "today": "今日", "tomorrow": "明日", "day_after": "明後日", "tonight": "今夜",
        "weekend": "今週末", "next_weekend": "来週末",
    },
    "en": {
        "today": "Today", "tomorrow": "Tomorrow", "day_after": "The day after tomorrow", "tonight": "Tonight",
        "weekend": "This weekend", "next_weekend": "Next weekend",
    },
}

# Parts of the day: (key, pattern, minutes from local midnight [from, to)).
_PARTS_JA: tuple[tuple[str, str, tuple[int, int]], ...] = (
    ("morning", r"午前|朝|モーニング", (6 * 60, 12 * 60)),
    ("lunch", r"ランチ|お昼|昼", (11 * 60, 15 * 60)),
    ("afternoon", r"午後", (12 * 60, 18 * 60)),
    ("evening", r"夕方", (16 * 60, 19 * 60)),
    ("night", r"夜|晩|ディナー|今夜|今晩", (17 * 60, 24 * 60)),
)
_PARTS_EN: tuple[tuple[str, str, tuple[int, int]], ...] = (
    ("morning", r"\bmorning\b|\bbreakfast\b", (6 * 60, 12 * 60)),
    ("lunch", r"\blunch\w*\b|\bnoon\b|\bmidday\b", (11 * 60, 15 * 60)),
    ("afternoon", r"\bafternoon\b", (12 * 60, 18 * 60)),
    ("evening", r"\bevening\b|\bdinner\b|\bsupper\b|\btonight\b", (17 * 60, 24 * 60)),
    ("night", r"\bnight\b", (17 * 60, 24 * 60)),
)
_PART_WORDS = {
    "ja": {"morning": "午前", "lunch": "ランチ", "afternoon": "午後", "evening": "夕方", "night": "夜"},
    "en": {
        "morning": " in the morning", "lunch": " at lunchtime", "afternoon": " in the afternoon",
        "evening": " in the evening", "night": " at night",
    },
}

_WEEKDAYS_JA = "月火水木金土日"
_WEEKDAYS_EN = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS_EN = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_WEEKDAY_NAMES_EN = {
    "monday": 0, "mon": 0, "tuesday": 1, "tues": 1, "tue": 1, "wednesday": 2, "wed": 2, "thursday": 3,
    "thurs": 3, "thur": 3, "thu": 3, "friday": 4, "fri": 4, "saturday": 5, "sat": 5, "sunday": 6, "sun": 6,
}
_MONTH_NAMES_EN = {
    "january": 1, "jan": 1, "february": 2, "feb": 2, "march": 3, "mar": 3, "april": 4, "apr": 4, "may": 5,
    "june": 6, "jun": 6, "july": 7, "jul": 7, "august": 8, "aug": 8, "september": 9, "sept": 9, "sep": 9,
    "october": 10, "oct": 10, "november": 11, "nov": 11, "december": 12, "dec": 12,
}
_MONTH_RE = "|".join(sorted(_MONTH_NAMES_EN, key=len, reverse=True))
_WEEKDAY_RE = "|".join(sorted(_WEEKDAY_NAMES_EN, key=len, reverse=True))

_ISO = re.compile(r"(?<!\d)(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})(?!\d)")
_MONTH_DAY_JA = re.compile(r"(?<!\d)(\d{1,2})\s*月\s*(\d{1,2})\s*日")
_MONTH_DAY_EN = re.compile(rf"\b({_MONTH_RE})\.?\s*(\d{{1,2}})(?:st|nd|rd|th)?(?!\d)")
_DAY_MONTH_EN = re.compile(
    rf"(?<!\d)(\d{{1,2}})(?:st|nd|rd|th)?\s*(?:of\s+)?({_MONTH_RE})\b(?!\s+(?:i|we|you)\b)"
)
_SLASH = re.compile(r"(?<![\d/:])(\d{1,2})/(\d{1,2})(?![\d/:])")
_WEEKDAY_JA = re.compile(r"(再来週|来週|今週)?の?([月火水木金土日])曜|\(([月火水木金土日])\)")
_WEEKDAY_EN = re.compile(rf"\b(?:(this|next|coming)\s+)?({_WEEKDAY_RE})\b")

_CLOCK_JA = re.compile(r"(午前|午後)?\s*(\d{1,2})\s*時\s*(半|(\d{1,2})\s*分)?")
_CLOCK_EN = re.compile(r"(?<![\d:])(\d{1,2})(?::(\d{2}))?\s*(am|pm|a\.m\.|p\.m\.)(?![a-z])")
_CLOCK_COLON = re.compile(r"(?<![\d:])(\d{1,2}):(\d{2})(?![\d:])")

_ASKS_JA = re.compile(
    r"空|あいて|あいた|あき|予約|取れ|とれる|とれま|行け|いけ|席|大丈夫|可能|入れ|はいれ|やって|営業"
)
_ASKS_EN = re.compile(
    r"\b(?:free|availab\w*|avail|open|book\w*|reserv\w*|slots?|tables?|space|room|vacanc\w*|seats?|spots?)\b"
)
_NOT_ASKING = re.compile(r"キャンセル|取り消|取消|\bcancel\w*\b")


@dataclass(frozen=True, slots=True)
class Question:
    """What a message asks: ``lang`` ``"ja"`` or ``"en"``; the local ``day``; ``relative`` the key of the
    relative word used (``today``, ``tomorrow``, ``day_after``, ``tonight``, ``weekend``, ``next_weekend``)
    or ``None``; ``part`` a part of the day (``morning``, ``lunch``, ``afternoon``, ``evening``, ``night``)
    or ``None``; ``window`` the minutes of the local day ``[from, to)`` the question is narrowed to, or
    ``None`` for the whole day; ``today`` and ``tz`` as given (the answer shows the year only when it
    differs from today's)."""

    lang: str
    day: date
    today: date
    tz: str
    relative: str | None = None
    part: str | None = None
    window: tuple[int, int] | None = None


# --- parsing ---------------------------------------------------------------------------------------------


def detect_language(text: str) -> str:
    """``"ja"`` when the text has any kana or kanji, else ``"en"``."""
    return "ja" if _JA_CHARS.search(text) else "en"


def _shift(day: date, days: int) -> date | None:
    try:
        return day + timedelta(days=days)
    except OverflowError:
        return None


def _make_date(year: int, month: int, dom: int) -> date | None:
    try:
        return date(year, month, dom)
    except ValueError:
        return None


def _without_year(today: date, month: int, dom: int) -> date | None:
    """This year's ``month``/``dom``, or next year's when this year's has passed."""
    found = _make_date(today.year, month, dom)
    if found is not None and found < today:
        found = _make_date(today.year + 1, month, dom) if today.year < date.max.year else None
    if found is None and month == 2 and dom == 29:  # 29 Feb: the next leap year within four years
        for year in range(today.year, min(today.year + 5, date.max.year + 1)):
            leap = _make_date(year, 2, 29)
            if leap is not None and leap >= today:
                return leap
    return found


def _weekday_after(today: date, weekday: int, how: str | None) -> date | None:
    """The day of ``weekday`` (0 = Monday) meant by ``how``: ``None`` strictly after today, ``"this"`` on or
    after today, ``"next"`` in the following Monday-based week, ``"after_next"`` the week after that."""
    if how == "this":
        return _shift(today, (weekday - today.weekday()) % 7)
    if how in ("next", "after_next"):
        weeks = 1 if how == "next" else 2
        return _shift(today, 7 * weeks - today.weekday() + weekday)
    return _shift(today, (weekday - today.weekday() - 1) % 7 + 1)


def _relative_day(key: str, today: date) -> date | None:
    if key in ("today", "tonight"):
        return today
    if key == "tomorrow":
        return _shift(today, 1)
    if key == "day_after":
        return _shift(today, 2)
    if key == "weekend":
        return today if today.weekday() >= 5 else _weekday_after(today, 5, None)
    return _weekday_after(today, 5, "next")  # next_weekend


def _explicit_date(text: str, today: date) -> date | None:
    match = _ISO.search(text)
    if match:
        return _make_date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    match = _MONTH_DAY_JA.search(text)
    if match:
        return _without_year(today, int(match.group(1)), int(match.group(2)))
    match = _MONTH_DAY_EN.search(text)
    if match:
        return _without_year(today, _MONTH_NAMES_EN[match.group(1)], int(match.group(2)))
    match = _DAY_MONTH_EN.search(text)
    if match:
        return _without_year(today, _MONTH_NAMES_EN[match.group(2)], int(match.group(1)))
    match = _SLASH.search(text)
    if match:
        return _without_year(today, int(match.group(1)), int(match.group(2)))
    return None


def _weekday_date(text: str, lang: str, today: date) -> date | None:
    if lang == "ja":
        ja = _WEEKDAY_JA.search(text)
        if not ja:
            return None
        which = {"今週": "this", "来週": "next", "再来週": "after_next"}.get(ja.group(1) or "")
        return _weekday_after(today, _WEEKDAYS_JA.index(ja.group(2) or ja.group(3)), which)
    en = _WEEKDAY_EN.search(text)
    if not en:
        return None
    how = {"this": "this", "next": "next"}.get(en.group(1) or "")
    return _weekday_after(today, _WEEKDAY_NAMES_EN[en.group(2)], how)


def _clock(text: str, lang: str, part: str | None) -> int | None:
    """Minutes from midnight of a clock time in the text ("15時", "午後3時半", "3pm", "19:30"), or None."""
    hour = minute = -1
    ja = _CLOCK_JA.search(text) if lang == "ja" else None
    if ja:
        hour, minute = int(ja.group(2)), 30 if ja.group(3) == "半" else int(ja.group(4) or 0)
        if ja.group(1) == "午後" and hour < 12:
            hour += 12
        elif ja.group(1) is None and part in ("afternoon", "evening", "night") and hour < 12:
            hour += 12
    else:
        en = _CLOCK_EN.search(text)
        if en:
            hour, minute = int(en.group(1)), int(en.group(2) or 0)
            if hour > 12:
                return None
            pm = en.group(3).startswith("p")
            hour = (hour % 12) + (12 if pm else 0)
        else:
            colon = _CLOCK_COLON.search(text)
            if colon:
                hour, minute = int(colon.group(1)), int(colon.group(2))
                if part in ("afternoon", "evening", "night") and hour < 12:
                    hour += 12
    if not (0 <= hour <= 23 and 0 <= minute <= 59):
        return None
    return hour * 60 + minute


def parse_question(text: object, today: date, tz: str) -> Question | None:
    """The availability question in ``text`` (see the module doc for the day rules), or ``None`` when it is
    not one. Only the first ``MAX_TEXT_CHARS`` characters are read; never raises on any text."""
    if not isinstance(text, str) or not isinstance(today, date):
        return None
    raw = text[:MAX_TEXT_CHARS]
    lang = detect_language(raw)
    norm = unicodedata.normalize("NFKC", raw).lower()[: MAX_TEXT_CHARS * 2]
    if _NOT_ASKING.search(norm):
        return None

    relative: str | None = None
    day = _explicit_date(norm, today)
    if day is None:
        for key, pattern in _RELATIVE_JA if lang == "ja" else _RELATIVE_EN:
            if re.search(pattern, norm):
                relative, day = key, _relative_day(key, today)
                break
    if day is None and relative is None:
        day = _weekday_date(norm, lang, today)

    asks = (_ASKS_JA if lang == "ja" else _ASKS_EN).search(norm) is not None
    # "明日は？", "tomorrow?" ask too; a bare "空いてる？" asks about today.
    if not asks and not (day is not None and "?" in norm):
        return None
    if day is None:
        if relative is not None:  # a relative day out of the calendar's range
            return None
        relative, day = "today", today

    part: str | None = None
    window: tuple[int, int] | None = None
    for key, pattern, minutes in _PARTS_JA if lang == "ja" else _PARTS_EN:
        if re.search(pattern, norm):
            part, window = key, minutes
            break
    if relative == "tonight" and part is None:
        part, window = "night", (17 * 60, 24 * 60)
    clock = _clock(norm, lang, part)
    if clock is not None:
        part, window = "from", (clock, 24 * 60)
    return Question(lang=lang, day=day, today=today, tz=tz, relative=relative, part=part, window=window)


# --- answering -------------------------------------------------------------------------------------------


def _instant(day: date, minutes: int, tz: str) -> datetime:
    return local_instant(day, f"{minutes // 60:02d}:{minutes % 60:02d}", zone(tz))


def narrow(question: Question, slots: list[Slot]) -> list[Slot]:
    """The ``slots`` that start in the question's time of day (all of them when it names none): "tonight"
    offers the courses that *start* in the evening, each shown whole, never a stretch cut out of a longer
    free range in which no course could start."""
    if question.window is None:
        return list(slots)
    try:
        lo = _instant(question.day, question.window[0], question.tz).astimezone(UTC)
        hi = _instant(question.day, question.window[1], question.tz).astimezone(UTC)
    except (BookingInputError, OverflowError, ValueError):
        return list(slots)
    # Compared as instants: same-zone datetimes compare by wall time, ignoring fold.
    return [s for s in slots if lo <= s.start.astimezone(UTC) < hi]


def _clock_text(moment: datetime, question: Question) -> str:
    try:
        local = moment.astimezone(zone(question.tz))
    except BookingInputError:
        local = moment
    if local.date() > question.day and local.time() == time(0, 0):
        return "24:00"
    return local.strftime("%H:%M")


def _date_text(question: Question) -> str:
    day = question.day
    if question.lang == "ja":
        year = f"{day.year}年" if day.year != question.today.year else ""
        return f"{year}{day.month}月{day.day}日({_WEEKDAYS_JA[day.weekday()]})"
    year = f" {day.year}" if day.year != question.today.year else ""
    return f"{_WEEKDAYS_EN[day.weekday()]} {day.day} {_MONTHS_EN[day.month - 1]}{year}"


def _from_text(question: Question) -> str:
    assert question.window is not None
    minutes = question.window[0]
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _label_ja(question: Question) -> str:
    label = _RELATIVE_WORDS["ja"].get(question.relative or "") or _date_text(question)
    if question.part == "from" and question.window is not None:
        return f"{label}の{_from_text(question)}以降"
    if question.part and question.relative != "tonight":
        return f"{label}の{_PART_WORDS['ja'].get(question.part, '')}"
    return label


def _label_en(question: Question) -> str:
    word = _RELATIVE_WORDS["en"].get(question.relative or "")
    return f"{word} ({_date_text(question)})" if word else _date_text(question)


def _part_en(question: Question) -> str:
    if question.part == "from" and question.window is not None:
        return f" from {_from_text(question)}"
    if question.part and question.relative != "tonight":
        return _PART_WORDS["en"].get(question.part, "")
    return ""


def reply(question: Question, slots: list[Slot], *, closed: bool) -> str:
    """:func:`answer` from the day's bookable ``slots`` (``available_slots``): narrowed to the question's time
    of day, then merged into free ranges."""
    return answer(question, free_ranges(narrow(question, slots)), closed=closed)


def answer(question: Question, ranges: list[tuple[datetime, datetime]], *, closed: bool) -> str:
    """The reply to ``question`` given the free ``ranges`` to tell (``free_ranges`` of the slots the question
    is about: see :func:`narrow` and :func:`reply`) and whether the store is ``closed`` that day. Times are
    shown on the store's clock; a range ending at the next midnight ends at ``24:00``."""
    free = ranges
    if question.lang == "ja":
        label = _label_ja(question)
        if free:
            spans = "、".join(f"{_clock_text(s, question)}〜{_clock_text(e, question)}" for s, e in free)
            return f"{label}は{spans}が空いています。予約しますか？"
        if closed:
            return f"{label}は空きがありません（定休日です）。"
        return f"{label}は空きがありません。"
    label = _label_en(question)
    if free:
        spans = ", ".join(f"{_clock_text(s, question)}–{_clock_text(e, question)}" for s, e in free)
        return f"{label} is free {spans}. Shall I book it?"
    if closed:
        if question.relative:
            return f"We are closed {label[0].lower()}{label[1:]}."
        return f"We are closed on {label}."
    return f"{label} is fully booked{_part_en(question)}."


def help_text(lang: str) -> str:
    """What to say when a message is not an availability question."""
    if lang == "ja":
        return (
            "空き状況をお調べします。「明日空いてる？」「12月3日の夜は？」「金曜の15時は空いてる？」"
            "のように日にちを入れて聞いてください。"
        )
    return (
        'I can tell you when we have a free table. Ask for a day, e.g. "Is tomorrow free?", '
        '"Anything on Friday evening?" or "Dec 3 at 7pm?".'
    )
