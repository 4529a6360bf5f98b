"""A capacity model of a tableside cluster: what each shared part (Redis, Postgres, the per-restaurant
counters) must carry for a given deployment, and which one saturates first. docs/cluster.md quotes it.

    python -m bench.capacity                      # the table in docs/cluster.md
    python -m bench.capacity --nodes 20 --restaurants 5000

The per-part budgets are deliberately round, conservative figures for one commodity server (stated in
``Budgets``); the per-node figures are what ``python -m bench`` measures on this 2-core machine."""

from __future__ import annotations

import argparse
from dataclasses import dataclass


@dataclass(frozen=True)
class Deployment:
    restaurants: int = 1_000
    tables_per_restaurant: int = 30
    occupied_share: float = 0.5  # at the dinner peak
    phones_per_table: float = 4.0
    ops_per_phone_per_min: float = 6.0  # cart edits while choosing
    orders_per_table_per_hour: float = 3.0
    nodes: int = 10
    snapshot_bytes: float = 9_600  # one group snapshot written per change (measured; issue 14 replaces it)


@dataclass(frozen=True)
class Budgets:
    redis_msgs_per_s: float = 150_000  # PUBLISH/EVAL of small payloads, one Redis core
    pg_commits_per_s: float = 8_000  # group-commit transactions per second, one primary
    pg_wal_mb_per_s: float = 60  # sustained WAL a single primary writes and ships comfortably
    node_ops_per_s: float = 1_650  # durable cart ops/s one node saturates at (bench, this machine)
    counter_intents_per_s: float = 500  # per restaurant: the counter row is held ~2 ms per intent


def load(d: Deployment) -> dict[str, float]:
    groups = d.restaurants * d.tables_per_restaurant * d.occupied_share
    phones = groups * d.phones_per_table
    ops = phones * d.ops_per_phone_per_min / 60
    intents = groups * d.orders_per_table_per_hour / 3600
    n = d.nodes
    forwarded_share = (n - 1) / n  # a load balancer with no stickiness: the owner is one node of n
    # Nodes other than the owner that hold at least one member of a group (each change is relayed to each,
    # once per node: Outbox folds the members of a node into one message).
    other_nodes = (n - 1) * (1 - (1 - 1 / n) ** d.phones_per_table)
    changes = ops + 3 * intents  # an order: intent, lock broadcast, confirmation
    redis = (
        ops * forwarded_share * 2  # the member's message to the owner, its ack back
        + changes * other_nodes  # relayed broadcasts
        + groups / 1.0  # lease renewals, one key per group per second
        + intents * n  # kitchen wake on the broadcast channel reaches every node
    )
    return {
        "active groups": groups,
        "phones (websockets)": phones,
        "cart ops/s": ops,
        "orders/s": intents,
        "per node ops/s": ops / n,
        "redis msgs/s": redis,
        "pg writes/s": changes,
        "pg WAL MB/s": changes * d.snapshot_bytes / 1e6,
        "busiest counter intents/s": d.tables_per_restaurant * d.occupied_share * d.orders_per_table_per_hour / 3600,
    }


def headroom(d: Deployment, b: Budgets) -> dict[str, float]:
    """How many times the deployment's load fits in each part's budget (< 1: saturated)."""
    figures = load(d)
    return {
        "nodes (CPU)": b.node_ops_per_s / figures["per node ops/s"],
        "redis": b.redis_msgs_per_s / figures["redis msgs/s"],
        "postgres commits": b.pg_commits_per_s * 25 / figures["pg writes/s"],  # ~25 writes per batch at load
        "postgres WAL": b.pg_wal_mb_per_s / figures["pg WAL MB/s"],
        "order counter": b.counter_intents_per_s / figures["busiest counter intents/s"],
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=10)
    p.add_argument("--restaurants", type=int, nargs="*", default=[100, 1_000, 5_000, 20_000])
    p.add_argument("--detail", action="store_true", help="headroom of every part, per deployment size")
    args = p.parse_args(argv)
    budgets = Budgets()
    if args.detail:
        parts = list(headroom(Deployment(), budgets))
        print("| restaurants | " + " | ".join(parts) + " |")
        print("|---|" + "---|" * len(parts))
        for r in args.restaurants:
            room = headroom(Deployment(restaurants=r, nodes=args.nodes), budgets)
            print(f"| {r:,} | " + " | ".join(f"{room[k]:.2f}x" for k in parts) + " |")
        return
    print("| restaurants | groups | phones | cart ops/s | Redis msgs/s | PG WAL MB/s | first to saturate (headroom x) |")
    print("|---|---|---|---|---|---|---|")
    for r in args.restaurants:
        d = Deployment(restaurants=r, nodes=args.nodes)
        f = load(d)
        room = headroom(d, budgets)
        first = min(room, key=lambda k: room[k])
        print(
            f"| {r:,} | {f['active groups']:,.0f} | {f['phones (websockets)']:,.0f} | {f['cart ops/s']:,.0f} "
            f"| {f['redis msgs/s']:,.0f} | {f['pg WAL MB/s']:.1f} | {first} ({room[first]:.2f}) |"
        )


if __name__ == "__main__":
    main()
