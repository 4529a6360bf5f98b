"""A tiny run of every bench scenario, so the harness never rots: tableside started as a subprocess (with
the POS simulator and a fresh database in the test Postgres, dropped afterwards) and both baselines.

Only structure and consistency are asserted (files written, counts adding up, tickets == expected for the
order race), never timing."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench import targets as tg
from bench.cli import main as bench_main
from bench.plot import plot_all
from bench.report import load, render_markdown, update_readme, write_result
from bench.runner import RunParams, build_document, run_target

ADMIN_URL = os.environ.get("TABLESIDE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
TABLES = 4


@pytest.fixture(scope="module")
def tableside() -> Iterator[tg.Target]:
    target = tg.start_tableside(TABLES, fresh_db_from=ADMIN_URL)
    try:
        yield target
    finally:
        target.stop()


def _run(target: tg.Target, out: Path, **kw: object) -> tuple[dict[str, object], Path]:
    params = RunParams(**kw)  # type: ignore[arg-type]
    started = datetime.now(UTC)
    block = run_target(params, target)
    doc = build_document(params, [block], started, ["smoke"])
    json_path, md_path = write_result(doc, out)
    assert json_path.exists() and md_path.exists()
    assert load(json_path)["scenario"] == params.scenario
    assert f"`{params.scenario}`" in md_path.read_text()
    return block, json_path


def test_cart_against_tableside_and_both_baselines(tableside: tg.Target, tmp_path: Path) -> None:
    assert tableside.admin_password and tableside.pos_url
    rc = bench_main(
        ["run", "cart", "--target", "all", "--url", tableside.url, "--admin-password", tableside.admin_password,
         "--pos-url", tableside.pos_url, "--tables", "3", "--members", "2", "--duration", "1.5", "--warmup", "0.3",
         "--procs", "2", "--out", str(tmp_path), "--quiet"]
    )  # fmt: skip
    assert rc == 0
    [json_path] = sorted(tmp_path.glob("*-cart.json"))
    assert json_path.with_suffix(".md").exists()
    doc = json.loads(json_path.read_text())
    assert [b["target"] for b in doc["targets"]] == ["tableside", "raw", "socketio"]
    for block in doc["targets"]:
        f = block["figures"]
        assert f["connections"]["connected"] == 6, block["target"]
        assert f["errors"] == {}, (block["target"], f["errors"], block["samples"])
        assert f["acked_ops"] > 0
        assert f["acked_ops"] == sum(f["acked_by_type"].values())
        assert f["ack_ms"]["count"] == f["acked_ops"]
        # every acked op in the window is delivered to both members of its table (at most)
        assert 0 < f["broadcast_ms"]["count"] <= 2 * f["acked_ops"] + 2
        assert f["deliveries"] == f["broadcast_ms"]["count"]
        assert f["broadcast_frames"] > 0 and f["broadcast_frame_bytes_avg"] > 0
        assert set(block["histograms"]) >= {"ack", "broadcast", "connect"}
        assert block["server"]["samples"] > 0
        assert block["generator"]["processes"] == 2
    assert set(doc["comparison"]) == {"tableside/raw", "tableside/socketio"}
    assert "deliveries_per_s" in doc["comparison"]["tableside/raw"]
    assert any(g["goal"].startswith("fan-out") for g in doc["goals"])

    plots = plot_all([(doc, json_path)], tmp_path / "plots")
    assert {p.name for p in plots} == {f"{json_path.stem}-latency.png", f"{json_path.stem}-timeline.png"}
    assert all(p.stat().st_size > 1000 for p in plots)
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- bench:latest:start -->\nold\n<!-- bench:latest:end -->\n")
    update_readme([render_markdown(doc)], plots, readme)
    text = readme.read_text()
    assert "old" not in text and "| acked ops/s |" in text and "-latency.png" in text


def test_order_race_tickets_equal_expected(tableside: tg.Target, tmp_path: Path) -> None:
    block, _ = _run(tableside, tmp_path, scenario="order-race", tables=3, members=3, duration=20.0, rounds=3)
    f = block["figures"]
    assert isinstance(f, dict)
    assert f["rounds"] == 9
    assert f["place_order_sent"] == 27
    assert f["place_order_acked"] == 9
    assert sum(f["place_order_refused"].values()) == 18
    assert f["rounds_with_several_winners"] == 0 and f["rounds_order_id_mismatch"] == 0
    assert f["orders_confirmed"] == 9
    assert f["tickets_created"] == f["tickets_expected"] == 9
    assert f["tickets_match"] is True
    assert f["place_order_ack_ms"]["count"] == 9
    assert f["outcome_seen_ms"]["count"] == 27


def test_idle_holds_and_measures_memory(tableside: tg.Target, tmp_path: Path) -> None:
    block, _ = _run(tableside, tmp_path, scenario="idle", tables=3, members=4, duration=1.5)
    f = block["figures"]
    assert isinstance(f, dict)
    assert f["connections"]["connected"] == 12 == f["requested"]
    assert f["connections"]["connects_per_s"] > 0
    assert f["closed_by_server_while_idle"] == 0
    assert f["pong"] == 12 and f["ping_unanswered"] == 0
    assert isinstance(f["server_rss_per_connection_kb"], float)


def test_reconnect_storm_everyone_current(tableside: tg.Target, tmp_path: Path) -> None:
    block, _ = _run(tableside, tmp_path, scenario="reconnect-storm", tables=3, members=3, duration=20.0)
    f = block["figures"]
    assert isinstance(f, dict)
    assert f["dropped"] == 9 == f["current"]
    assert f["never_current"] == 0
    assert f["time_to_current_ms"]["count"] == 9
    assert f["all_current_after_s"] is not None and f["all_current_after_s"] > 0


def test_failover_not_applicable_on_one_node(tableside: tg.Target, tmp_path: Path) -> None:
    block, json_path = _run(tableside, tmp_path, scenario="failover", tables=2, members=2, duration=1.0)
    assert block["figures"] == {"applicable": False, "reason": "not applicable: single node"}
    assert "not applicable: single node" in json_path.with_suffix(".md").read_text()


def test_idle_and_cart_reject_unbounded_runs() -> None:
    from bench.runner import RunError

    with pytest.raises(RunError):
        RunParams(scenario="idle", tables=20_000, members=4).validate()
    with pytest.raises(RunError):
        RunParams(scenario="cart", duration=3600).validate()
