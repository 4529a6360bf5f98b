"""The till's items list (docs/till.md, "Items are validated on the server"), pure."""

from __future__ import annotations

from typing import Any

import pytest

from tableside.protocol.till import (
    MAX_LINES,
    MAX_NOTE,
    MAX_QTY,
    TillItemsError,
    TillLine,
    iso_time,
    parse_till_items,
    valid_till_id,
)
from tableside.storage import interface


def test_limits_match_the_storage_contract() -> None:
    assert (MAX_LINES, MAX_QTY, MAX_NOTE) == (
        interface.TILL_MAX_LINES, interface.TILL_MAX_QUANTITY, interface.TILL_MAX_NOTE)


def test_a_valid_list_parses_and_ignores_client_prices() -> None:
    lines = parse_till_items([
        {"menu_item_id": "gyoza", "qty": 2},
        {"menu_item_id": "asahi", "qty": 99, "note": "x" * 200, "line_id": "l1", "unit_price": 1, "name": "free"},
        {"menu_item_id": "mochi", "qty": 1, "note": None},
    ])
    assert lines == [TillLine("gyoza", 2), TillLine("asahi", 99, "x" * 200, "l1"), TillLine("mochi", 1)]
    assert parse_till_items([]) == []


@pytest.mark.parametrize(
    ("items", "field"),
    [
        ("gyoza", "items"),
        ({"menu_item_id": "gyoza"}, "items"),
        ([{"menu_item_id": "gyoza", "qty": 1}] * 101, "items"),
        (["gyoza"], "items[0]"),
        ([{"qty": 1}], "items[0].menu_item_id"),
        ([{"menu_item_id": "", "qty": 1}], "items[0].menu_item_id"),
        ([{"menu_item_id": "x" * 65, "qty": 1}], "items[0].menu_item_id"),
        ([{"menu_item_id": 7, "qty": 1}], "items[0].menu_item_id"),
        ([{"menu_item_id": "gyoza", "qty": 0}], "items[0].qty"),
        ([{"menu_item_id": "gyoza", "qty": 100}], "items[0].qty"),
        ([{"menu_item_id": "gyoza", "qty": True}], "items[0].qty"),
        ([{"menu_item_id": "gyoza", "qty": 2.0}], "items[0].qty"),
        ([{"menu_item_id": "gyoza", "qty": "2"}], "items[0].qty"),
        ([{"menu_item_id": "gyoza"}], "items[0].qty"),
        ([{"menu_item_id": "gyoza", "qty": 1, "note": "n" * 201}], "items[0].note"),
        ([{"menu_item_id": "gyoza", "qty": 1, "note": 5}], "items[0].note"),
        ([{"menu_item_id": "gyoza", "qty": 1, "line_id": ""}], "items[0].line_id"),
        ([{"menu_item_id": "gyoza", "qty": 1, "line_id": "a b"}], "items[0].line_id"),
        ([{"menu_item_id": "gyoza", "qty": 1, "line_id": 3}], "items[0].line_id"),
        ([{"menu_item_id": "gyoza", "qty": 1, "line_id": "a"}, {"menu_item_id": "mochi", "qty": 1, "line_id": "a"}],
         "items[1].line_id"),
    ],
)
def test_invalid_lists_are_refused_naming_the_field(items: Any, field: str) -> None:
    with pytest.raises(TillItemsError) as err:
        parse_till_items(items)
    assert err.value.field == field


def test_exactly_the_limits_are_accepted() -> None:
    assert len(parse_till_items([{"menu_item_id": "gyoza", "qty": 1}] * 100)) == 100


def test_till_ids_and_times() -> None:
    assert valid_till_id("till-A.1:x_y")
    assert not valid_till_id("")
    assert not valid_till_id("a" * 65)
    assert not valid_till_id("till A")
    assert not valid_till_id(None)
    assert iso_time(None) is None
    assert iso_time(0.0) == "1970-01-01T00:00:00.000Z"
