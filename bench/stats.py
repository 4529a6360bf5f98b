"""Per-process measurements and their merge in the parent.

A worker fills one :class:`Stats`: named counters (summed on merge), named HdrHistograms (shipped encoded,
added on merge), earliest/latest timestamps (min/max on merge; ``time.monotonic`` is system-wide on Linux so
timestamps from different processes compare), and a few sample strings (e.g. error texts)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hdrh.histogram import HdrHistogram

from bench import hist


class Stats:
    def __init__(self) -> None:
        self.counters: Counter[str] = Counter()
        self.hists: dict[str, HdrHistogram] = {}
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.samples: dict[str, list[str]] = {}
        self.maps: dict[str, dict[str, float]] = {}  # per-member values (keys unique across processes)

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    def h(self, name: str) -> HdrHistogram:
        found = self.hists.get(name)
        if found is None:
            found = self.hists[name] = hist.new_histogram()
        return found

    def record(self, name: str, seconds: float) -> None:
        hist.record_seconds(self.h(name), seconds)

    def mark_first(self, name: str, t: float) -> None:
        old = self.first.get(name)
        if old is None or t < old:
            self.first[name] = t

    def mark_last(self, name: str, t: float) -> None:
        old = self.last.get(name)
        if old is None or t > old:
            self.last[name] = t

    def sample(self, name: str, text: str, keep: int = 5) -> None:
        lst = self.samples.setdefault(name, [])
        if len(lst) < keep:
            lst.append(text[:300])

    def put(self, name: str, key: str, value: float) -> None:
        self.maps.setdefault(name, {})[key] = value

    def to_wire(self) -> dict[str, Any]:
        return {
            "counters": dict(self.counters),
            "hists": {k: hist.encode(v) for k, v in self.hists.items()},
            "first": dict(self.first),
            "last": dict(self.last),
            "samples": self.samples,
            "maps": self.maps,
        }

    def merge_wire(self, wire: dict[str, Any]) -> None:
        self.counters.update(wire.get("counters", {}))
        for name, enc in wire.get("hists", {}).items():
            self.h(name).add(hist.decode(enc))
        for name, t in wire.get("first", {}).items():
            self.mark_first(name, float(t))
        for name, t in wire.get("last", {}).items():
            self.mark_last(name, float(t))
        for name, values in wire.get("maps", {}).items():
            self.maps.setdefault(name, {}).update({k: float(v) for k, v in values.items()})
        for name, lst in wire.get("samples", {}).items():
            for text in lst:
                self.sample(name, text)

    @classmethod
    def merged(cls, wires: list[dict[str, Any]]) -> Stats:
        out = cls()
        for w in wires:
            out.merge_wire(w)
        return out
