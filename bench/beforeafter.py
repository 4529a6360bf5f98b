"""Before/after table and plot for the hot-path targets (issue 14) from two sets of result files.

``python -m bench.beforeafter --before DIR --after DIR [--out PNG]`` picks, in each directory, the results of the
configurations the issue names (the newest file of each), prints one Markdown row per figure (before, after,
target, met) and draws one panel per figure (before and after bars, the target as a dashed line). Both sets
must come from the same commands (``bench/README.md`` lists them); a figure missing on one side is shown as
"not measured", never guessed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

Doc = dict[str, Any]


def _target(doc: Doc, name: str) -> dict[str, Any] | None:
    return next((t for t in doc["targets"] if t["target"] == name), None)


def _fig(doc: Doc, name: str, *path: str) -> float | None:
    block = _target(doc, name)
    value: Any = block["figures"] if block else None
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return float(value) if isinstance(value, int | float) else None


def _ratio(doc: Doc) -> float | None:
    ts, raw = _fig(doc, "tableside", "deliveries_per_s"), _fig(doc, "raw", "deliveries_per_s")
    return ts / raw if ts is not None and raw else None


@dataclass(frozen=True)
class Row:
    label: str
    unit: str
    target: float
    higher_is_better: bool
    match: Callable[[Doc], bool]
    value: Callable[[Doc], float | None]


def _is(scenario: str, tables: int, rate: float, codec: str = "json") -> Callable[[Doc], bool]:
    def match(doc: Doc) -> bool:
        p = doc["params"]
        return (
            doc["scenario"] == scenario
            and p["tables"] == tables
            and p["members"] == 4
            and float(p["rate"]) == rate
            and p["codec"] == codec
        )

    return match


ROWS = [
    Row(
        "durable cart ops, open loop 3,000/s, 100×4: ack p99",
        "ms",
        15.0,
        False,
        _is("cart", 100, 3000.0),
        lambda d: _fig(d, "tableside", "ack_ms", "p99_ms"),
    ),
    Row(
        "durable cart ops, open loop 3,000/s, 100×4: acked/s",
        "ops/s",
        3000.0,
        True,
        _is("cart", 100, 3000.0),
        lambda d: _fig(d, "tableside", "acked_ops_per_s"),
    ),
    Row(
        "durable cart ops at saturation (closed loop, 100×4)",
        "ops/s",
        4000.0,
        True,
        _is("cart", 100, 0.0),
        lambda d: _fig(d, "tableside", "acked_ops_per_s"),
    ),
    Row(
        "place_order ack p99, POS 0 ms, 20 rounds/s, 100×4",
        "ms",
        5.0,
        False,
        _is("order-race", 100, 20.0),
        lambda d: _fig(d, "tableside", "place_order_ack_ms", "p99_ms"),
    ),
    Row(
        "fan-out deliveries/s ÷ raw Tornado, closed loop 50×4",
        "×",
        1.0,
        True,
        _is("cart", 50, 0.0),
        _ratio,
    ),
    Row(
        "joins + handshakes/s (15,000 connections)",
        "/s",
        500.0,
        True,
        _is("idle", 3750, 0.0),
        lambda d: _fig(d, "tableside", "connections", "connects_per_s"),
    ),
    Row(
        "idle memory per connection at 15,000",
        "KB",
        16.0,
        False,
        _is("idle", 3750, 0.0),
        lambda d: _fig(d, "tableside", "server_rss_per_connection_kb"),
    ),
]


def load_dir(directory: Path) -> list[Doc]:
    docs = []
    for path in sorted(directory.glob("*.json")):
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and "targets" in doc and "params" in doc:
            doc["_file"] = path.name
            docs.append(doc)
    return docs


def pick(docs: list[Doc], row: Row) -> tuple[float | None, str | None]:
    """The row's figure from the newest matching result that has it; a run under the profiler (which costs
    the server CPU) only when there is no other."""
    profiled = [d for d in docs if any("server_profile" in t for t in d["targets"])]
    plain = [d for d in docs if d not in profiled]
    for doc in [*sorted(plain, key=lambda d: d["started_at"], reverse=True), *profiled]:
        if row.match(doc):
            value = row.value(doc)
            if value is not None:
                return value, doc["_file"]
    return None, None


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "not measured"
    if unit == "×":
        return f"{value:.2f}×"
    if unit in ("ms", "KB"):
        return f"{value:,.1f} {unit}"
    return f"{value:,.0f}{unit if unit == '/s' else ' ' + unit}"


def table(before: list[Doc], after: list[Doc]) -> tuple[str, list[tuple[Row, float | None, float | None]]]:
    lines = ["| figure | before | after | target | met |", "|---|---:|---:|---:|---|"]
    values = []
    for row in ROWS:
        b, _ = pick(before, row)
        a, _ = pick(after, row)
        values.append((row, b, a))
        if a is None:
            met = "not measured"
        elif row.higher_is_better:
            met = "yes" if a >= row.target else "**no**"
        else:
            met = "yes" if a <= row.target else "**no**"
        sign = "≥" if row.higher_is_better else "≤"
        target = f"{sign} {_fmt(row.target, row.unit)}"
        lines.append(f"| {row.label} | {_fmt(b, row.unit)} | {_fmt(a, row.unit)} | {target} | {met} |")
    return "\n".join(lines), values


def plot(values: list[tuple[Row, float | None, float | None]], out: Path) -> Path:
    fig, axes = plt.subplots(2, 4, figsize=(14, 6.4))
    flat = list(axes.flat)
    for ax, (row, b, a) in zip(flat, values, strict=False):
        bars = [(label, v) for label, v in (("before", b), ("after", a)) if v is not None]
        ax.bar(
            [label for label, _ in bars],
            [v for _, v in bars],
            color=["tab:gray" if label == "before" else "tab:blue" for label, _ in bars],
        )
        ax.axhline(row.target, color="tab:red", linestyle="--", linewidth=1.2)
        ax.set_title(row.label, fontsize=8)
        ax.set_ylabel(row.unit)
        for i, (_, v) in enumerate(bars):
            ax.text(i, v, _fmt(v, row.unit), ha="center", va="bottom", fontsize=8)
        ax.set_ylim(0, 1.18 * max([row.target, *(v for _, v in bars)]))
    for ax in flat[len(values) :]:
        ax.axis("off")
    fig.suptitle("issue 14, hot path round 2: before (grey) vs after (blue); dashed red line: the target")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.beforeafter", description=__doc__)
    ap.add_argument("--before", type=Path, required=True, help="directory of result JSON files (before)")
    ap.add_argument("--after", type=Path, required=True, help="directory of result JSON files (after)")
    ap.add_argument("--out", type=Path, default=Path("bench/plots/issue14-before-after.png"))
    args = ap.parse_args(argv)
    md, values = table(load_dir(args.before), load_dir(args.after))
    print(md)
    print(f"\n![before/after]({plot(values, args.out)})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
