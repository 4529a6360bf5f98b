"""docs/till.md on several nodes: a change made through one node reaches the user's staff sockets on every
node (``till_event`` on the Redis broadcast channel)."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from tests.client import staff_socket, t
from tests.cluster.harness import ADMIN, Cluster, RedisChild
from tests.procs import Proc


def call(cluster: Cluster, node: str, method: str, path: str, body: Any = None, *, token: str | None = None,
         till: str | None = None, if_match: int | None = None) -> Any:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if till:
        headers["X-Till-Id"] = till
    if if_match is not None:
        headers["If-Match"] = str(if_match)
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(cluster.nodes[node].live.base + path, data=data, headers=headers, method=method)
    with urllib.request.urlopen(req, timeout=t(10)) as resp:
        return json.loads(resp.read())


async def test_a_till_socket_on_one_node_sees_edits_made_through_another(
    cluster_db: str, redis_child: RedisChild, pos_sim: Proc
) -> None:
    cluster = Cluster(cluster_db, redis_child, pos_sim.base, names=("a", "b"))
    cluster.start_all()
    try:
        token = call(cluster, "a", "POST", "/api/staff/login", {"username": "admin", "password": ADMIN}, till="A")["token"]
        sock = await staff_socket(cluster.nodes["a"].live.ws, token, "A")
        session = call(cluster, "b", "POST", "/api/order-sessions", {"items": [{"menu_item_id": "gyoza", "qty": 1}]},
                       token=token, till="A")
        created = await sock.wait_type("order_session_updated", timeout=5)
        assert created["session"] == session
        edited = call(cluster, "b", "PUT", f"/api/order-sessions/{session['id']}",
                      {"items": [{"menu_item_id": "mochi", "qty": 2}]}, token=token, till="A", if_match=1)
        seen = await sock.wait_for(
            lambda m: m.get("type") == "order_session_updated" and m["session"]["revision"] == 2, timeout=1)
        assert seen["session"] == edited
        taken = call(cluster, "b", "POST", f"/api/order-sessions/{session['id']}/take-over", token=token, till="B")
        moved = await sock.wait_type("session_moved", timeout=1)
        assert moved == {"type": "session_moved", "session_id": session["id"], "till_id": "B"}
        assert taken["till_id"] == "B"
        await sock.close()
    finally:
        cluster.stop_all()
