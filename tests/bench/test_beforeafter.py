"""bench.beforeafter: picks the configured runs from result files, prefers unprofiled runs, never invents a
figure that was not measured, and draws its plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.beforeafter import load_dir, main, table


def result(
    scenario: str, tables: int, rate: float, started: str, figures: dict[str, Any], *, profiled: bool = False
) -> dict[str, Any]:
    block: dict[str, Any] = {"target": "tableside", "figures": figures}
    if profiled:
        block["server_profile"] = {}
    return {
        "scenario": scenario,
        "started_at": started,
        "params": {"tables": tables, "members": 4, "rate": rate, "codec": "json"},
        "targets": [block],
    }


def write(directory: Path, docs: list[dict[str, Any]]) -> Path:
    directory.mkdir()
    for i, doc in enumerate(docs):
        (directory / f"{i}.json").write_text(json.dumps(doc))
    (directory / "junk.json").write_text("not json")
    return directory


def test_rows_come_from_matching_runs_and_missing_ones_say_so(tmp_path: Path) -> None:
    race = {"place_order_ack_ms": {"p99_ms": 7.3}}
    before = write(tmp_path / "before", [result("order-race", 100, 20.0, "2026-01-01T00:00:00", race)])
    after = write(
        tmp_path / "after",
        [
            result("order-race", 100, 20.0, "2026-01-02T00:00:00", {"place_order_ack_ms": {"p99_ms": 4.8}}),
            # newer, but under the profiler: only used when nothing else measured the row
            result("order-race", 100, 20.0, "2026-01-03T00:00:00", {"place_order_ack_ms": {"p99_ms": 5.2}}, profiled=True),
            # another configuration: never picked for the 100 x 4 row
            result("order-race", 50, 20.0, "2026-01-04T00:00:00", {"place_order_ack_ms": {"p99_ms": 1.0}}),
        ],
    )
    md, values = table(load_dir(before), load_dir(after))
    row = next(line for line in md.splitlines() if line.startswith("| place_order"))
    assert "| 7.3 ms | 4.8 ms | ≤ 5.0 ms | yes |" in row
    idle = next(line for line in md.splitlines() if line.startswith("| idle memory"))
    assert idle.count("not measured") == 3
    out = tmp_path / "plot.png"
    assert main(["--before", str(before), "--after", str(after), "--out", str(out)]) == 0
    assert out.stat().st_size > 0
