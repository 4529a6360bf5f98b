"""PNG plots (matplotlib, Agg backend): latency percentile curves per result, server CPU/RSS over time per
result, and throughput-vs-load curves across several ``cart`` results (e.g. a ``--tables 25,50,100,200``
sweep)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator  # noqa: E402

LATENCY_HISTS: dict[str, list[tuple[str, str]]] = {
    "cart": [("ack", "ack"), ("broadcast", "broadcast delivery")],
    "order-race": [("place_order_ack", "place_order ack"), ("outcome_seen", "outcome seen by member")],
    "idle": [("connect", "join + connect"), ("ping", "ping")],
    "reconnect-storm": [("time_to_current", "time to current snapshot")],
    "failover": [("ack", "ack"), ("outage", "outage per member")],
}
PCT_TICKS = [50.0, 90.0, 99.0, 99.9, 99.99, 99.999]
STYLES = ("-", "--", ":")
COLORS = {"tableside": "tab:blue", "raw": "tab:green", "socketio": "tab:purple", "raw-nagle": "tab:olive"}


def _color(target: str, index: int) -> str:
    return COLORS.get(target, f"C{index % 10}")


def _x(pct: float) -> float:
    return 1.0 / max(1e-6, 1.0 - pct / 100.0)


def _stem(doc: dict[str, Any], source: Path | None) -> str:
    if source is not None:
        return source.stem
    return f"{doc['started_at'].replace(':', '').replace('-', '')[:15]}-{doc['scenario']}"


def plot_latency(doc: dict[str, Any], out_dir: Path, source: Path | None = None) -> Path | None:
    wanted = LATENCY_HISTS.get(doc["scenario"], [])
    series: list[tuple[str, list[list[float]], str, str]] = []
    for ti, block in enumerate(doc["targets"]):
        hists = block.get("histograms") or {}
        for hi, (key, label) in enumerate(wanted):
            curve = (hists.get(key) or {}).get("curve") or []
            if curve:
                series.append(
                    (f"{block['target']}: {label}", curve, _color(block["target"], ti), STYLES[hi % 3])
                )
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for label, curve, color, style in series:
        pts = [(_x(p), v) for p, v in curve if p < 100.0]
        if pts:
            ax.plot(
                [p[0] for p in pts],
                [p[1] for p in pts],
                label=label,
                linewidth=1.6,
                color=color,
                linestyle=style,
            )
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator([_x(p) for p in PCT_TICKS]))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FixedFormatter([f"{p:g}%" for p in PCT_TICKS]))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlim(1.0, _x(99.999))
    ax.set_yscale("log")
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency (ms, log)")
    p = doc["params"]
    ax.set_title(
        f"{doc['scenario']}: {p['tables']}×{p['members']} members, {p['codec']} — latency by percentile"
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out_dir / f"{_stem(doc, source)}-latency.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_timeline(doc: dict[str, Any], out_dir: Path, source: Path | None = None) -> Path | None:
    blocks = [b for b in doc["targets"] if (b.get("timeline") or {}).get("rows")]
    if not blocks:
        return None
    fig, (ax_cpu, ax_rss) = plt.subplots(2, 1, figsize=(8, 5.5), sharex=True)
    for i, b in enumerate(blocks):
        rows = b["timeline"]["rows"]
        t = [r[0] for r in rows]
        c = _color(b["target"], i)
        ax_cpu.plot(t, [r[1] for r in rows], label=f"{b['target']} server", linewidth=1.4, color=c)
        ax_cpu.plot(
            t, [r[4] for r in rows], label=f"{b['target']} generator", linewidth=0.9, linestyle="--", color=c
        )
        ax_rss.plot(t, [r[2] for r in rows], label=b["target"], linewidth=1.4, color=c)
        for name, at in (b["timeline"].get("marks") or {}).items():
            if name in ("t0", "kill"):
                ax_cpu.axvline(at, color=c, linewidth=0.8, linestyle=":")
    ax_cpu.set_ylabel("CPU % (100 = 1 core)")
    ax_rss.set_ylabel("server RSS MB")
    ax_rss.set_xlabel("s since the generator started (each target's own run)")
    ax_cpu.legend(fontsize=7, ncol=2)
    ax_rss.legend(fontsize=7)
    ax_cpu.grid(True, alpha=0.3)
    ax_rss.grid(True, alpha=0.3)
    ax_cpu.set_title(f"{doc['scenario']}: server CPU and memory")
    fig.tight_layout()
    path = out_dir / f"{_stem(doc, source)}-timeline.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_throughput(docs: list[dict[str, Any]], out_dir: Path, name: str = "cart-throughput") -> Path | None:
    """Deliveries/s, acked ops/s and ack p99 against offered load (connections), one line per target."""
    points: dict[str, list[tuple[float, float, float, float]]] = {}
    for doc in docs:
        if doc["scenario"] != "cart" or doc["params"].get("rate"):  # closed-loop runs only: saturation
            continue
        conns = float(doc["params"]["tables"] * doc["params"]["members"])
        for b in doc["targets"]:
            f = b.get("figures") or {}
            if "deliveries_per_s" not in f:
                continue
            p99 = float((f.get("ack_ms") or {}).get("p99_ms") or math.nan)
            points.setdefault(b["target"], []).append(
                (conns, float(f["deliveries_per_s"]), float(f.get("acked_ops_per_s", 0)), p99)
            )
    if not points or max(len(v) for v in points.values()) < 2:
        return None
    fig, (ax_t, ax_l) = plt.subplots(1, 2, figsize=(11, 4.5))
    for i, (target, pts) in enumerate(sorted(points.items())):
        pts.sort()
        xs = [p[0] for p in pts]
        c = _color(target, i)
        ax_t.plot(xs, [p[1] for p in pts], marker="o", color=c, label=f"{target} deliveries/s")
        ax_t.plot(xs, [p[2] for p in pts], marker="x", linestyle="--", color=c, label=f"{target} acked ops/s")
        ax_l.plot(xs, [p[3] for p in pts], marker="o", color=c, label=target)
    ax_t.set_xlabel("connections (tables × members)")
    ax_t.set_ylabel("per second")
    ax_t.set_title("cart: throughput vs load")
    ax_l.set_xlabel("connections (tables × members)")
    ax_l.set_ylabel("ack p99 (ms)")
    ax_l.set_title("cart: ack p99 vs load")
    for ax in (ax_t, ax_l):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = out_dir / f"{name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_all(docs: list[tuple[dict[str, Any], Path | None]], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []
    for doc, source in docs:
        for fn in (plot_latency, plot_timeline):
            path = fn(doc, out_dir, source)
            if path is not None:
                made.append(path)
    tp = plot_throughput([d for d, _ in docs], out_dir)
    if tp is not None:
        made.append(tp)
    return made
