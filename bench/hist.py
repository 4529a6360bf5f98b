"""HdrHistogram helpers. Latencies are recorded in microseconds, 1 µs … 120 s, 3 significant digits.

Workers ship histograms to the parent in HdrHistogram's standard compressed base64 encoding; the parent
decodes and adds them, so percentiles of the merged histogram are exact to the histogram's precision (not
averages of per-process percentiles)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 120_000_000
SIGNIFICANT = 3

SUMMARY_PERCENTILES = (50.0, 90.0, 99.0, 99.9, 99.99)


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT)


def record_seconds(hist: HdrHistogram, seconds: float) -> None:
    """Record a duration given in seconds (clamped into the histogram's range)."""
    us = int(seconds * 1_000_000)
    if us < LOWEST_US:
        us = LOWEST_US
    elif us > HIGHEST_US:
        us = HIGHEST_US
    hist.record_value(us)


def encode(hist: HdrHistogram) -> str:
    raw = hist.encode()
    return raw.decode("ascii") if isinstance(raw, bytes) else str(raw)


def decode(encoded: str) -> HdrHistogram:
    return HdrHistogram.decode(encoded.encode("ascii"))


def merge_encoded(encoded: Iterable[str]) -> HdrHistogram:
    total = new_histogram()
    for item in encoded:
        if item:
            total.add(decode(item))
    return total


def ms(us: float) -> float:
    return round(us / 1000.0, 3)


def summary(hist: HdrHistogram) -> dict[str, Any]:
    """count, min/mean/max and the usual percentiles, in milliseconds."""
    count = int(hist.get_total_count())
    if count == 0:
        return {"count": 0}
    out: dict[str, Any] = {
        "count": count,
        "min_ms": ms(hist.get_min_value()),
        "mean_ms": ms(hist.get_mean_value()),
        "max_ms": ms(hist.get_max_value()),
    }
    for p in SUMMARY_PERCENTILES:
        out[f"p{_pname(p)}_ms"] = ms(hist.get_value_at_percentile(p))
    return out


def _pname(p: float) -> str:
    text = f"{p:g}"
    return text.replace(".", "")


def percentile_curve(hist: HdrHistogram, ticks_per_half_distance: int = 5) -> list[list[float]]:
    """[[percentile, value_ms], …] as HdrHistogram's percentile iterator yields them (for plotting)."""
    if hist.get_total_count() == 0:
        return []
    points: list[list[float]] = []
    for item in hist.get_percentile_iterator(ticks_per_half_distance):
        points.append([float(item.percentile_level_iterated_to), ms(item.value_iterated_to)])
        if len(points) > 400:
            break
    return points


def histogram_entry(hist: HdrHistogram) -> dict[str, Any]:
    """What a result file keeps per histogram: the summary, a plottable curve and the encoded histogram."""
    return {"summary": summary(hist), "curve": percentile_curve(hist), "encoded": encode(hist)}
