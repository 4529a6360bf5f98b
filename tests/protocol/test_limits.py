"""``Limits`` refuses a configuration that would reject (or mis-handle) every frame at construction time."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import pytest

from tableside.protocol import DEFAULT_LIMITS, Limits

FIELD_NAMES = [f.name for f in fields(Limits)]


def test_defaults_are_the_documented_bounds() -> None:
    # docs/protocol.md: frames up to 64 KiB, nesting 8, 64 keys, 512 array items, ids of 1-64 characters,
    # refs up to 64, notes up to 200, instructions up to 500, qty 1-99, integers within ±10**12.
    assert DEFAULT_LIMITS == Limits()
    assert (
        DEFAULT_LIMITS.max_frame_bytes,
        DEFAULT_LIMITS.max_depth,
        DEFAULT_LIMITS.max_map_keys,
        DEFAULT_LIMITS.max_array_len,
        DEFAULT_LIMITS.max_id_chars,
        DEFAULT_LIMITS.max_ref_chars,
        DEFAULT_LIMITS.max_note_chars,
        DEFAULT_LIMITS.max_instructions_chars,
        DEFAULT_LIMITS.max_qty,
        DEFAULT_LIMITS.max_int,
    ) == (65536, 8, 64, 512, 64, 64, 200, 500, 99, 10**12)


@pytest.mark.parametrize("name", FIELD_NAMES)
def test_every_limit_accepts_one(name: str) -> None:
    assert getattr(Limits(**{name: 1}), name) == 1


@pytest.mark.parametrize("name", FIELD_NAMES)
@pytest.mark.parametrize("value", [0, -1, True, 1.0, 2.5, "8", None])
def test_every_limit_refuses_non_positive_or_non_int_values(name: str, value: Any) -> None:
    with pytest.raises(ValueError) as info:
        Limits(**{name: value})
    # The message names the setting and the rejected value, so a bad config is easy to fix.
    assert str(info.value) == f"Limits.{name} must be a positive int, got {value!r}"


def test_limits_are_immutable() -> None:
    with pytest.raises(AttributeError):
        DEFAULT_LIMITS.max_qty = 5  # type: ignore[misc]
