"""Promises of docs/staff-kitchen-api.md that had no test failing when they broke (issue 9): the kitchen
cursor API, ticket status skips / no-ops / recall, roles per endpoint with the error code, session expiry
on the injected clock, logout and deactivation, table admin, 86 reaching every cart, /healthz and /metrics.

See tests/README.md for the promise -> test table."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest
import tornado.httpclient
import tornado.websocket
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tableside import logs
from tableside.clock import FakeClock
from tableside.server.app import bootstrap_staff
from tableside.server.services import KeyedRateLimiter
from tableside.server.ws import GuestSocket
from tableside.storage.interface import StaffRole
from tableside.web import WEB_DIR
from tests.client import WsClient, eventually, t
from tests.integration.conftest import ADMIN_PASSWORD, Harness, start_on_clock
from tests.integration.test_staff_kitchen import kitchen_screen, order_something


async def add_staff(h: Harness, role: StaffRole) -> str:
    name = f"{role.value}-user"
    await h.running.services.staff_auth.set_user(name, role, f"{role.value}-pass-1")
    return await h.staff_token(name, f"{role.value}-pass-1")


# -- kitchen cursor API -------------------------------------------------------------------------------


async def test_kitchen_tickets_since_returns_the_confirmed_orders_after_the_cursor(harness: Harness) -> None:
    admin = await harness.staff_token()
    code, body = await harness.http("GET", "/api/kitchen/tickets?since=0", token=admin)
    assert code == 200 and body == {"tickets": []}
    ids = [(await order_something(harness, table))[2] for table in ("T001", "T002", "T003")]
    code, body = await harness.http("GET", "/api/kitchen/tickets?since=0", token=admin)
    assert code == 200
    tickets = body["tickets"]
    assert [t["order_id"] for t in tickets] == ids  # every confirmed order, in seq order
    seqs = [t["seq"] for t in tickets]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    first = tickets[0]
    assert {"order_id", "order_number", "table_id", "items", "special_instructions", "placed_at", "seq",
            "status"} <= set(first)
    assert first["table_id"] == "T001" and first["status"] == "new" and first["items"]
    # seq > N, not >= N
    code, body = await harness.http("GET", f"/api/kitchen/tickets?since={seqs[0]}", token=admin)
    assert [t["order_id"] for t in body["tickets"]] == ids[1:]
    code, body = await harness.http("GET", f"/api/kitchen/tickets?since={seqs[-1]}", token=admin)
    assert code == 200 and body["tickets"] == []
    # no `since` means from the start
    code, body = await harness.http("GET", "/api/kitchen/tickets", token=admin)
    assert [t["order_id"] for t in body["tickets"]] == ids
    code, body = await harness.http("GET", "/api/kitchen/tickets?since=abc", token=admin)
    assert code == 400 and body["error"] == "bad_request"


# -- ticket statuses -----------------------------------------------------------------------------------


async def test_ticket_status_skips_forward_noops_and_recalls_one_step(harness: Harness) -> None:
    admin = await harness.staff_token()
    screen = await kitchen_screen(harness, admin)
    _, phone, oid = await order_something(harness)
    placed = await screen.wait_type("order_placed", order_id=oid)
    path = f"/api/kitchen/orders/{oid}/status"

    async def set_status(status: str) -> tuple[int, Any]:
        return await harness.http("POST", path, {"status": status}, token=admin)

    assert await set_status("ready") == (200, {"order_id": oid, "status": "ready"})  # new -> ready: a skip
    assert await set_status("ready") == (200, {"order_id": oid, "status": "ready"})  # same status: a no-op
    assert await set_status("recall") == (200, {"order_id": oid, "status": "preparing"})  # one step back
    code, body = await set_status("new")  # going back other than by recall
    assert code == 409 and body["error"] == "invalid_transition"
    assert await set_status("recall") == (200, {"order_id": oid, "status": "new"})
    code, body = await set_status("recall")  # nothing before `new`
    assert code == 409 and body["error"] == "invalid_transition"
    code, body = await set_status("cooking")
    assert code == 409 and body["error"] == "invalid_transition"
    code, body = await harness.http("POST", "/api/kitchen/orders/ORD-9-999/status", {"status": "ready"}, token=admin)
    assert code == 404 and body["error"] == "not_found"
    # Over the websocket: the ack carries the ticket's seq and the status it now has.
    ack = await screen.request({"type": "set_status", "order_id": oid, "status": "served"})
    assert (ack["type"], ack["revision"], ack["status"]) == ("ack", placed["seq"], "served")
    ack = await screen.request({"type": "set_status", "order_id": oid, "status": "served"})
    assert (ack["type"], ack["revision"], ack["status"]) == ("ack", placed["seq"], "served")
    ack = await screen.request({"type": "set_status", "order_id": oid, "status": "recall"})
    assert (ack["type"], ack["revision"], ack["status"]) == ("ack", placed["seq"], "ready")
    # Every change (and only a change: not the no-ops) reached the phone and the screen, in order.
    expected = ["ready", "preparing", "new", "served", "ready"]
    for client in (phone, screen):
        await eventually(lambda c=client: len(c.of_type("order_status")) >= len(expected), what="order_status")
        got = [m["status"] for m in client.of_type("order_status") if m["order_id"] == oid]
        assert got == expected, (client is phone, got)


async def test_kitchen_snapshot_holds_open_tickets_only(harness: Harness) -> None:
    admin = await harness.staff_token()
    _, _, served = await order_something(harness, "T001")
    _, _, still_open = await order_something(harness, "T002")
    code, _ = await harness.http("POST", f"/api/kitchen/orders/{served}/status", {"status": "served"}, token=admin)
    assert code == 200
    screen = await kitchen_screen(harness, admin)
    snapshot = screen.of_type("kitchen_snapshot")[0]
    assert [t["order_id"] for t in snapshot["tickets"]] == [still_open]
    ticket = snapshot["tickets"][0]
    assert ticket["status"] == "new" and snapshot["cursor"] == ticket["seq"]
    pong = await screen.request({"type": "ping"})
    assert pong["type"] == "pong"
    # The cursor API lists confirmed orders whatever their kitchen status (served ones too).
    code, body = await harness.http("GET", "/api/kitchen/tickets?since=0", token=admin)
    assert [(t["order_id"], t["status"]) for t in body["tickets"]] == [(served, "served"), (still_open, "new")]


# -- roles ---------------------------------------------------------------------------------------------

MANAGER, SERVER, KITCHEN = StaffRole.MANAGER, StaffRole.SERVER, StaffRole.KITCHEN
ANY = (MANAGER, SERVER, KITCHEN)
# (method, path, body, roles the doc allows besides admin). Allowed calls aim at things that do not exist
# (or already exist) so they pass the role check without changing anything.
ENDPOINTS: list[tuple[str, str, Any, tuple[StaffRole, ...]]] = [
    ("GET", "/api/staff/tables", None, (MANAGER, SERVER)),
    ("GET", "/api/staff/board", None, ANY),
    ("POST", "/api/staff/tables/NOPE/checkout", None, (MANAGER, SERVER)),
    ("POST", "/api/staff/tables/NOPE/reset", None, (MANAGER, SERVER)),
    ("POST", "/api/staff/tables", {"table_id": "T001"}, (MANAGER,)),
    ("DELETE", "/api/staff/tables/NOPE", None, (MANAGER,)),
    ("POST", "/api/staff/tables/NOPE/rename", {"name": "x"}, (MANAGER,)),
    ("POST", "/api/staff/tables/NOPE/rotate-qr", None, (MANAGER,)),
    ("GET", "/staff/qr-sheet", None, (MANAGER, SERVER)),
    ("GET", "/api/staff/menu", None, ANY),
    ("POST", "/api/staff/menu/nope/availability", {"available": False}, (MANAGER, KITCHEN)),
    ("GET", "/api/kitchen/tickets?since=0", None, (KITCHEN, MANAGER)),
    ("POST", "/api/kitchen/orders/ORD-9-9/status", {"status": "ready"}, (KITCHEN, MANAGER)),
]


async def test_each_endpoint_admits_its_roles_and_refuses_others_with_forbidden(harness: Harness) -> None:
    tokens = {role: await add_staff(harness, role) for role in StaffRole}
    wrong = []
    for method, path, body, roles in ENDPOINTS:
        code, answer = await harness.http(method, path, body)  # no token at all
        if (code, answer.get("error")) != (401, "unauthorized"):
            wrong.append((method, path, "anonymous", code, answer))
        for role, token in tokens.items():
            code, answer = await harness.http(method, path, body, token=token)
            if role == StaffRole.ADMIN or role in roles:
                if code in (401, 403):
                    wrong.append((method, path, role.value, code, answer))
            elif code != 403 or not isinstance(answer, dict) or answer.get("error") != "forbidden":
                wrong.append((method, path, role.value, code, answer))
    # The kitchen websocket: kitchen and manager (and admin).
    for role, token in tokens.items():
        try:
            screen = await kitchen_screen(harness, token)
            await screen.close()
            code = 101
        except tornado.httpclient.HTTPClientError as err:
            code = err.code
        if (code == 101) != (role in (StaffRole.ADMIN, KITCHEN, MANAGER)) or code not in (101, 403):
            wrong.append(("GET", "/ws/kitchen", role.value, code, None))
    assert not wrong, wrong


# -- sessions: expiry on the injected clock, logout, deactivation ------------------------------------------


@pytest.fixture
async def fake_clock_harness(database_url: str) -> AsyncIterator[tuple[Harness, FakeClock]]:
    clock = FakeClock()
    h = await start_on_clock(database_url, clock)
    running = h.running
    running.services.keepalive.timeout_s = 1e9  # hours pass on the fake clock; the sockets are alive
    yield h, clock
    await running.stop()


async def test_staff_sessions_expire_after_staff_ttl_hours(fake_clock_harness: tuple[Harness, FakeClock]) -> None:
    h, clock = fake_clock_harness
    ttl = h.running.services.settings.tokens.staff_ttl_hours * 3600
    assert ttl == 12 * 3600  # the documented default
    token = await h.staff_token()
    await clock.advance(ttl - 60)
    assert (await h.http("GET", "/api/staff/board", token=token))[0] == 200
    await clock.advance(120)
    code, body = await h.http("GET", "/api/staff/board", token=token)
    assert code == 401 and body["error"] == "unauthorized"
    try:
        await kitchen_screen(h, token)
        raise AssertionError("an expired session must not open a kitchen screen")
    except tornado.httpclient.HTTPClientError as err:
        assert err.code == 401
    code, body = await h.http("POST", "/api/staff/logout", token=token)  # logout of an expired one: 204
    assert code == 204 and body is None


async def test_deactivated_user_loses_their_sessions(harness: Harness) -> None:
    token = await add_staff(harness, StaffRole.SERVER)
    store = harness.running.services.store
    user = await store.get_staff("server-user")
    assert user is not None
    await store.upsert_staff(dataclasses.replace(user, active=False))
    code, body = await harness.http("GET", "/api/staff/board", token=token)
    assert code == 401 and body["error"] == "unauthorized"


async def test_logout_closes_the_open_kitchen_socket_and_it_cannot_reconnect(harness: Harness) -> None:
    kim = await add_staff(harness, StaffRole.KITCHEN)
    screen = await kitchen_screen(harness, kim)
    assert (await screen.request({"type": "ping"}))["type"] == "pong"
    code, _ = await harness.http("POST", "/api/staff/logout", token=kim)
    assert code == 204
    assert (await harness.http("GET", "/api/kitchen/tickets", token=kim))[0] == 401  # at once
    # The open screen was opened with that session: it is told and closed at once (4001) ...
    await screen.wait_type("session_closed", reason="logged_out")
    await asyncio.wait_for(screen.closed.wait(), t(5))
    assert screen.close_code == 4001
    # ... and its next connection needs a valid token.
    try:
        await kitchen_screen(harness, kim)
        raise AssertionError("a logged-out token must not open a kitchen screen")
    except tornado.httpclient.HTTPClientError as err:
        assert err.code == 401


# -- table admin ---------------------------------------------------------------------------------------


async def test_table_admin_create_rename_delete_rotate(harness: Harness) -> None:
    mgr = await add_staff(harness, StaffRole.MANAGER)
    code, table = await harness.http("POST", "/api/staff/tables", {"table_id": "P1", "name": "Patio 1"}, token=mgr)
    assert code == 201
    assert (table["table_id"], table["name"], table["status"], table["group_id"]) == ("P1", "Patio 1", "vacant", None)
    secret = await harness.qr_secret("P1")
    assert table["join_url"].endswith(f"/q/P1/{secret}")
    code, _ = await harness.http("POST", "/api/staff/tables", {"table_id": "P2"}, token=mgr)
    assert code == 201
    others = {await harness.qr_secret(t) for t in ("T001", "T002", "T003", "T004", "P2")}
    assert secret not in others and len(secret) >= 16  # fresh: its own, unguessable
    code, body = await harness.http("POST", "/api/staff/tables", {"table_id": "P1"}, token=mgr)
    assert code == 409
    code, table = await harness.http("POST", "/api/staff/tables/P1/rename", {"name": "Patio One"}, token=mgr)
    assert code == 200 and table["name"] == "Patio One"
    code, tables = await harness.http("GET", "/api/staff/tables", token=mgr)
    assert {t["table_id"]: t["name"] for t in tables}["P1"] == "Patio One"
    # Rotate: the printed code (the /q/ link) and the API join with the old secret get 403 at once.
    joined = await harness.join("P1")
    code, table = await harness.http("POST", "/api/staff/tables/P1/rotate-qr", token=mgr)
    new_secret = await harness.qr_secret("P1")
    assert code == 200 and new_secret != secret and table["join_url"].endswith(f"/q/P1/{new_secret}")
    client = tornado.httpclient.AsyncHTTPClient()
    resp = await client.fetch(f"{harness.base}/q/P1/{secret}", follow_redirects=False, raise_error=False)
    assert resp.code == 403
    code, body = await harness.http("POST", "/api/join", {"table_id": "P1", "qr": secret})
    assert code == 403 and body["error"] == "forbidden"
    resp = await client.fetch(f"{harness.base}/q/P1/{new_secret}", follow_redirects=False, raise_error=False)
    assert resp.code == 303
    # Delete: refused while occupied, then gone.
    code, body = await harness.http("DELETE", "/api/staff/tables/P1", token=mgr)
    assert code == 409
    code, _ = await harness.http("POST", "/api/staff/tables/P1/checkout", token=mgr)
    assert code == 200
    code, _ = await harness.http("DELETE", "/api/staff/tables/P1", token=mgr)
    assert code == 200
    assert await harness.running.services.store.get_table("P1") is None
    code, _ = await harness.http("POST", "/api/join", {"table_id": "P1", "qr": new_secret})
    assert code == 404
    code, _ = await harness.http("GET", "/api/cart", token=joined["token"])
    assert code == 401


async def test_checkout_needs_an_occupied_table_and_board_has_its_fields(harness: Harness) -> None:
    sam = await add_staff(harness, StaffRole.SERVER)
    code, body = await harness.http("POST", "/api/staff/tables/T001/checkout", token=sam)
    assert code == 409 and body["error"] == "invalid_transition"
    _, phone = await harness.member("T001")
    await phone.request({"type": "add_item", "menu_item_id": "gyoza", "qty": 2})
    code, board = await harness.http("GET", "/api/staff/board", token=sam)
    row = {r["table_id"]: r for r in board}["T001"]
    assert set(row) == {"table_id", "name", "status", "group_id", "join_url", "members_online", "cart_total",
                        "pending_order_id", "order_processing_status", "owner_node", "store_id"}
    assert row["store_id"] == 1
    assert row["owner_node"] == harness.running.services.settings.node_id  # its actor runs on this node
    assert row["members_online"] == 1 and row["cart_total"] > 0 and row["pending_order_id"] is None
    assert row["order_processing_status"] == "idle"
    code, tables = await harness.http("GET", "/api/staff/tables", token=sam)
    assert set(tables[0]) == {"table_id", "name", "status", "group_id", "join_url", "store_id"}
    code, table = await harness.http("POST", "/api/staff/tables/T001/checkout", token=sam)
    assert code == 200 and table["status"] == "paid"
    code, body = await harness.http("POST", "/api/staff/tables/T001/checkout", token=sam)  # paid: not occupied
    assert code == 409 and body["error"] == "invalid_transition"


# -- menu ----------------------------------------------------------------------------------------------


async def test_eighty_six_reaches_every_cart_holding_the_item(harness: Harness) -> None:
    kim = await add_staff(harness, StaffRole.KITCHEN)
    phones = []
    for table in ("T001", "T002"):
        _, phone = await harness.member(table)
        await phone.request({"type": "add_item", "menu_item_id": "gyoza", "qty": 1})
        await phone.request({"type": "add_item", "menu_item_id": "karaage", "qty": 1})
        phones.append(phone)
    code, _ = await harness.http("POST", "/api/staff/menu/karaage/availability", {"available": False}, token=kim)
    assert code == 200
    for phone in phones:
        update = await phone.wait_for(
            lambda m: m["type"] == "cart_updated" and any(i.get("unavailable") for i in m["cart"]["items"])
        )
        flags = {i["menu_item_id"]: bool(i.get("unavailable")) for i in update["cart"]["items"]}
        assert flags == {"gyoza": False, "karaage": True}
    code, staff_menu = await harness.http("GET", "/api/staff/menu", token=kim)
    code2, guest_menu = await harness.http("GET", "/api/menu")
    assert code == code2 == 200 and staff_menu == guest_menu
    assert {i["menu_item_id"]: i["available"] for i in staff_menu["items"]}["karaage"] is False


# -- /healthz and /metrics -----------------------------------------------------------------------------


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def metrics(h: Harness) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    resp = await tornado.httpclient.AsyncHTTPClient().fetch(f"{h.base}/metrics")
    assert resp.headers["Content-Type"].startswith("text/plain")
    return samples(resp.body.decode())


async def test_healthz_and_metrics_fields(harness: Harness) -> None:
    node = harness.running.services.settings.node_id
    code, health = await harness.http("GET", "/healthz")
    assert code == 200 and health == {"status": "ok", "node_id": node, "actors": 0, "redis": "off", "active_tables": 0}
    before = await metrics(harness)
    _, phone = await harness.member("T001")
    code, health = await harness.http("GET", "/healthz")
    assert health == {"status": "ok", "node_id": node, "actors": 1, "redis": "off", "active_tables": 1}
    await phone.request({"type": "add_item", "menu_item_id": "gyoza", "qty": 1})
    await phone.request({"type": "add_item", "menu_item_id": "no-such-item", "qty": 1})
    placed = await phone.request({"type": "place_order"})
    await phone.wait_type("order_confirmed", order_id=placed["order_id"])
    await phone.send_raw("{not json")  # refused by the socket itself, before any actor
    assert (await phone.wait_type("error", code="bad_request"))["code"] == "bad_request"
    during = await metrics(harness)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return during.get(key, 0.0) - before.get(key, 0.0)

    assert delta("tableside_ws_connections") == 1
    assert delta("tableside_active_table_actors") == 1
    assert delta("tableside_joins_total") == 1
    assert delta("tableside_ws_messages_total", type="AddItem") == 2
    assert delta("tableside_ws_messages_total", type="PlaceOrder") == 1
    assert delta("tableside_errors_total", code="unknown_item") == 1  # from the actor
    assert delta("tableside_errors_total", code="bad_request") == 1  # from the socket
    assert delta("tableside_orders_total", outcome="confirmed") == 1
    assert delta("tableside_broadcasts_total") >= 2
    assert delta("tableside_commit_batch_size_count") >= 2
    assert delta("tableside_commit_seconds_count") >= 2
    assert delta("tableside_place_order_seconds_count") == 1
    assert ("tableside_duplicate_requests_total", ()) in during
    await phone.close()
    gauge = ("tableside_ws_connections", ())
    await eventually(lambda: samples(generate_latest(harness.running.services.metrics.registry).decode())[gauge]
                     == before[gauge], what="the connection gauge to go back down")


async def test_reset_of_an_occupied_table_ends_its_tokens_at_once(harness: Harness) -> None:
    sam = await add_staff(harness, StaffRole.SERVER)
    joined, phone = await harness.member("T003")
    code, table = await harness.http("POST", "/api/staff/tables/T003/reset", token=sam)
    assert code == 200 and table["status"] == "vacant" and table["group_id"] is None
    assert (await phone.wait_type("session_closed"))["reason"] == "table_reset"
    code, _ = await harness.http("GET", "/api/cart", token=joined["token"])
    assert code == 401
    fresh = await harness.join("T003")
    assert fresh["group_id"] != joined["group_id"]
    assert (await harness.http("GET", "/api/cart", token=joined["token"]))[0] == 401


async def test_login_answers_token_username_and_role(harness: Harness) -> None:
    await harness.running.services.staff_auth.set_user("kim", StaffRole.KITCHEN, "kitchen-pass-1")
    code, body = await harness.http("POST", "/api/staff/login", {"username": "kim", "password": "kitchen-pass-1"})
    assert code == 200 and set(body) == {"token", "username", "role"}
    assert (body["username"], body["role"]) == ("kim", "kitchen") and body["token"]
    code, body = await harness.http("POST", "/api/staff/login", {"username": "kim", "password": "wrong-pass"})
    assert code == 401 and body["error"] == "unauthorized"


async def test_login_throttle_keys_on_the_peer_address_not_forwarded_headers(harness: Harness) -> None:
    for i in range(10):
        code, _ = await harness.http("POST", "/api/staff/login", {"username": "admin", "password": "wrong"},
                                     headers={"X-Real-IP": f"10.0.0.{i}", "X-Forwarded-For": f"10.0.1.{i}"})
        assert code == 401
    code, body = await harness.http("POST", "/api/staff/login", {"username": "admin", "password": ADMIN_PASSWORD},
                                    headers={"X-Real-IP": "10.9.9.9", "X-Forwarded-For": "10.9.9.9"})
    assert code == 429 and body["error"] == "rate_limited"  # xheaders off: every request is 127.0.0.1


def test_access_log_level_follows_the_status(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []

    class Capture:
        def __getattr__(self, level: str) -> Any:
            return lambda event, **fields: seen.append((level, {"event": event, **fields}))

    class Request:
        method, path, query, remote_ip = "GET", "/q/T001/s3cret", "token=abc&since=1", "127.0.0.1"

        def request_time(self) -> float:
            return 0.01

    class Handler:
        request = Request()

        def __init__(self, status: int) -> None:
            self.status = status

        def get_status(self) -> int:
            return self.status

    monkeypatch.setattr(logs, "access_log", Capture())
    for status in (200, 302, 404, 429, 500, 503):
        logs.log_request(Handler(status))  # type: ignore[arg-type]
    assert [level for level, _ in seen] == ["info", "info", "warning", "warning", "error", "warning"]
    line = seen[0][1]
    assert line["event"] == "request" and line["path"] == "/q/T001/[redacted]"
    assert line["query"] == "token=[redacted]&since=1" and line["ip"] == "127.0.0.1"


async def test_admin_password_from_the_settings_is_applied_on_every_start(harness: Harness) -> None:
    services = harness.running.services
    admin = await harness.staff_token()
    await bootstrap_staff(services, demo=False)  # same password again: sessions kept
    assert (await harness.http("GET", "/api/staff/board", token=admin))[0] == 200
    services.settings.admin_password = "a brand new admin password"
    await bootstrap_staff(services, demo=False)  # a start with a new TABLESIDE_ADMIN_PASSWORD
    assert (await harness.http("GET", "/api/staff/board", token=admin))[0] == 401
    assert await harness.staff_token("admin", "a brand new admin password")
    user = await services.store.get_staff("admin")
    assert user is not None and user.password_hash.startswith("$argon2id$")  # argon2id hashes


def test_the_staff_pages_log_out_button_calls_logout() -> None:
    script = (WEB_DIR / "staff.js").read_text(encoding="utf-8")
    handler = script[script.index('$("logout").addEventListener'):]
    handler = handler[: handler.index("\n});")]
    assert '"/api/staff/logout", { method: "POST" }' in handler


async def test_joins_per_ip_and_guest_sockets_per_node_are_bounded(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    services = harness.running.services
    services.join_limiter = KeyedRateLimiter(0.0001, 2)  # joins per client IP: a burst of 2, then refused
    first = await harness.join("T001")
    await harness.join("T002")
    code, body = await harness.http("POST", "/api/join", {"table_id": "T003", "qr": await harness.qr_secret("T003")})
    assert code == 429 and body["error"] == "rate_limited"
    phone = await WsClient.connect(harness.ws_base, first["token"])
    await phone.wait_type("welcome")
    services.settings.limits.max_connections = GuestSocket.open_count  # the node is full now
    try:
        await WsClient.connect(harness.ws_base, first["token"])
        raise AssertionError("a full node must refuse guest sockets")
    except tornado.httpclient.HTTPClientError as err:
        assert err.code == 503


async def test_kitchen_socket_speaks_both_guest_subprotocols(harness: Harness) -> None:
    admin = await harness.staff_token()
    for proto, binary in (("tableside.v1.msgpack", True), ("tableside.v1.json", False)):
        conn = await tornado.websocket.websocket_connect(f"{harness.ws_base}/ws/kitchen?token={admin}",
                                                         subprotocols=[proto])
        assert conn.selected_subprotocol == proto
        first = await conn.read_message()
        assert isinstance(first, bytes) == binary
        screen = WsClient(conn, binary)
        assert (await screen.request({"type": "ping"}))["type"] == "pong"
        await screen.close()
