"""Joining, leaving and the member cap over HTTP and websockets (issue 8), against the real server."""

from __future__ import annotations

import asyncio
from typing import Any

import tornado.httpclient

from tableside.server.services import KeyedRateLimiter
from tests.client import WsClient
from tests.integration.conftest import Harness


async def qr_open(harness: Harness, table_id: str, cookie: str | None = None, secret: str | None = None) -> Any:
    client = tornado.httpclient.AsyncHTTPClient()
    secret = secret if secret is not None else await harness.qr_secret(table_id)
    headers = {"Cookie": f"tableside_token={cookie}"} if cookie else {}
    return await client.fetch(
        f"{harness.base}/q/{table_id}/{secret}", headers=headers, follow_redirects=False, raise_error=False
    )


def cookie_token(resp: Any) -> str | None:
    cookie = resp.headers.get("Set-Cookie")
    return None if cookie is None else str(cookie.split(";")[0].split("=", 1)[1])


async def join_body(harness: Harness, table_id: str) -> dict[str, str]:
    return {"table_id": table_id, "qr": await harness.qr_secret(table_id)}


def cap(harness: Harness, max_members: int) -> None:
    harness.running.services.settings.limits.max_members_per_group = max_members


async def test_a_full_group_refuses_the_join_itself_and_leaving_frees_a_place(harness: Harness) -> None:
    cap(harness, 3)
    a, a_ws = await harness.member()
    b, b_ws = await harness.member()
    c = await harness.join()
    code, body = await harness.http("POST", "/api/join", await join_body(harness, "T001"))
    assert code == 409 and body["error"] == "group_full"
    assert "already has 3 guests" in body["message"]
    resp = await qr_open(harness, "T001")
    assert resp.code == 409 and cookie_token(resp) is None
    assert resp.headers["Content-Type"].startswith("text/html") and "already has 3 guests" in resp.body.decode()

    # b leaves over the websocket: ack, then session_closed {reason: left} and the socket closes.
    answer = await b_ws.request({"type": "leave"})
    assert answer["type"] == "ack"
    assert (await b_ws.wait_type("session_closed"))["reason"] == "left"
    await asyncio.wait_for(b_ws.closed.wait(), 5)
    assert b_ws.close_code == 4003
    left = await a_ws.wait_type("member_left", member_id=b["member_id"])
    assert b["member_id"] not in {m["member_id"] for m in left["members"]}
    code, _ = await harness.http("GET", "/api/cart", token=b["token"])
    assert code == 401  # the token is revoked

    d, d_ws = await harness.member()  # the freed place is taken; its socket is welcome
    assert d["group_id"] == a["group_id"]
    code, body = await harness.http("POST", "/api/join", await join_body(harness, "T001"))
    assert code == 409 and body["error"] == "group_full"

    # c leaves over HTTP.
    code, body = await harness.http("POST", "/api/leave", token=c["token"])
    assert code == 200 and body["left"] is True and body["member_id"] == c["member_id"]
    code, _ = await harness.http("POST", "/api/leave", token=c["token"])
    assert code == 401
    await a_ws.wait_type("member_left", member_id=c["member_id"])
    e = await harness.join()
    assert e["group_id"] == a["group_id"]
    for ws in (a_ws, d_ws):
        await ws.close()


async def test_sixty_concurrent_joins_give_exactly_fifty_members(harness: Harness) -> None:
    body = await join_body(harness, "T002")
    results = await asyncio.gather(*(harness.http("POST", "/api/join", body) for _ in range(60)))
    codes = sorted(code for code, _ in results)
    assert codes == [201] * 50 + [409] * 10
    assert {b["error"] for code, b in results if code == 409} == {"group_full"}
    groups = {b["group_id"] for code, b in results if code == 201}
    assert len(groups) == 1
    live = await harness.running.services.store.live_members(groups.pop(), harness.running.services.clock.now())
    assert len(live) == 50


async def test_joins_are_rate_limited_per_table(harness: Harness) -> None:
    services = harness.running.services
    services.settings.limits.join_per_minute_per_table = 2
    services.table_join_limiter = KeyedRateLimiter(2 / 60.0, 2)
    await harness.join("T003")
    await harness.join("T003")
    code, body = await harness.http("POST", "/api/join", await join_body(harness, "T003"))
    assert code == 429 and body["error"] == "rate_limited"
    assert "at this table" in body["message"] and "2 per minute" in body["message"]
    resp = await qr_open(harness, "T003")
    assert resp.code == 429 and "at this table" in resp.body.decode()
    assert 1 <= int(resp.headers["Retry-After"]) <= 30  # a token every 30 s at 2 per minute
    # Another table is not affected, nor does a wrong secret use up this table's budget.
    await harness.join("T004")
    code, body = await harness.http("POST", "/api/join", {"table_id": "T003", "qr": "wrong"})
    assert code == 403


async def test_opening_the_join_link_again_keeps_the_same_guest(harness: Harness) -> None:
    services = harness.running.services
    first = await qr_open(harness, "T001")
    token = cookie_token(first)
    assert first.code == 303 and token
    info = await services.resolve_guest(token)
    assert info is not None

    again = await qr_open(harness, "T001", cookie=token)
    assert again.code == 303 and again.headers["Location"] == "/guest"
    assert cookie_token(again) is None  # no new token, no new member
    assert await services.store.live_members(info.group_id, services.clock.now()) == {info.member_id}
    # The same member over the websocket: one guest in the list, no grey ghost.
    ws = await WsClient.connect(harness.ws_base, headers={"Cookie": f"tableside_token={token}"})
    welcome = await ws.wait_type("welcome")
    assert welcome["member_id"] == info.member_id and len(welcome["members"]) == 1
    await ws.close()

    # A cookie with a wrong secret in the link does not make the link valid.
    resp = await qr_open(harness, "T001", cookie=token, secret="wrong")
    assert resp.code == 403
    # A cookie of another table: a new guest at this one.
    other = await qr_open(harness, "T002", cookie=token)
    assert other.code == 303 and cookie_token(other) not in (None, token)
    # After the sitting ends the old cookie no longer counts: a new guest of the new sitting.
    staff = await harness.staff_token()
    assert (await harness.http("POST", "/api/staff/tables/T001/checkout", token=staff))[0] == 200
    assert (await harness.http("POST", "/api/staff/tables/T001/reset", token=staff))[0] == 200
    fresh = await qr_open(harness, "T001", cookie=token)
    new_token = cookie_token(fresh)
    assert fresh.code == 303 and new_token not in (None, token)
    new_info = await services.resolve_guest(new_token)
    assert new_info is not None and new_info.group_id != info.group_id


async def test_api_join_with_the_bearer_of_this_sitting_returns_the_same_member(harness: Harness) -> None:
    joined = await harness.join("T001")
    code, body = await harness.http("POST", "/api/join", await join_body(harness, "T001"), token=joined["token"])
    assert code == 200
    assert (body["member_id"], body["token"], body["group_id"]) == (
        joined["member_id"], joined["token"], joined["group_id"]
    )
    # A bearer of another table (or an unknown one) joins as a new member.
    code, other = await harness.http("POST", "/api/join", await join_body(harness, "T002"), token=joined["token"])
    assert code == 201 and other["member_id"] != joined["member_id"]
    code, other = await harness.http("POST", "/api/join", await join_body(harness, "T001"), token="nope")
    assert code == 201 and other["member_id"] != joined["member_id"]
