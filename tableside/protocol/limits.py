"""Size and range limits applied to every inbound frame.

One immutable object so the server can load them from settings once and share them between codecs and
parsers; the defaults are deliberately small because a table-ordering message never needs more.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True, slots=True)
class Limits:
    max_frame_bytes: int = 65536  # encoded size of one websocket message
    max_depth: int = 8  # nesting of containers; the top-level object counts as depth 1
    max_map_keys: int = 64  # per object/map, anywhere in the frame
    max_array_len: int = 512  # per array, anywhere in the frame
    max_string_chars: int = 4096  # any string (keys included) anywhere in the frame
    max_id_chars: int = 64  # the client's request ``id``
    max_ref_chars: int = 64  # menu_item_id / line_id / order_id
    max_note_chars: int = 200
    max_instructions_chars: int = 500
    max_qty: int = 99
    max_int: int = 10**12  # absolute bound for any integer anywhere in the frame

    def __post_init__(self) -> None:
        # A zero or negative limit would silently reject (or, for max_int, mis-handle) every frame; fail at
        # configuration time instead.
        for f in fields(self):
            value = getattr(self, f.name)
            if type(value) is not int or value < 1:
                raise ValueError(f"Limits.{f.name} must be a positive int, got {value!r}")


DEFAULT_LIMITS = Limits()
