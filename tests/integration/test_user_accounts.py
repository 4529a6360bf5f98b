"""Customer accounts over HTTP (issue 11, seed 003's ``users``): register, login, logout, /api/me; their
validation, duplicates, throttling, cookies, expiry on the injected clock, and logs without secrets.

As in test_staff_hardening, the server runs on a ``FakeClock`` behind a second HTTP server on the same app
with ``xheaders`` on, so a test can choose the client IP with ``X-Real-IP``."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from http.cookies import SimpleCookie
from typing import Any

import pytest
import tornado.httpclient
import tornado.httpserver
from tornado.netutil import bind_sockets

from tableside.accounts import InvalidField, normalise_email, normalise_line_id, normalise_phone
from tableside.auth import token_hash
from tableside.clock import FakeClock
from tableside.server.app import make_app
from tableside.server.maintenance import run_cleanup
from tableside.server.users import USER_COOKIE
from tests.integration.conftest import Harness, start_on_clock

PASSWORD = "open sesame 42"


class AccountHarness(Harness):
    clock: FakeClock

    async def fetch(self, method: str, path: str, body: Any = None, *, ip: str = "192.0.2.1",
                    token: str | None = None, cookie: str | None = None) -> tornado.httpclient.HTTPResponse:
        headers = {"X-Real-IP": ip}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if cookie:
            headers["Cookie"] = f"{USER_COOKIE}={cookie}"
        data = None if body is None else (body if isinstance(body, str) else json.dumps(body))
        if method == "POST" and data is None:
            data = ""
        return await tornado.httpclient.AsyncHTTPClient().fetch(
            f"{self.base}{path}", method=method, body=data, headers=headers, raise_error=False)

    async def call(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        resp = await self.fetch(method, path, body, **kw)
        return resp.code, (json.loads(resp.body) if resp.body else None)

    async def register(self, email: str = "ann@example.com", *, ip: str = "192.0.2.1", **fields: Any) -> dict[str, Any]:
        body = {"name": "Ann", "email": email, "password": PASSWORD, **fields}
        code, answer = await self.call("POST", "/api/users/register", body, ip=ip)
        assert code == 201, answer
        return dict(answer)

    async def login(self, email: str, password: str, ip: str = "192.0.2.1") -> tuple[int, Any]:
        return await self.call("POST", "/api/users/login", {"email": email, "password": password}, ip=ip)


@pytest.fixture
async def ah(database_url: str) -> AsyncIterator[AccountHarness]:
    clock = FakeClock()
    h = await start_on_clock(database_url, clock, cls=AccountHarness)
    running = h.running
    proxied = tornado.httpserver.HTTPServer(make_app(running.services), xheaders=True)
    sockets = bind_sockets(0, "127.0.0.1")
    proxied.add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    h.base, h.ws_base = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"
    h.clock = clock
    yield h
    proxied.stop()
    await running.stop()


def session_cookie(resp: tornado.httpclient.HTTPResponse) -> tuple[str, str]:
    """The value and the raw Set-Cookie line of the account cookie."""
    for line in resp.headers.get_list("Set-Cookie"):
        cookie: SimpleCookie = SimpleCookie()
        cookie.load(line)
        if USER_COOKIE in cookie:
            return cookie[USER_COOKIE].value, line
    raise AssertionError(f"no {USER_COOKIE} cookie in {resp.headers.get_list('Set-Cookie')}")


# -- validation and normalisation (no server) ------------------------------------------------------------


def test_emails_are_normalised_whole_and_validated() -> None:
    assert normalise_email("  Ann.Lee+Food@Example.COM \n") == "ann.lee+food@example.com"
    for bad in ("", "ann", "ann@", "@example.com", "ann@example", "ann@@example.com", "a b@example.com",
                "ann..lee@example.com", ".ann@example.com", "ann@-x.com", "ann@example.123", "añn@example.com",
                "a" * 65 + "@example.com", "a@" + "b" * 250 + ".com"):
        with pytest.raises(InvalidField) as err:
            normalise_email(bad)
        assert err.value.field == "email", bad


def test_phone_and_line_id_are_normalised_and_bounded() -> None:
    assert normalise_phone(" +81 (90) 1234-5678 ") == "+819012345678"
    assert normalise_phone("090.1234.5678") == "09012345678"
    for bad in ("12345", "+" + "1" * 20, "090-abcd-5678", "++8190", ""):
        with pytest.raises(InvalidField):
            normalise_phone(bad)
    assert normalise_line_id(" Ann.Lee_01 ") == "ann.lee_01"
    assert normalise_line_id("@shop-1") == "@shop-1"
    for bad in ("", "x" * 51, "ann lee", "ann#1", "ａｎｎ"):
        with pytest.raises(InvalidField):
            normalise_line_id(bad)


# -- register ----------------------------------------------------------------------------------------------


async def test_register_answers_201_with_a_token_and_cookie(ah: AccountHarness) -> None:
    resp = await ah.fetch("POST", "/api/users/register", {"name": " Ann Lee ", "email": " Ann@Example.com",
                          "password": PASSWORD, "phone": "+81 90-1234-5678", "line_id": "Ann.Lee"})
    assert resp.code == 201
    body = json.loads(resp.body)
    assert set(body) == {"user_id", "token"} and len(body["user_id"]) == 36
    assert len(body["token"]) >= 32  # 192 bits, urlsafe base64
    value, line = session_cookie(resp)
    assert value == body["token"]
    attrs = line.lower()
    assert "httponly" in attrs and "samesite=lax" in attrs and "path=/" in attrs and "secure" not in attrs
    code, me = await ah.call("GET", "/api/me", token=body["token"])
    assert code == 200
    assert me == {"user_id": body["user_id"], "name": "Ann Lee", "email": "ann@example.com",
                  "phone": "+819012345678", "line_id": "ann.lee", "created_at": ah.clock.now()}
    # Only the token's hash is stored, with the configured lifetime.
    store = ah.running.services.store
    session = await store.resolve_user_session(token_hash(body["token"]), ah.clock.now())
    assert session is not None and session.expires_at == ah.clock.now() + 720 * 3600
    assert await store.resolve_user_session(body["token"], ah.clock.now()) is None
    user = await store.get_user(body["user_id"])
    assert user is not None and user.password_hash.startswith("$argon2id$") and PASSWORD not in user.password_hash


async def test_cookie_is_secure_behind_https(database_url: str) -> None:
    clock = FakeClock()
    h = await start_on_clock(database_url, clock, cls=AccountHarness, cookie_secure=True)
    try:
        resp = await AccountHarness.fetch(h, "POST", "/api/users/register",  # type: ignore[arg-type]
                                          {"name": "A", "email": "a@example.com", "password": PASSWORD})
        assert resp.code == 201
        _, line = session_cookie(resp)
        assert "secure" in line.lower()
    finally:
        await h.running.stop()


@pytest.mark.parametrize(("change", "field"), [
    ({"name": ""}, "name"), ({"name": "x" * 256}, "name"), ({"name": None}, "name"), ({"name": 7}, "name"),
    ({"email": "not-an-email"}, "email"), ({"email": "a@" + "b" * 250 + ".com"}, "email"), ({"email": None}, "email"),
    ({"password": "short77"}, "password"), ({"password": "p" * 257}, "password"), ({"password": 12345678}, "password"),
    ({"phone": "12"}, "phone"), ({"phone": "1" * 21}, "phone"), ({"phone": 901234567}, "phone"),
    ({"line_id": "x" * 51}, "line_id"), ({"line_id": "bad id"}, "line_id"),
])
async def test_register_refuses_invalid_fields(ah: AccountHarness, change: dict[str, Any], field: str) -> None:
    body = {"name": "Ann", "email": "ann@example.com", "password": PASSWORD, **change}
    body = {k: v for k, v in body.items() if v is not None}
    code, answer = await ah.call("POST", "/api/users/register", body)
    assert code == 400 and answer["error"] == "bad_request" and answer["field"] == field, answer
    assert await ah.running.services.store.get_user_by_email("ann@example.com") is None


async def test_bad_json_bodies_are_400_and_oversized_ones_413(ah: AccountHarness) -> None:
    from tableside.server.services import KeyedRateLimiter
    from tests.integration.test_staff_hardening import bad_bodies

    ah.running.services.register_limiter = KeyedRateLimiter.per_minute(10_000)
    valid = {"name": "Ann", "email": "ann@example.com", "password": PASSWORD, "phone": "0901234567", "line_id": "a"}
    for name, body in bad_bodies(valid).items():
        code, reply = await ah.call("POST", "/api/users/register", body)
        assert code == 400 and reply["error"] == "bad_request", (name, code, reply)
    for size in (16 * 1024 + 1, 2 << 20):
        code, reply = await ah.call("POST", "/api/users/register", json.dumps({"pad": "x" * size}))
        assert code == 413 and reply["error"] == "too_large"
    assert await ah.running.services.store.get_user_by_email("ann@example.com") is None


async def test_register_accepts_the_length_limits(ah: AccountHarness) -> None:
    local = "a" * 64
    email = f"{local}@{'b' * 63}.{'c' * 63}.{'d' * 58}.com"
    assert len(email) == 255
    await ah.register(email, name="n" * 255, password="p" * 256, phone="+" + "1" * 19, line_id="l" * 50)
    await ah.register("b@example.com", password="p" * 8)


@pytest.mark.parametrize("field", ["email", "phone", "line_id"])
async def test_duplicates_get_409_naming_the_field(ah: AccountHarness, field: str) -> None:
    await ah.register("ann@example.com", phone="09011112222", line_id="ann")
    clash = {"email": {"email": "ANN@example.com "}, "phone": {"phone": "090-1111-2222"},
             "line_id": {"line_id": "ANN"}}[field]
    body = {"name": "Bob", "email": "bob@example.com", "password": PASSWORD, **clash}
    code, answer = await ah.call("POST", "/api/users/register", body)
    assert code == 409 and answer["error"] == "duplicate" and answer["field"] == field, answer


async def test_registration_is_rate_limited_per_ip(ah: AccountHarness) -> None:
    for i in range(10):  # limits.register_per_minute_per_ip
        await ah.register(f"u{i}@example.com", ip="198.51.100.1")
    resp = await ah.fetch("POST", "/api/users/register",
                          {"name": "X", "email": "x@example.com", "password": PASSWORD}, ip="198.51.100.1")
    assert resp.code == 429 and json.loads(resp.body)["error"] == "rate_limited"
    assert 1 <= int(resp.headers["Retry-After"]) <= 60
    await ah.register("other@example.com", ip="198.51.100.2")  # another address is not affected
    await ah.clock.advance(60)
    await ah.register("later@example.com", ip="198.51.100.1")


# -- login ---------------------------------------------------------------------------------------------------


async def test_login_answers_200_with_a_new_token_and_cookie(ah: AccountHarness) -> None:
    reg = await ah.register()
    resp = await ah.fetch("POST", "/api/users/login", {"email": "  ANN@example.COM", "password": PASSWORD})
    assert resp.code == 200
    body = json.loads(resp.body)
    assert body["user_id"] == reg["user_id"] and body["token"] != reg["token"]
    value, line = session_cookie(resp)
    assert value == body["token"] and "httponly" in line.lower() and "samesite=lax" in line.lower()
    code, me = await ah.call("GET", "/api/me", cookie=value)  # the cookie works instead of the bearer token
    assert code == 200 and me["user_id"] == reg["user_id"]


async def test_unknown_email_and_wrong_password_get_the_same_answer(ah: AccountHarness) -> None:
    await ah.register()
    accounts = ah.running.services.accounts
    verified: list[str] = []
    real_verify = accounts._verify

    def spy(stored: str, password: str) -> bool:
        verified.append(stored)
        return real_verify(stored, password)

    accounts._verify = spy  # type: ignore[method-assign]
    wrong = await ah.login("ann@example.com", "wrong password")
    unknown = await ah.login("nobody@example.com", PASSWORD)
    invalid = await ah.login("not an email", PASSWORD)
    assert wrong == unknown == invalid == (401, {"error": "unauthorized", "message": "wrong email or password"})
    # Each ran one argon2id verify (a dummy hash for the unknown ones), so timing tells nothing either.
    assert len(verified) == 3 and all(h.startswith("$argon2id$") for h in verified)
    code, body = await ah.call("POST", "/api/users/login", {"email": "ann@example.com"})
    assert code == 400 and body["error"] == "bad_request"


async def test_failing_logins_are_throttled_per_source_with_retry_after(ah: AccountHarness) -> None:
    await ah.register()
    codes = []
    for _ in range(12):
        codes.append((await ah.login("ann@example.com", "wrong password", ip="203.0.113.66"))[0])
        await ah.clock.advance(1)
    assert codes == [401] * 10 + [429] * 2  # per (account, IP): LoginThrottle.per_user_ip
    resp = await ah.fetch("POST", "/api/users/login", {"email": "Ann@example.com", "password": PASSWORD},
                          ip="203.0.113.66")  # even the right password, spelled differently: same account
    assert resp.code == 429 and json.loads(resp.body)["error"] == "rate_limited"
    assert 0 < int(resp.headers["Retry-After"]) <= 300
    # The owner, from an address that has not been failing, gets in.
    assert (await ah.login("ann@example.com", PASSWORD, ip="198.51.100.7"))[0] == 200
    # Staff logins have their own throttle: the failing customer logins did not use up the staff budget.
    code, _ = await ah.call("POST", "/api/staff/login", {"username": "admin", "password": "x"}, ip="203.0.113.66")
    assert code == 401
    await ah.clock.advance(300)
    assert (await ah.login("ann@example.com", PASSWORD, ip="203.0.113.66"))[0] == 200


async def test_one_ip_guessing_many_accounts_is_throttled(ah: AccountHarness) -> None:
    codes = [(await ah.login(f"u{i}@example.com", "wrong password", ip="203.0.113.9"))[0] for i in range(31)]
    assert codes == [401] * 30 + [429]  # LoginThrottle.per_ip


# -- sessions: logout, expiry, /api/me -------------------------------------------------------------------------


async def test_logout_revokes_the_session_and_is_idempotent(ah: AccountHarness) -> None:
    reg = await ah.register()
    code, body = await ah.login("ann@example.com", PASSWORD)
    other = body["token"]
    resp = await ah.fetch("POST", "/api/users/logout", token=reg["token"])
    assert resp.code == 204 and not resp.body
    assert any(USER_COOKIE in line and "expires" in line.lower() for line in resp.headers.get_list("Set-Cookie"))
    assert (await ah.call("GET", "/api/me", token=reg["token"]))[0] == 401
    assert (await ah.fetch("POST", "/api/users/logout", token=reg["token"])).code == 204  # again
    assert (await ah.fetch("POST", "/api/users/logout")).code == 204  # no token at all
    assert (await ah.fetch("POST", "/api/users/logout", token="x" * 500)).code == 204
    assert (await ah.call("GET", "/api/me", token=other))[0] == 200  # the other session lives on
    assert (await ah.fetch("POST", "/api/users/logout", cookie=other)).code == 204  # by cookie
    assert (await ah.call("GET", "/api/me", token=other))[0] == 401


async def test_me_needs_a_valid_session(ah: AccountHarness) -> None:
    for kw in ({}, {"token": "nonsense"}, {"cookie": "nonsense"}, {"token": "x" * 500}):
        code, body = await ah.call("GET", "/api/me", **kw)
        assert code == 401 and body["error"] == "unauthorized", kw
    # A staff or guest token is not a customer session.
    staff = await ah.staff_token()
    assert (await ah.call("GET", "/api/me", token=staff))[0] == 401


async def test_a_session_expires_on_the_injected_clock_and_cleanup_deletes_it(ah: AccountHarness) -> None:
    reg = await ah.register()
    ttl = ah.running.services.settings.tokens.user_ttl_hours * 3600
    ah.clock._now += ttl - 1
    assert (await ah.call("GET", "/api/me", token=reg["token"]))[0] == 200
    ah.clock._now += 1
    assert (await ah.call("GET", "/api/me", token=reg["token"]))[0] == 401
    report = await run_cleanup(ah.running.services)
    assert report.expired_user_sessions == 1
    # Logging in again works and starts a fresh lifetime.
    code, body = await ah.login("ann@example.com", PASSWORD)
    assert code == 200 and (await ah.call("GET", "/api/me", token=body["token"]))[0] == 200


async def test_user_ttl_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from tableside.config import Settings

    monkeypatch.setenv("TABLESIDE_TOKENS__USER_TTL_HOURS", "2")
    assert Settings().tokens.user_ttl_hours == 2.0


# -- no secrets in logs ------------------------------------------------------------------------------------------


async def test_no_password_email_or_token_in_any_log_record(ah: AccountHarness,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    email, password = "secret.person@example.com", "SECRETpassw0rd"
    code, reg = await ah.call("POST", "/api/users/register", {"name": "S", "email": email, "password": password})
    assert code == 201
    await ah.call("POST", "/api/users/register", {"name": "S", "email": email, "password": password})  # 409
    await ah.login(email, "wrongSECRET")
    _, logged_in = await ah.login(email, password)
    await ah.call("GET", "/api/me", token=reg["token"])
    await ah.call("GET", "/api/me", cookie=logged_in["token"])
    await ah.call("GET", f"/api/me?email={email}&token={reg['token']}")
    await ah.fetch("POST", "/api/users/logout", token=reg["token"])
    records = caplog.get_records("call")
    assert sum(r.name == "tableside.access" for r in records) >= 8
    for record in records:
        text = record.getMessage() + repr(record.__dict__)
        for secret in (email, password, "wrongSECRET", reg["token"], logged_in["token"]):
            assert secret not in text, record.getMessage()
