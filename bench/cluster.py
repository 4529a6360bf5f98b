"""Multi-node runs, parent side: which node serves each member, which node owns each table, who is
owner-local and who is forwarded, which node to kill, and the takeover figures.

The pure functions (``owner_local``, ``split_counts``, ``pick_victim``, ``affected_members``, ``takeover``,
``extra_latency``) are unit-tested; the others talk to the nodes (``/api/staff/board``, ``/healthz``) or
read the kernel's socket table (psutil) to find which of several processes on one port accepted a
websocket."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import psutil

from bench.targets import Target, TargetError, http_json

Placement = tuple[str, str, tuple[str, int] | None]  # member name, endpoint URL, client socket address


# -- talking to the nodes ---------------------------------------------------------------------------------
def staff_token(target: Target, url: str | None = None) -> str:
    status, data = http_json(
        "POST",
        (url or target.url) + "/api/staff/login",
        {"username": "admin", "password": target.admin_password},
    )
    if status != 200 or not isinstance(data, dict) or "token" not in data:
        raise TargetError(f"staff login failed: {status} {data!r}"[:300])
    return str(data["token"])


def board_owners(target: Target, urls: list[str] | None = None) -> dict[str, str | None]:
    """table id -> ``owner_node`` from ``/api/staff/board`` (asked at the first URL that answers)."""
    last: Any = None
    for url in urls or target.urls:
        try:
            token = staff_token(target, url)
            status, rows = http_json("GET", url + "/api/staff/board", token=token, timeout=30)
        except (OSError, TargetError) as exc:
            last = exc
            continue
        if status == 200 and isinstance(rows, list):
            return {
                str(r.get("table_id")): (str(r["owner_node"]) if r.get("owner_node") else None)
                for r in rows
                if isinstance(r, dict)
            }
        last = (status, rows)
    raise TargetError(f"GET /api/staff/board failed on every node: {last!r}"[:300])


def node_ids_by_url(urls: list[str]) -> dict[str, str]:
    """URL -> the node id its ``/healthz`` reports."""
    out: dict[str, str] = {}
    for url in urls:
        status, data = http_json("GET", url + "/healthz", timeout=5)
        if status == 200 and isinstance(data, dict) and data.get("node_id"):
            out[url] = str(data["node_id"])
    return out


def server_pid_by_client(port: int) -> dict[tuple[str, int], int]:
    """Established server-side sockets on ``port``: client address -> pid of the process holding them."""
    out: dict[tuple[str, int], int] = {}
    for conn in psutil.net_connections(kind="tcp"):
        if conn.pid and conn.laddr and conn.raddr and conn.laddr.port == port:
            out[(str(conn.raddr.ip), int(conn.raddr.port))] = int(conn.pid)
    return out


def member_nodes(target: Target, placements: Iterable[Placement]) -> dict[str, str | None]:
    """member name -> node id serving its websocket."""
    placements = list(placements)
    by_url = {u: n for n, u in (target.info.get("node_urls") or {}).items()}
    if len(set(by_url.values())) > 1 or len(target.urls) > 1:  # one node per URL
        if not by_url:
            by_url = node_ids_by_url(target.urls)
        return {name: by_url.get(url.rstrip("/")) for name, url, _ in placements}
    # several processes on one port: ask the kernel who holds the server end of each socket
    node_by_pid = {int(pid): node for pid, node in (target.info.get("node_ids") or {}).items()}
    port = urlsplit(target.url).port or 80
    holders = server_pid_by_client(port)
    out: dict[str, str | None] = {}
    for name, _url, sock in placements:
        pid = holders.get(sock) if sock else None
        out[name] = node_by_pid.get(pid) if pid is not None else None
    return out


# -- pure logic ----------------------------------------------------------------------------------------------
def owner_local(nodes: Mapping[str, str | None], owners: Mapping[str, str | None]) -> dict[str, bool]:
    """member name ("table/index") -> whether its node owns its table; members whose node or table owner
    is unknown are left out."""
    out: dict[str, bool] = {}
    for name, node in nodes.items():
        owner = owners.get(name.rsplit("/", 1)[0])
        if node is not None and owner is not None:
            out[name] = node == owner
    return out


def split_counts(local: Mapping[str, bool], members: int) -> dict[str, int]:
    n_local = sum(1 for v in local.values() if v)
    return {"owner_local": n_local, "forwarded": len(local) - n_local, "unknown": members - len(local)}


def pick_victim(owners: Mapping[str, str | None], nodes: list[str]) -> tuple[str, int]:
    """The node owning the most tables (ties: the first in ``nodes``) and how many it owns."""
    counts = Counter(o for o in owners.values() if o is not None)
    best = max(nodes, key=lambda n: (counts.get(n, 0), -nodes.index(n)))
    return best, counts.get(best, 0)


def affected_members(
    names: Iterable[str], nodes: Mapping[str, str | None], owners: Mapping[str, str | None], victim: str
) -> set[str]:
    """Members who lose service when ``victim`` dies: connected to it, or their table is owned by it."""
    out = set()
    for name in names:
        if nodes.get(name) == victim or owners.get(name.rsplit("/", 1)[0]) == victim:
            out.add(name)
    return out


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def takeover(first_ack: Mapping[str, float], kill_time: float, affected: Iterable[str]) -> dict[str, Any]:
    """Per affected member: kill -> its first ack received after the kill. Members never acked again are
    counted, not timed."""
    affected = sorted(set(affected))
    times = [first_ack[n] - kill_time for n in affected if n in first_ack and first_ack[n] >= kill_time]
    never = len(affected) - len(times)

    def ms(v: float | None) -> float | None:
        return round(v * 1000, 1) if v is not None else None

    return {
        "members": len(affected),
        "acked_again": len(times),
        "never_acked_again": never,
        "p50_ms": ms(percentile(times, 50)),
        "p99_ms": ms(percentile(times, 99)),
        "max_ms": ms(max(times) if times else None),
    }


def extra_latency(local: Mapping[str, Any], forwarded: Mapping[str, Any]) -> dict[str, float]:
    """Forwarded minus owner-local ack latency at p50 / p99 (ms), from two histogram summaries."""
    out: dict[str, float] = {}
    for p in ("p50_ms", "p99_ms"):
        a, b = local.get(p), forwarded.get(p)
        if a is not None and b is not None and local.get("count") and forwarded.get("count"):
            out[p] = round(float(b) - float(a), 3)
    return out
