"""docs/till.md: "a crash or reload loses nothing". kill -9 of a real server process right after an
acknowledged till edit; after the restart the edit is there, with its revision."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.client import t
from tests.pg import create_database_sync, drop_database_sync
from tests.procs import Proc, start_tableside

ADMIN = "till-crash-admin-pw"


@pytest.fixture
def till_crash_db() -> Iterator[str]:
    url = create_database_sync("ts_till_crash")
    yield url
    drop_database_sync(url)


def call(server: Proc, method: str, path: str, body: Any = None, *, token: str | None = None,
         till: str | None = None, if_match: int | None = None) -> tuple[int, Any, dict[str, str]]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if till:
        headers["X-Till-Id"] = till
    if if_match is not None:
        headers["If-Match"] = f'"{if_match}"'
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(server.base + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=t(10)) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None, {k.lower(): v for k, v in resp.headers.items()}
    except urllib.error.HTTPError as err:
        raw = err.read()
        return err.code, json.loads(raw) if raw else None, {k.lower(): v for k, v in err.headers.items()}


def login(server: Proc, till: str) -> str:
    code, body, _ = call(server, "POST", "/api/staff/login", {"username": "admin", "password": ADMIN}, till=till)
    assert code == 200, body
    return str(body["token"])


def test_an_acknowledged_till_edit_survives_kill_9(till_crash_db: str) -> None:
    server = start_tableside(till_crash_db, TABLESIDE_ADMIN_PASSWORD=ADMIN, TABLESIDE_DEMO__TABLES="2")
    try:
        token = login(server, "A")
        code, session, _ = call(server, "POST", "/api/order-sessions", {"items": [{"menu_item_id": "gyoza", "qty": 1}]},
                                token=token, till="A")
        assert code == 201, session
        line = session["items"][0]["line_id"]
        code, edited, headers = call(
            server, "PUT", f"/api/order-sessions/{session['id']}",
            {"items": [{"menu_item_id": "gyoza", "qty": 3, "line_id": line}, {"menu_item_id": "asahi", "qty": 2}]},
            token=token, till="A", if_match=1,
        )
        assert code == 200 and edited["revision"] == 2 and headers["etag"] == '"2"'
        server.kill9()  # at once after the answer: nothing may have been left in memory only
        server = start_tableside(till_crash_db, TABLESIDE_ADMIN_PASSWORD=ADMIN, TABLESIDE_DEMO__TABLES="2")
        code, got, headers = call(server, "GET", f"/api/order-sessions/{session['id']}", token=token)
        assert code == 200 and got == edited and headers["etag"] == '"2"'
        # carrying on after the restart: the stored revision is the one to name
        code, stale, _ = call(server, "PUT", f"/api/order-sessions/{session['id']}", {"items": []},
                              token=token, till="A", if_match=1)
        assert code == 409 and stale["error"] == "revision_mismatch" and stale["session"] == edited
        code, done, _ = call(server, "POST", f"/api/order-sessions/{session['id']}/complete", {}, token=token, till="A")
        assert code == 200 and done["transaction"]["total"] == edited["total"]
    finally:
        server.stop()
