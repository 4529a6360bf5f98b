"""Result files: ``bench/results/<timestamp>-<scenario>.json`` (everything) and ``.md`` (the summary), and the
"latest results" section of ``bench/README.md``."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
PLOTS_DIR = BENCH_DIR / "plots"
README = BENCH_DIR / "README.md"
README_START = "<!-- bench:latest:start -->"
README_END = "<!-- bench:latest:end -->"

Row = tuple[str, Callable[[dict[str, Any]], Any]]


def write_result(
    doc: dict[str, Any], out_dir: Path | None = None, stamp: str | None = None
) -> tuple[Path, Path]:
    out = out_dir or RESULTS_DIR
    out.mkdir(parents=True, exist_ok=True)
    stamp = stamp or doc["started_at"].replace(":", "").replace("-", "")[:15]
    base = out / f"{stamp}-{doc['scenario']}"
    n = 1
    while base.with_suffix(".json").exists():
        n += 1
        base = out / f"{stamp}-{doc['scenario']}-{n}"
    json_path = base.with_suffix(".json")
    md_path = base.with_suffix(".md")
    json_path.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
    md_path.write_text(render_markdown(doc, json_name=_display(json_path)))
    return json_path, md_path


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(BENCH_DIR.parent))
    except ValueError:
        return str(path)


def load(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or data.get("schema", "").split("/")[0] != "tableside-bench":
        raise ValueError(f"{path} is not a bench result")
    return data


def _p(h: dict[str, Any]) -> str:
    if not h or not h.get("count"):
        return "–"
    return f"{h.get('p50_ms', 0):.2f} / {h.get('p99_ms', 0):.2f} / {h.get('p999_ms', 0):.2f}"


def _num(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) >= 100 else f"{v:.3g}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    if isinstance(v, dict):
        return ", ".join(f"{k}: {_num(x)}" for k, x in v.items()) or "none"
    if isinstance(v, list):
        return " / ".join(_num(x) for x in v)
    return str(v)


def _srv(block: dict[str, Any], key: str, stat: str = "mean") -> Any:
    return (block.get("server") or {}).get(key, {}).get(stat)


def _split(b: dict[str, Any]) -> str:
    m = (b.get("cluster") or {}).get("members")
    if not m:
        return "–"
    return f"{_num(m.get('owner_local'))} / {_num(m.get('forwarded'))} / {_num(m.get('unknown'))}"


def _take(t: dict[str, Any]) -> str:
    if not t.get("acked_again"):
        return "–"
    return f"{_num(t.get('p50_ms'))} / {_num(t.get('p99_ms'))} / {_num(t.get('max_ms'))}"


def _affected(t: dict[str, Any]) -> str:
    return f"{_num(t.get('members'))} / {_num(t.get('never_acked_again'))}" if t else "–"


def _killed(b: dict[str, Any]) -> str:
    k = b["figures"].get("killed") or {}
    return f"{k.get('node_id') or k.get('node')} / {_num(k.get('tables_owned'))}"


COMMON_ROWS: list[Row] = [
    (
        "server CPU % mean / max (100 = 1 core)",
        lambda b: f"{_num(_srv(b, 'server_cpu_pct'))} / {_num(_srv(b, 'server_cpu_pct', 'max'))}",
    ),
    ("server RSS MB max", lambda b: _srv(b, "server_rss_mb", "max")),
    ("Postgres CPU % mean", lambda b: _srv(b, "db_cpu_pct")),
    ("generator CPU % mean", lambda b: _srv(b, "generator_cpu_pct")),
    ("other processes CPU % mean (noise)", lambda b: _srv(b, "other_cpu_pct")),
]

# cart rows whose label names the broadcast frame kind (cart_updated for v1, cart_delta for v2), filled in by
# _cart_rows from the blocks of the run
FRAMES_ROW = "{kind} frames/s"
FRAME_BYTES_ROW = "{kind} frame bytes (avg)"
V2_ROWS: list[Row] = [
    ("codec", lambda b: b["figures"].get("codec")),
    (
        "snapshot resyncs (v2 gaps) total / in window",
        lambda b: (
            f"{_num(b['figures'].get('snapshot_resyncs'))} / {_num(b['figures'].get('snapshot_resyncs_in_window'))}"
        ),
    ),
]


def _cart_rows(rows: list[Row], blocks: list[dict[str, Any]]) -> list[Row]:
    """Name the frame kind in the frame rows: ``cart_updated`` (v1, and results written before v2),
    ``cart_delta`` (v2) or both, in target order, when a v2 tableside ran beside v1 baselines; with v2 in
    the run, also the codec of each target and the snapshot resyncs."""
    kinds: list[str] = []
    for b in blocks:
        kind = str(b["figures"].get("broadcast_frame_kind") or "cart_updated")
        if kind not in kinds:
            kinds.append(kind)
    kind = " / ".join(kinds) or "cart_updated"
    out: list[Row] = []
    for label, fn in rows:
        out.append((label.format(kind=kind) if label in (FRAMES_ROW, FRAME_BYTES_ROW) else label, fn))
        if label == FRAME_BYTES_ROW and "cart_delta" in kinds:
            out += V2_ROWS
    return out


SCENARIO_ROWS: dict[str, list[Row]] = {
    "cart": [
        ("acked ops/s", lambda b: b["figures"].get("acked_ops_per_s")),
        ("ack latency p50 / p99 / p99.9 ms", lambda b: _p(b["figures"].get("ack_ms", {}))),
        ("broadcast deliveries/s (member × operation)", lambda b: b["figures"].get("deliveries_per_s")),
        (FRAMES_ROW, lambda b: b["figures"].get("broadcast_frames_per_s")),
        ("broadcast latency p50 / p99 / p99.9 ms", lambda b: _p(b["figures"].get("broadcast_ms", {}))),
        (FRAME_BYTES_ROW, lambda b: b["figures"].get("broadcast_frame_bytes_avg")),
        ("ack owner-local p50 / p99 / p99.9 ms", lambda b: _p(b["figures"].get("ack_owner_local_ms", {}))),
        ("ack forwarded p50 / p99 / p99.9 ms", lambda b: _p(b["figures"].get("ack_forwarded_ms", {}))),
        ("forwarded − owner-local ack ms", lambda b: b["figures"].get("forwarded_extra_ms")),
        ("members owner-local / forwarded / unknown", lambda b: _split(b)),
        ("nodes", lambda b: (b.get("cluster") or {}).get("mode")),
        ("errors", lambda b: b["figures"].get("errors")),
        ("connected", lambda b: b["figures"].get("connections", {}).get("connected")),
    ],
    "idle": [
        (
            "connected / requested",
            lambda b: (
                f"{_num(b['figures']['connections'].get('connected'))} / {_num(b['figures'].get('requested'))}"
            ),
        ),
        ("connects/s", lambda b: b["figures"]["connections"].get("connects_per_s")),
        (
            "connect latency p50 / p99 / p99.9 ms",
            lambda b: _p(b["figures"]["connections"].get("connect_ms", {})),
        ),
        ("server RSS per connection KB", lambda b: b["figures"].get("server_rss_per_connection_kb")),
        (
            "server RSS before / held MB",
            lambda b: (
                f"{_num(b['figures'].get('server_rss_before_mb'))} / {_num(b['figures'].get('server_rss_held_mb'))}"
            ),
        ),
        ("closed by server while idle", lambda b: b["figures"].get("closed_by_server_while_idle")),
        (
            "pongs at end / unanswered",
            lambda b: f"{_num(b['figures'].get('pong'))} / {_num(b['figures'].get('ping_unanswered'))}",
        ),
        ("connect failures", lambda b: b["figures"]["connections"].get("connect_failures")),
    ],
    "order-race": [
        ("rounds (tables × rounds)", lambda b: b["figures"].get("rounds")),
        ("place_order ack p50 / p99 / p99.9 ms", lambda b: _p(b["figures"].get("place_order_ack_ms", {}))),
        ("refusal p50 / p99 / p99.9 ms", lambda b: _p(b["figures"].get("place_order_refused_ms", {}))),
        (
            "outcome seen by every member p50 / p99 / p99.9 ms",
            lambda b: _p(b["figures"].get("outcome_seen_ms", {})),
        ),
        (
            "place_order sent / acked",
            lambda b: (
                f"{_num(b['figures'].get('place_order_sent'))} / {_num(b['figures'].get('place_order_acked'))}"
            ),
        ),
        ("refusals", lambda b: b["figures"].get("place_order_refused")),
        (
            "orders confirmed / failed",
            lambda b: (
                f"{_num(b['figures'].get('orders_confirmed'))} / {_num(b['figures'].get('orders_failed'))}"
            ),
        ),
        (
            "tickets created / expected",
            lambda b: (
                f"{_num(b['figures'].get('tickets_created'))} / {_num(b['figures'].get('tickets_expected'))}"
            ),
        ),
        (
            "rounds with several winners / no winner / id mismatch",
            lambda b: (
                f"{b['figures'].get('rounds_with_several_winners')} / {b['figures'].get('rounds_without_winner')} / {b['figures'].get('rounds_order_id_mismatch')}"
            ),
        ),
    ],
    "reconnect-storm": [
        (
            "dropped / current again",
            lambda b: f"{_num(b['figures'].get('dropped'))} / {_num(b['figures'].get('current'))}",
        ),
        ("all current after s", lambda b: b["figures"].get("all_current_after_s")),
        ("time to current p50 / p99 / p99.9 ms", lambda b: _p(b["figures"].get("time_to_current_ms", {}))),
        ("attempts", lambda b: b["figures"].get("attempts")),
        ("reconnect failures", lambda b: b["figures"].get("reconnect_failures")),
        ("never current", lambda b: b["figures"].get("never_current")),
    ],
    "failover": [
        (
            "applicable",
            lambda b: (
                b["figures"].get("applicable")
                if b["figures"].get("applicable")
                else b["figures"].get("reason")
            ),
        ),
        ("killed node / tables it owned", lambda b: _killed(b)),
        ("lease TTL s", lambda b: b["figures"].get("lease_ttl_s")),
        (
            "takeover (kill → affected member acked again) p50 / p99 / max ms",
            lambda b: _take(b["figures"].get("takeover_ms") or {}),
        ),
        ("affected members / never acked again", lambda b: _affected(b["figures"].get("takeover_ms") or {})),
        (
            "unaffected members' first ack after the kill p50 / p99 / max ms",
            lambda b: _take(b["figures"].get("unaffected_first_ack_ms") or {}),
        ),
        ("takeover s (last affected member)", lambda b: b["figures"].get("takeover_s")),
        (
            "acked ops / lost",
            lambda b: f"{_num(b['figures'].get('acked_ops'))} / {_num(b['figures'].get('acked_ops_lost'))}",
        ),
        ("outage per member p50 / p99 / p99.9 ms", lambda b: _p(b["figures"].get("outage_ms", {}))),
    ],
}


def render_block_table(doc: dict[str, Any]) -> str:
    blocks = [b for b in doc["targets"] if "figures" in b]
    skipped = [b for b in doc["targets"] if "skipped" in b]
    lines: list[str] = []
    if blocks:
        lines.append("| | " + " | ".join(b["target"] for b in blocks) + " |")
        lines.append("|---|" + "---:|" * len(blocks))
        rows = list(SCENARIO_ROWS.get(doc["scenario"], []))
        if doc["scenario"] == "cart":
            rows = _cart_rows(rows, blocks)
        if doc["scenario"] == "failover" and not any(b["figures"].get("applicable") for b in blocks):
            rows = rows[:1]
        else:
            rows += COMMON_ROWS
        for label, fn in rows:
            cells = []
            for b in blocks:
                try:
                    cells.append(_num(fn(b)))
                except (KeyError, TypeError, AttributeError):
                    cells.append("–")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for b in skipped:
        lines.append(f"\n{b['target']}: skipped ({b['skipped']})")
    return "\n".join(lines)


def render_params(doc: dict[str, Any]) -> str:
    p = doc["params"]
    m = doc["machine"]
    rate = (
        "closed loop (next op when the previous is acked)"
        if not p.get("rate")
        else f"{p['rate']:g} ops/s offered"
    )
    gen: dict[str, Any] = next((b.get("generator") for b in doc["targets"] if b.get("generator")), {}) or {}
    parts = [f"{p['tables']} tables × {p['members']} members = {p['connections']} connections"]
    if doc["scenario"] in ("cart", "failover"):
        parts.append(f"rate: {rate}")
    if doc["scenario"] == "order-race":
        parts.append(
            "rounds back to back" if not p.get("rate") else f"{p['rate']:g} rounds/s over all tables"
        )
    parts += [
        f"duration {p['duration']:g} s (first {gen.get('warmup_s', 0):g} s not measured)",
        f"codec {p['codec']}",
        f"{gen.get('processes', p['procs'])} generator process(es), {gen.get('source_addresses', '?')} source addresses, uvloop {p['uvloop']}",
    ]
    if p.get("rounds"):
        parts.append(f"rounds per table {p['rounds']}")
    machine = (
        f"{m.get('cpu_model', '?')}, {m.get('cpu_count')} cores, {m.get('memory_gb')} GB, Python {m.get('python')}, "
        f"commit {m.get('git_commit') or '?'}, load average at start {m.get('loadavg_at_start', '?')}"
    )
    return "- " + "; ".join(parts) + "\n- machine: " + machine + " (server, database and generator share it)"


def render_markdown(doc: dict[str, Any], json_name: str | None = None, heading: str = "##") -> str:
    out = [
        f"{heading} `{doc['scenario']}` — {doc['started_at']}",
        "",
        render_params(doc),
        "",
        render_block_table(doc),
    ]
    if doc.get("comparison"):
        out += [
            "",
            "Ratios (tableside ÷ baseline, same run; latency ratios < 1 mean tableside is faster):",
            "",
        ]
        for pair, vals in doc["comparison"].items():
            out.append(f"- {pair}: " + ", ".join(f"{k} {v:.2f}" for k, v in vals.items()))
    if doc.get("goals"):
        out += ["", "| goal | measured | met |", "|---|---|---|"]
        for g in doc["goals"]:
            met = {True: "yes", False: "**no**", None: "not measured at this load"}[g["met"]]
            out.append(f"| {g['goal']} | {_num(g['measured'])} | {met} |")
    for b in doc["targets"]:
        prof = b.get("server_profile")
        if prof and prof.get("top_own_pct"):
            out += [
                "",
                f"Server profile ({b['target']}, py-spy, {prof['samples']} samples; the profiler costs some CPU):",
                "",
            ]
            out.append("- own time: " + ", ".join(f"{n} {p}%" for n, p in prof["top_own_pct"][:10]))
            out.append("- inclusive: " + ", ".join(f"{n} {p}%" for n, p in prof["top_inclusive_pct"][:12]))
    if doc.get("notes"):
        out += [""] + [f"- {n}" for n in doc["notes"]]
    if json_name:
        out += ["", f"Full result: `{json_name}`"]
    return "\n".join(out) + "\n"


def update_readme(sections: list[str], plots: list[Path], readme: Path = README) -> None:
    """Replace the text between the README's latest-results markers."""
    text = readme.read_text() if readme.exists() else f"# bench\n\n{README_START}\n{README_END}\n"
    body = "\n".join(sections)
    if plots:
        body += "\n" + "\n".join(f"![{p.stem}](plots/{p.name})" for p in plots) + "\n"
    new = f"{README_START}\n{body}\n{README_END}"
    if README_START in text and README_END in text:
        text = re.sub(
            re.escape(README_START) + ".*?" + re.escape(README_END), lambda _: new, text, flags=re.S
        )
    else:
        text = text.rstrip() + "\n\n## Latest results\n\n" + new + "\n"
    readme.write_text(text)
