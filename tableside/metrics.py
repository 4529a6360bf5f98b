"""Prometheus metrics (prometheus-client), one registry per process, exposed at ``GET /metrics``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.connections = Gauge("tableside_ws_connections", "Open guest websocket connections", registry=r)
        self.active_actors = Gauge("tableside_active_table_actors", "Table actors in memory", registry=r)
        self.messages = Counter("tableside_ws_messages_total", "Client messages received", ["type"], registry=r)
        self.errors = Counter("tableside_errors_total", "Error replies sent", ["code"], registry=r)
        self.duplicate_requests = Counter(
            "tableside_duplicate_requests_total", "Resent request ids answered from memory", registry=r
        )
        # Cluster (docs/cluster.md).
        self.fenced_writes = Counter(
            "tableside_fenced_writes_total",
            "Writes of a stale owner refused because a newer activation took the group's epoch",
            registry=r,
        )
        self.forwarded = Counter(
            "tableside_forwarded_messages_total", "Inter-node messages sent, by kind", ["kind"], registry=r
        )
        self.relayed_frames = Counter(
            "tableside_relayed_frames_total", "Frames from an owner relayed to this node's sockets", registry=r
        )
        self.relay_gaps = Counter(
            "tableside_relay_gaps_total", "Gaps seen in an owner's relayed stream (a resync was asked)", registry=r
        )
        self.leases_lost = Counter(
            "tableside_leases_lost_total", "Groups deactivated because their lease went to another node", registry=r
        )
        self.takeovers = Counter(
            "tableside_lease_takeovers_total", "Leases taken from a node whose inbox had no subscriber", registry=r
        )
        self.broadcasts = Counter("tableside_broadcasts_total", "Group broadcasts (encoded once each)", registry=r)
        self.orders = Counter("tableside_orders_total", "Orders settled", ["outcome"], registry=r)
        self.place_order_seconds = Histogram(
            "tableside_place_order_seconds",
            "place_order handling until the intent is committed (POS latency excluded)",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
            registry=r,
        )
        self.commit_batch = Histogram(
            "tableside_commit_batch_size",
            "Group-commit batch sizes",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
            registry=r,
        )
        self.commit_seconds = Histogram(
            "tableside_commit_seconds",
            "Group-commit transaction time",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5),
            registry=r,
        )
        self.joins = Counter("tableside_joins_total", "Successful table joins", registry=r)
        # The accept path (server/listener.py): what the connection caps and descriptor reserve did.
        self.open_connections = Gauge(
            "tableside_http_connections_open", "Accepted TCP connections now open (websockets included)", registry=r
        )
        self.connections_refused = Counter(
            "tableside_connections_refused_total",
            "Connections closed at accept by a cap",
            ["reason"],  # per_ip | total | reserve
            registry=r,
        )
        self.accept_pauses = Counter(
            "tableside_accept_pauses_total", "Accept pauses because the process ran out of descriptors", registry=r
        )


METRICS = Metrics()
