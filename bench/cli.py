"""``python -m bench``: run scenarios, compare with the baselines, plot, report, serve a baseline."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.scenarios import SCENARIO_NAMES

TARGETS = ("tableside", "raw", "socketio", "raw-nagle", "all")


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _target_choice(text: str) -> str:
    names = [x.strip() for x in text.split(",") if x.strip()]
    bad = [n for n in names if n not in TARGETS]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"unknown target(s) {bad}; choose from {', '.join(TARGETS)}")
    return ",".join(names)


def _add_run_options(
    p: argparse.ArgumentParser, *, tables: str, members: int, duration: float, target: str
) -> None:
    g = p.add_argument_group("load")
    g.add_argument("--tables", default=tables, help="tables (comma list for a sweep, e.g. 25,50,100)")
    g.add_argument("--members", type=int, default=members, help="members per table")
    g.add_argument(
        "--rate", default="0", help="total ops/s offered (comma list for a sweep); 0 = closed loop"
    )
    g.add_argument("--duration", type=float, default=duration, help="measured phase, seconds")
    g.add_argument(
        "--warmup", type=float, default=-1.0, help="seconds excluded at the start (default: per scenario)"
    )
    g.add_argument(
        "--rounds", type=int, default=0, help="order-race: rounds per table (0 = until the duration ends)"
    )
    g.add_argument(
        "--codec",
        choices=("json", "msgpack", "json-v2", "msgpack-v2"),
        default="json",
        help="json / msgpack: tableside.v1.*; json-v2 / msgpack-v2: tableside.v2.* (cart_delta), the baselines "
        "then run with the v1 codec of the same encoding",
    )
    g.add_argument(
        "--procs", type=int, default=max(1, (os.cpu_count() or 2) // 2), help="generator processes"
    )
    g.add_argument("--source-addrs", type=int, default=0, help="source addresses 127.0.0.2… (0 = auto)")
    g.add_argument("--no-uvloop", action="store_true", help="plain asyncio loop in the generator")
    g.add_argument("--connect-concurrency", type=int, default=200, help="handshakes in flight per process")
    g.add_argument(
        "--kill-after",
        type=float,
        default=-1.0,
        help="failover: SIGKILL after this many s (default duration/3)",
    )
    g.add_argument(
        "--kill-node",
        type=int,
        default=-1,
        help="failover: index of the node to kill (default: the one owning the most tables)",
    )
    t = p.add_argument_group("target")
    t.add_argument(
        "--target",
        type=_target_choice,
        default=target,
        help=f"one of {', '.join(TARGETS)}, or a comma list of them (e.g. tableside,raw)",
    )
    t.add_argument(
        "--url", action="append", default=[], help="a running tableside node (loopback); repeat for several"
    )
    t.add_argument("--admin-password", default=os.environ.get("TABLESIDE_ADMIN_PASSWORD"))
    t.add_argument("--pos-url", help="POS simulator of a --url deployment (for order-race tickets)")
    t.add_argument(
        "--server-pid", type=int, action="append", default=[], help="pid(s) of --url node(s) to sample"
    )
    t.add_argument("--database-url", help="started tableside: use this database as is")
    t.add_argument(
        "--fresh-db-from", help="started tableside: CREATE a bench_<hex> database on this server, drop after"
    )
    t.add_argument("--server-log-level", default="warning", help="started tableside: TABLESIDE_LOG_LEVEL")
    t.add_argument(
        "--nodes",
        type=int,
        default=0,
        help="started tableside: N node processes on N ports, one private redis-server, one database",
    )
    t.add_argument(
        "--workers",
        default="",
        help="started tableside: N node processes on ONE port (SO_REUSEPORT) + a private redis-server; "
        "a comma list (1,2) runs each as its own target in the same result",
    )
    t.add_argument(
        "--lease-ttl",
        type=float,
        default=5.0,
        help="multi-node: TABLESIDE_CLUSTER__LEASE_TTL_S (renew interval = ttl / 5, at most 1 s)",
    )
    o = p.add_argument_group("output")
    o.add_argument("--out", type=Path, help="results directory (default bench/results)")
    o.add_argument("--plot", action="store_true", help="also draw the plots (into bench/plots)")
    o.add_argument("--quiet", action="store_true")
    o.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="S",
        help="before each target's run wait up to S s until the machine is idle (< 15%% CPU for 3 s)",
    )
    o.add_argument(
        "--profile",
        action="store_true",
        help="py-spy the server during the measured window (top functions in the result)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)

    run = sub.add_parser("run", help="run one scenario against one or more targets")
    run.add_argument("scenario", choices=SCENARIO_NAMES)
    _add_run_options(run, tables="10", members=4, duration=10.0, target="tableside")

    cmp = sub.add_parser(
        "compare", help="scenario cart against tableside and both baselines in one run, with ratios"
    )
    _add_run_options(cmp, tables="100", members=4, duration=20.0, target="all")

    plot = sub.add_parser("plot", help="draw PNG plots from result files")
    plot.add_argument(
        "results", nargs="*", type=Path, help="result JSON files (default: all in bench/results)"
    )
    plot.add_argument("--out", type=Path, help="directory for the PNGs (default bench/plots)")

    rep = sub.add_parser(
        "report", help="print the Markdown summary of result files; --readme updates bench/README.md"
    )
    rep.add_argument("results", nargs="+", type=Path)
    rep.add_argument("--readme", action="store_true")

    base = sub.add_parser(
        "baseline", help="serve one of the baselines (used by the harness; handy for manual tests)"
    )
    base.add_argument("kind", choices=("raw", "socketio"))
    base.add_argument("--host", default="127.0.0.1")
    base.add_argument("--port", type=int, required=True)
    base.add_argument("--codec", choices=("json", "msgpack"), default="json", help="socketio: serializer")
    base.add_argument("--no-nodelay", action="store_true", help="raw: keep Nagle on (to show the trap)")
    base.add_argument("--uvloop", action="store_true")
    return parser


def _target_names(choice: str, scenario: str, workers: list[int] | None = None) -> list[str]:
    """Target names in run order; ``--workers 1,2`` turns "tableside" into "tableside-1w", "tableside-2w"."""
    names: list[str] = []
    for one in choice.split(","):
        if one == "all":
            more = ["tableside", "raw", "socketio"] if scenario in ("cart", "idle") else ["tableside"]
        else:
            more = [one]
        names += [n for n in more if n not in names]
    if workers and "tableside" in names:
        i = names.index("tableside")
        names[i : i + 1] = [f"tableside-{w}w" for w in workers]
    return names


def wait_quiet(limit: float, threshold: float = 15.0, calm: int = 3) -> tuple[bool, float]:
    """Wait until machine-wide CPU stays under ``threshold`` % for ``calm`` consecutive seconds."""
    import time

    import psutil

    deadline = time.monotonic() + limit
    streak = 0
    pct = 100.0
    while time.monotonic() < deadline:
        pct = psutil.cpu_percent(interval=1.0)
        streak = streak + 1 if pct < threshold else 0
        if streak >= calm:
            return True, pct
    return False, pct


def cmd_run(args: argparse.Namespace, scenario: str) -> int:
    from bench import targets as tg
    from bench.addrs import require_loopback_url
    from bench.proto import is_v2, v1_codec
    from bench.report import PLOTS_DIR, RESULTS_DIR, load, write_result
    from bench.runner import RunError, RunParams, build_document, run_target

    log = None if args.quiet else sys.stderr
    table_list = _ints(args.tables)
    rate_list = _floats(args.rate)
    for u in args.url:
        require_loopback_url(u)
    workers = _ints(args.workers) if args.workers else []
    if args.nodes and workers:
        print("bench: --nodes and --workers exclude each other", file=sys.stderr)
        return 2
    if (args.nodes or workers) and args.url:
        print("bench: --nodes / --workers start the nodes; --url attaches to running ones", file=sys.stderr)
        return 2
    if args.nodes < 0 or args.nodes > 8 or any(w < 1 or w > 8 for w in workers):
        print("bench: --nodes / --workers must be 1..8", file=sys.stderr)
        return 2
    names = _target_names(args.target, scenario, workers)
    # the baselines have no v2: they run with the v1 codec of the same encoding, so one result compares
    # tableside v2 against them as they are (and says so)
    base_codec = v1_codec(args.codec)
    started: dict[str, tg.Target] = {}
    written: list[Path] = []
    try:
        for name in names:
            if name.startswith("tableside-") and name.endswith("w"):
                if log:
                    print(
                        f"[bench] starting {name}: redis-server + {name[10:-1]} workers …",
                        file=log,
                        flush=True,
                    )
                started[name] = tg.start_cluster(
                    max(table_list),
                    workers=int(name[10:-1]),
                    database_url=args.database_url,
                    fresh_db_from=args.fresh_db_from,
                    log_level=args.server_log_level,
                    lease_ttl_s=args.lease_ttl,
                )
            elif name == "tableside" and args.nodes:
                if log:
                    print(
                        f"[bench] starting redis-server + {args.nodes} tableside nodes …",
                        file=log,
                        flush=True,
                    )
                started[name] = tg.start_cluster(
                    max(table_list),
                    nodes=args.nodes,
                    database_url=args.database_url,
                    fresh_db_from=args.fresh_db_from,
                    log_level=args.server_log_level,
                    lease_ttl_s=args.lease_ttl,
                )
            elif name == "tableside":
                if args.url:
                    started[name] = tg.attach(
                        args.url, "tableside", args.admin_password, args.pos_url, args.server_pid or None
                    )
                else:
                    if log:
                        print("[bench] starting tableside + pos-sim …", file=log, flush=True)
                    started[name] = tg.start_tableside(
                        max(table_list),
                        database_url=args.database_url,
                        fresh_db_from=args.fresh_db_from,
                        log_level=args.server_log_level,
                    )
            elif name == "raw-nagle":
                started[name] = tg.start_baseline("raw", base_codec, nodelay=False)
            else:
                started[name] = tg.start_baseline(name, base_codec)  # type: ignore[arg-type]
        for tables in table_list:
            for rate in rate_list:
                params = RunParams(
                    scenario=scenario,
                    tables=tables,
                    members=args.members,
                    rate=rate,
                    duration=args.duration,
                    warmup=args.warmup,
                    codec=args.codec,
                    procs=args.procs,
                    rounds=args.rounds,
                    source_addrs=args.source_addrs,
                    uvloop=not args.no_uvloop,
                    connect_concurrency=args.connect_concurrency,
                    kill_after=args.kill_after,
                    kill_node=args.kill_node,
                )
                if args.profile:
                    params.extra["profile_dir"] = str(args.out or RESULTS_DIR)
                params.validate()
                t_start = datetime.now(UTC)
                blocks: list[dict[str, Any]] = []
                notes = []
                v1_only = [n for n in names if not n.startswith("tableside")]
                if is_v2(args.codec) and v1_only:
                    notes.append(
                        f"{' and '.join(v1_only)} speak{'' if len(v1_only) > 1 else 's'} v1 only: run with "
                        f"codec {base_codec} (whole cart_updated frames) while tableside ran with {args.codec} "
                        "(cart_delta frames)"
                    )
                for name in names:
                    if args.wait_quiet > 0:
                        idle, busy = wait_quiet(args.wait_quiet)
                        if not idle:
                            notes.append(
                                f"{name}: the machine was still busy ({busy:.0f}% CPU) when the run started"
                            )
                    blocks.append(run_target(params, started[name], log))
                for tname, tt in started.items():
                    if tname.startswith("tableside") and tt.started:
                        mode = tt.info.get("mode")
                        cluster = (
                            f"; {mode}, {tt.info.get('redis')}, lease TTL {tt.info.get('lease_ttl_s'):g} s, "
                            f"renew every {tt.info.get('renew_interval_s'):g} s"
                            if mode
                            else ""
                        )
                        notes.append(
                            f"{tname} was started by the harness: POS simulator with 0 ms latency, rate limits "
                            f"raised, log level {args.server_log_level}, database {tt.info.get('database')}{cluster}"
                        )
                doc = build_document(params, blocks, t_start, notes)
                json_path, md_path = write_result(doc, args.out)
                written.append(json_path)
                if log:
                    print(md_path.read_text(), file=sys.stdout, flush=True)
                    print(f"[bench] wrote {json_path} and {md_path.name}", file=log, flush=True)
    except (RunError, tg.TargetError, ValueError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    finally:
        for t in started.values():
            t.stop()
    if args.plot and written:
        from bench.plot import plot_all

        made = plot_all([(load(p), p) for p in written], PLOTS_DIR)
        for p in made:
            print(f"[bench] plot {p}", file=sys.stderr)
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from bench.plot import plot_all
    from bench.report import PLOTS_DIR, RESULTS_DIR, load

    paths = args.results or sorted(RESULTS_DIR.glob("*.json"))
    if not paths:
        print("bench: no result files", file=sys.stderr)
        return 1
    made = plot_all([(load(p), p) for p in paths], args.out or PLOTS_DIR)
    for p in made:
        print(p)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from bench.report import PLOTS_DIR, _display, load, render_markdown, update_readme

    sections = []
    plots: list[Path] = []
    for path in args.results:
        doc = load(path)
        sections.append(render_markdown(doc, json_name=_display(path), heading="###"))
        plots += sorted(PLOTS_DIR.glob(f"{path.stem}-*.png"))
    text = "\n".join(sections)
    print(text)
    if args.readme:
        tp = PLOTS_DIR / "cart-throughput.png"
        if tp.exists():
            plots.append(tp)
        update_readme(sections, plots)
    return 0


def cmd_baseline(args: argparse.Namespace) -> int:
    from bench.targets import raise_nofile

    raise_nofile()
    if args.kind == "raw":
        from bench.baselines.raw_server import serve as serve_raw

        coro = serve_raw(args.host, args.port, nodelay=not args.no_nodelay)
    else:
        from bench.baselines.socketio_server import serve as serve_sio

        coro = serve_sio(args.host, args.port, codec=args.codec)
    if args.uvloop:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(coro)
    else:
        asyncio.run(coro)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.cmd == "run":
        return cmd_run(args, args.scenario)
    if args.cmd == "compare":
        return cmd_run(args, "cart")
    if args.cmd == "plot":
        return cmd_plot(args)
    if args.cmd == "report":
        return cmd_report(args)
    if args.cmd == "baseline":
        return cmd_baseline(args)
    return 2  # pragma: no cover
