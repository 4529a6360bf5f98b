"""Issue 8 hardening of the staff side: login throttling by failing source, session revocation,
access logs without secrets, bad characters and oversized bodies, join secrets hidden from kitchen staff.

The server here runs on a ``FakeClock`` and is reached through a second HTTP server on the same app with
``xheaders`` on, so a test can choose the client IP with ``X-Real-IP``."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import struct
from collections.abc import AsyncIterator

import pytest
import structlog
import tornado.httpclient
import tornado.httpserver
import tornado.websocket
from tornado.netutil import bind_sockets

from tableside import logs
from tableside.auth import LoginThrottle
from tableside.clock import FakeClock
from tableside.server.app import make_app
from tableside.storage.interface import StaffRole, StaffUser
from tests.client import WsClient
from tests.integration.conftest import ADMIN_PASSWORD, Harness, start_on_clock

KITCHEN_PASSWORD = "kitchen-pass-1"


class ClockHarness(Harness):
    clock: FakeClock

    async def login(self, username: str, password: str, ip: str) -> tuple[int, object]:
        return await self.http("POST", "/api/staff/login", {"username": username, "password": password},
                               headers={"X-Real-IP": ip})


@pytest.fixture
async def ch(database_url: str) -> AsyncIterator[ClockHarness]:
    clock = FakeClock()
    h = await start_on_clock(database_url, clock, cls=ClockHarness)
    running = h.running
    await running.services.staff_auth.set_user("kitchen", StaffRole.KITCHEN, KITCHEN_PASSWORD)
    # The same app behind a "proxy" that trusts X-Real-IP, so tests can speak from several addresses.
    proxied = tornado.httpserver.HTTPServer(make_app(running.services), xheaders=True)
    sockets = bind_sockets(0, "127.0.0.1")  # port 0: bound here, never picked and released
    proxied.add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    h.base, h.ws_base = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"
    h.clock = clock
    yield h
    proxied.stop()
    await running.stop()


# -- 5. login throttling -------------------------------------------------------------------------------


def test_throttle_counts_failures_per_source_not_per_account() -> None:
    t = LoginThrottle(window_s=300, per_ip=30, per_user_ip=10, per_user=100)
    now = 0.0
    for _ in range(10):
        assert t.begin("kitchen", "6.6.6.6", now) == 0.0  # admitted, then failed (never succeeded)
        now += 1
    for _ in range(50):  # the attacker keeps hammering, one a second
        assert t.begin("kitchen", "6.6.6.6", now) > 0
        now += 1
    # The user, from an address that has not been failing, gets in; a success is not a failure.
    assert t.begin("kitchen", "10.0.0.7", now) == 0.0
    t.succeeded("kitchen", "10.0.0.7", now)
    assert t.begin("kitchen", "10.0.0.7", now) == 0.0
    t.succeeded("kitchen", "10.0.0.7", now)
    # The attacker recovers only when its failures leave the window.
    wait = t.begin("kitchen", "6.6.6.6", now)
    assert 0 < wait <= 300
    assert t.begin("kitchen", "6.6.6.6", now + wait) == 0.0


def test_throttle_per_ip_and_distributed_attack() -> None:
    t = LoginThrottle(window_s=60, per_ip=5, per_user_ip=3, per_user=6, per_user_ip_under_attack=1)
    # One IP guessing many usernames hits the per-IP limit.
    for i in range(5):
        assert t.begin(f"user{i}", "6.6.6.6", 0.0) == 0.0
    assert t.begin("user9", "6.6.6.6", 0.0) > 0
    # Many IPs guessing one username: once it is under attack, each failing IP is refused...
    for i in range(6):
        assert t.begin("kitchen", f"7.0.0.{i}", 1.0) == 0.0
    assert t.begin("kitchen", "7.0.0.1", 1.0) > 0
    # ... but a clean source still gets through.
    assert t.begin("kitchen", "10.0.0.7", 1.0) == 0.0


def test_throttle_counts_an_attempt_as_failed_until_it_succeeds() -> None:
    t = LoginThrottle(window_s=60, per_ip=100, per_user_ip=3, per_user=100)
    # Concurrent guesses: all begin before any has finished; the fourth is refused at once.
    assert [t.begin("kitchen", "6.6.6.6", 0.0) == 0.0 for _ in range(4)] == [True, True, True, False]


def test_throttle_memory_is_bounded() -> None:
    t = LoginThrottle(max_keys=50)
    for i in range(1000):
        t.begin(f"u{i}", f"ip{i}", float(i))
    assert all(len(m) <= 50 for m in (t._by_ip, t._by_user, t._by_user_ip))


async def test_failing_ip_cannot_lock_a_user_out(ch: ClockHarness) -> None:
    codes = []
    for _ in range(40):  # one wrong password a second, well past any per-username budget
        code, body = await ch.login("kitchen", "wrong", "203.0.113.66")
        codes.append(code)
        await ch.clock.advance(1)
    assert codes[:10] == [401] * 10 and set(codes[10:]) == {429}
    code, body = await ch.login("kitchen", "wrong", "203.0.113.66")
    assert code == 429 and isinstance(body, dict) and body["error"] == "rate_limited"
    # The right password from the kitchen tablet's own address works throughout.
    code, body = await ch.login("kitchen", KITCHEN_PASSWORD, "198.51.100.7")
    assert code == 200, body
    # The attacker's address recovers after the window.
    await ch.clock.advance(300)
    code, body = await ch.login("kitchen", "wrong", "203.0.113.66")
    assert code == 401, body


async def test_throttled_answer_says_when_to_retry(ch: ClockHarness) -> None:
    for _ in range(10):
        await ch.login("admin", "wrong", "203.0.113.9")
    resp = await tornado.httpclient.AsyncHTTPClient().fetch(
        f"{ch.base}/api/staff/login", method="POST", raise_error=False,
        body='{"username": "admin", "password": "wrong"}', headers={"X-Real-IP": "203.0.113.9"})
    assert resp.code == 429 and int(resp.headers["Retry-After"]) == 300


# -- 6. session revocation -----------------------------------------------------------------------------


async def test_logout_revokes_the_token_and_is_idempotent(ch: ClockHarness) -> None:
    admin = await ch.staff_token()
    other = await ch.staff_token()
    code, _ = await ch.http("GET", "/api/staff/board", token=admin)
    assert code == 200
    code, body = await ch.http("POST", "/api/staff/logout", token=admin)
    assert code == 204 and body is None
    code, body = await ch.http("GET", "/api/staff/board", token=admin)
    assert code == 401 and body["error"] == "unauthorized"
    code, _ = await ch.http("POST", "/api/staff/logout", token=admin)  # again: still fine
    assert code == 204
    code, _ = await ch.http("POST", "/api/staff/logout")  # no token at all
    assert code == 204
    code, _ = await ch.http("GET", "/api/staff/board", token=other)  # other sessions live on
    assert code == 200


async def test_password_change_and_removal_end_sessions(ch: ClockHarness) -> None:
    auth = ch.running.services.staff_auth
    kim = await ch.staff_token("kitchen", KITCHEN_PASSWORD)
    admin = await ch.staff_token()
    # Setting the same password and role again (the admin password on every start) keeps sessions.
    assert await auth.set_user("admin", StaffRole.ADMIN, ADMIN_PASSWORD) == 0
    assert (await ch.http("GET", "/api/staff/board", token=admin))[0] == 200
    # A new password ends every session of the user, and only theirs.
    assert await auth.set_user("kitchen", StaffRole.KITCHEN, "new-kitchen-pass") == 1
    assert (await ch.http("GET", "/api/staff/board", token=kim))[0] == 401
    assert (await ch.http("GET", "/api/staff/board", token=admin))[0] == 200
    # So does a new role with the same password.
    kim = await ch.staff_token("kitchen", "new-kitchen-pass")
    assert await auth.set_user("kitchen", StaffRole.SERVER, "new-kitchen-pass") == 1
    assert (await ch.http("GET", "/api/staff/board", token=kim))[0] == 401
    # Removing the user ends the rest; re-creating the name does not bring them back.
    kim = await ch.staff_token("kitchen", "new-kitchen-pass")
    assert await auth.remove_user("kitchen") is True
    assert (await ch.http("GET", "/api/staff/board", token=kim))[0] == 401
    await ch.running.services.store.upsert_staff(StaffUser("kitchen", StaffRole.SERVER, "x"))
    assert (await ch.http("GET", "/api/staff/board", token=kim))[0] == 401


async def test_login_racing_a_password_change_gets_no_session(ch: ClockHarness) -> None:
    auth = ch.running.services.staff_auth
    store = ch.running.services.store
    real_create = store.create_staff_session

    async def create_then_change(*args: object, **kwargs: object) -> None:
        await real_create(*args, **kwargs)  # type: ignore[arg-type]
        store.create_staff_session = real_create  # type: ignore[method-assign]
        await auth.set_user("kitchen", StaffRole.KITCHEN, "changed-meanwhile")

    store.create_staff_session = create_then_change  # type: ignore[method-assign]
    assert await auth.login("kitchen", KITCHEN_PASSWORD, ch.clock.now()) is None


# -- 6. no secrets in logs; JSON access lines -------------------------------------------------------------


async def test_refused_secrets_appear_in_no_log_record(ch: ClockHarness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "SECRETtok3n" + "x" * 20
    for path in (f"/staff/qr-sheet?token={secret}", f"/api/kitchen/tickets?since=0&token={secret}",
                 f"/q/T001/{secret}", f"/api/cart?password={secret}&qr={secret}"):
        code, _ = await ch.http("GET", path)
        assert code in (401, 403), path
    for path in (f"/ws/kitchen?token={secret}", f"/ws?token={secret}"):
        with pytest.raises(tornado.httpclient.HTTPClientError) as err:
            await tornado.websocket.websocket_connect(f"{ch.ws_base}{path}")
        assert err.value.code == 401
    code, _ = await ch.http("POST", "/api/staff/login", {"username": "admin", "password": secret})
    assert code == 401
    code, _ = await ch.http("GET", "/api/staff/board", headers={"Authorization": f"Bearer {secret}"})
    assert code == 401
    records = caplog.get_records("call")
    access = [r for r in records if r.name == "tableside.access"]
    assert len(access) >= 8
    for record in records:
        assert secret not in record.getMessage() and secret not in repr(record.__dict__), record.getMessage()
    messages = " ".join(r.getMessage() for r in access)
    assert "/q/T001/[redacted]" in messages and "token=[redacted]" in messages and "since=0" in messages


async def test_access_lines_are_json(ch: ClockHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    logger = structlog.wrap_logger(structlog.PrintLogger(out), processors=logs.processors(json=True))
    monkeypatch.setattr(logs, "access_log", logger)
    await ch.http("GET", "/healthz")
    await ch.http("GET", "/staff/qr-sheet?token=abc&format=pdf")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    ok, refused = lines
    assert ok["event"] == "request" and ok["level"] == "info" and "timestamp" in ok
    assert (ok["method"], ok["path"], ok["status"]) == ("GET", "/healthz", 200)
    assert isinstance(ok["duration_ms"], float) and ok["duration_ms"] >= 0
    assert refused["level"] == "warning" and refused["status"] == 401
    assert refused["path"] == "/staff/qr-sheet" and refused["query"] == "token=[redacted]&format=pdf"


def test_redaction() -> None:
    assert logs.redact_path("/q/T001/abcDEF_123") == "/q/T001/[redacted]"
    assert logs.redact_path("/api/staff/board") == "/api/staff/board"
    assert logs.redact_query("Token=a&since=3&new_password=b&x&qr=") == "Token=[redacted]&since=3&new_password=[redacted]&x&qr=[redacted]"


# -- 7. bad characters, deep nesting and oversized bodies -------------------------------------------------

# Every endpoint that reads a JSON body, with a valid body; and the POST endpoints that ignore theirs.
JSON_ENDPOINTS: dict[str, tuple[str, dict[str, object]]] = {
    "join": ("/api/join", {"table_id": "T001", "qr": "abc"}),
    "login": ("/api/staff/login", {"username": "admin", "password": "pw"}),
    "user_login": ("/api/users/login", {"email": "ann@example.com", "password": "password1"}),
    "add_table": ("/api/staff/tables", {"table_id": "P1", "name": "Patio"}),
    "rename": ("/api/staff/tables/T001/rename", {"name": "Window"}),
    "availability": ("/api/staff/menu/gyoza/availability", {"available": True, "note": "x"}),
    "kitchen_status": ("/api/kitchen/orders/ORD-1-1/status", {"status": "ready"}),
}
BODYLESS_POSTS = ["/api/staff/tables/T001/checkout", "/api/staff/tables/T001/reset",
                  "/api/staff/tables/T001/rotate-qr", "/api/staff/logout", "/api/users/logout"]


def bad_bodies(valid: dict[str, object]) -> dict[str, str]:
    """Raw JSON bodies (``json.dumps`` writes NUL and lone surrogates as \\u escapes, as an attacker would)."""
    out: dict[str, str] = {}
    for field in valid:
        out[f"nul in {field}"] = json.dumps({**valid, field: "a\u0000b"})
        out[f"surrogate in {field}"] = json.dumps({**valid, field: "\ud800"})
        out[f"low surrogate in {field}"] = json.dumps({**valid, field: "x\udfffy"})
        out[f"nesting 10000 in {field}"] = json.dumps(valid)[:-1] + f', "{field}x": ' + "[" * 10000
        out[f"balanced nesting 5000 in {field}"] = json.dumps({**valid, field: "@"}).replace(
            '"@"', "[" * 5000 + "]" * 5000)
        out[f"nesting 40 in {field}"] = json.dumps({**valid, field: "@"}).replace('"@"', "[" * 40 + "]" * 40)
    out["nul in a key"] = json.dumps({**valid, "\u0000": 1})
    out["surrogate in a key"] = json.dumps({**valid, "\udc00": 1})
    return out


@pytest.mark.parametrize("endpoint", sorted(JSON_ENDPOINTS))
async def test_bad_json_is_a_400_never_a_500(ch: ClockHarness, endpoint: str) -> None:
    admin = await ch.staff_token()
    path, valid = JSON_ENDPOINTS[endpoint]
    for name, body in bad_bodies(valid).items():
        code, reply = await ch.http("POST", path, body, token=admin)
        assert (code, reply) == (400, {"error": "bad_request", "message": reply["message"]}), (name, code, reply)
    await oversized_bodies_are_413(ch, path, admin)
    # No Content-Length (chunked): buffered only up to the limit, then refused the same way.

    async def produce(write: object) -> None:
        for _ in range(64):
            await write(b" " * 32768)  # type: ignore[operator]

    resp = await tornado.httpclient.AsyncHTTPClient().fetch(
        f"{ch.base}{path}", method="POST", body_producer=produce, raise_error=False,
        headers={"Authorization": f"Bearer {admin}"})
    assert resp.code == 413 and json.loads(resp.body)["error"] == "too_large", (path, resp.code, resp.body)


@pytest.mark.parametrize("path", BODYLESS_POSTS)
async def test_oversized_body_is_a_json_413_everywhere(ch: ClockHarness, path: str) -> None:
    await oversized_bodies_are_413(ch, path, await ch.staff_token())


async def oversized_bodies_are_413(ch: ClockHarness, path: str, token: str) -> None:
    for size in (16 * 1024 + 1, 2 << 20):  # over the handler's limit, and over tornado's own 1 MiB
        code, reply = await ch.http("POST", path, json.dumps({"pad": "x" * size}), token=token)
        assert code == 413 and reply["error"] == "too_large", (path, size, code, reply)


async def test_websocket_message_over_tornados_limit_gets_too_large_first(ch: ClockHarness) -> None:
    joined = await ch.join("T001")
    phone = await WsClient.connect(ch.ws_base, joined["token"])
    await phone.wait_type("welcome")
    # A text frame header announcing 2 MiB: tornado refuses it from the header, before reading any of it.
    stream = phone.conn.protocol.stream  # type: ignore[union-attr]
    await stream.write(bytes([0x81, 0xFF]) + struct.pack("!Q", 2 << 20))
    err = await phone.wait_type("error")
    assert err["code"] == "too_large"
    await asyncio.wait_for(phone.closed.wait(), 5)
    assert phone.close_code == 1009


# -- 8. join secrets only for roles that may print QR codes -----------------------------------------------


@pytest.mark.parametrize("role", list(StaffRole))
async def test_board_shows_join_urls_only_to_qr_printers(ch: ClockHarness, role: StaffRole) -> None:
    await ch.running.services.staff_auth.set_user("pat", role, "pat-pass-1")
    token = await ch.staff_token("pat", "pat-pass-1")
    secret = await ch.qr_secret("T001")
    code, qr_sheet = await ch.http("GET", "/staff/qr-sheet", token=token)
    may_print = code == 200
    assert may_print == (role != StaffRole.KITCHEN), (role, code)
    code, board = await ch.http("GET", "/api/staff/board", token=token)
    assert code == 200
    row = {r["table_id"]: r for r in board}["T001"]
    assert ("join_url" in row) == may_print
    assert (secret in json.dumps(board)) == may_print
    if may_print:
        assert row["join_url"].endswith(f"/q/T001/{secret}")
