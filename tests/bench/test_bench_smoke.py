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


def test_cart_v2_against_tableside_and_raw_v1(tableside: tg.Target, tmp_path: Path) -> None:
    """--codec json-v2: tableside members keep their carts from cart_delta frames, the raw baseline (no v2)
    runs on tableside.v1.json in the same result and the notes say so."""
    assert tableside.admin_password and tableside.pos_url
    rc = bench_main(
        ["run", "cart", "--target", "tableside,raw", "--codec", "json-v2", "--url", tableside.url,
         "--admin-password", tableside.admin_password, "--tables", "2", "--members", "3", "--duration", "1.5",
         "--warmup", "0.3", "--procs", "1", "--out", str(tmp_path), "--quiet"]
    )  # fmt: skip
    assert rc == 0
    [json_path] = sorted(tmp_path.glob("*-cart.json"))
    doc = json.loads(json_path.read_text())
    assert doc["params"]["codec"] == "json-v2"
    ts, raw = doc["targets"]
    assert (ts["target"], ts["codec"], raw["target"], raw["codec"]) == ("tableside", "json-v2", "raw", "json")
    assert ts["figures"]["broadcast_frame_kind"] == "cart_delta"
    assert raw["figures"]["broadcast_frame_kind"] == "cart_updated"
    for block in (ts, raw):
        f = block["figures"]
        assert f["connections"]["connected"] == 6, block["target"]
        assert f["errors"] == {}, (block["target"], f["errors"], block["samples"])
        assert f["acked_ops"] > 0 and f["ack_ms"]["count"] == f["acked_ops"]
        assert 0 < f["deliveries"] <= 3 * f["acked_ops"] + 3
        assert f["broadcast_missing"] == 0  # every member saw every acked revision (by delta or snapshot)
    f = ts["figures"]
    # every broadcast frame tableside sent to a v2 member was a cart_delta
    assert f["cart_delta_frames"] == ts["counters"]["broadcast_frames_total"] > 0
    assert raw["figures"]["cart_delta_frames"] == raw["figures"]["snapshot_resyncs"] == 0
    assert isinstance(f["snapshot_resyncs"], int)
    assert any("raw speaks v1 only: run with codec json " in n for n in doc["notes"])
    md = json_path.with_suffix(".md").read_text()
    assert "| cart_delta / cart_updated frames/s |" in md and "| codec | json-v2 | json |" in md


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


def test_failover_for_real_on_three_nodes(tmp_path: Path) -> None:
    """Three nodes with a private Redis (lease TTL 1 s to keep it short): the owner of the most tables is
    SIGKILLed, every affected member is served again and no acknowledged operation is lost."""
    target = tg.start_cluster(TABLES, nodes=3, fresh_db_from=ADMIN_URL, lease_ttl_s=1.0)
    try:
        assert len(target.urls) == 3 and len(target.server_pids) == 3
        block, _ = _run(
            target, tmp_path, scenario="failover", tables=3, members=3, duration=5.0, kill_after=1.5
        )
    finally:
        target.stop()
    f = block["figures"]
    assert f["applicable"] is True and f["lease_ttl_s"] == 1.0
    assert f["killed"]["node_id"] in ("n0", "n1", "n2") and f["killed"]["tables_owned"] >= 1
    assert f["killed"]["kill_late_ms"] < 10  # takeover is timed from the planned instant
    assert f["acked_ops_lost"] == 0 and f["acked_ops"] > 0
    take = f["takeover_ms"]
    assert take["members"] >= 3 and take["never_acked_again"] == 0 and take["p99_ms"] > 0
    assert block["cluster"]["members"]["unknown"] == 0


def test_cart_on_two_workers_splits_owner_local_and_forwarded(tmp_path: Path) -> None:
    """Two processes on one port: each member's node is found from the kernel's socket table."""
    target = tg.start_cluster(TABLES, workers=2, fresh_db_from=ADMIN_URL)
    try:
        assert len(target.urls) == 1 and len(target.server_pids) == 2
        block, _ = _run(target, tmp_path, scenario="cart", tables=4, members=3, duration=2.0)
    finally:
        target.stop()
    members = block["cluster"]["members"]
    assert members["unknown"] == 0 and members["owner_local"] + members["forwarded"] == 12
    f = block["figures"]
    counted = f["ack_owner_local_ms"].get("count", 0) + f["ack_forwarded_ms"].get("count", 0)
    assert counted == f["ack_ms"]["count"] > 0
