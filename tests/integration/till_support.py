"""An in-process server for the till tests (docs/till.md) on a fresh copy of the test database, with staff
users of every role, and a client that sends ``X-Till-Id`` / ``If-Match`` and reads the ``ETag``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import tornado.httpclient

from tableside.clock import Clock, SystemClock
from tableside.config import Settings
from tableside.server.app import RunningServer, start_server
from tableside.storage.interface import StaffRole
from tableside.storage.postgres import PostgresStore
from tests.client import WsClient, staff_socket

ADMIN_PASSWORD = "correct horse battery staple"
PASSWORD = "till-test-password"
# username: (role, store)
USERS: dict[str, tuple[StaffRole, int]] = {
    "sam": (StaffRole.SERVER, 1),
    "tess": (StaffRole.SERVER, 1),
    "boss": (StaffRole.MANAGER, 1),
    "boss2": (StaffRole.MANAGER, 2),
    "kim": (StaffRole.KITCHEN, 1),
}


@dataclass
class Answer:
    code: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def etag(self) -> str | None:
        return self.headers.get("Etag")


@dataclass
class TillServer:
    running: RunningServer
    base: str
    ws_base: str
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def store(self) -> Any:
        return self.running.services.store

    async def call(self, method: str, path: str, body: Any = None, *, user: str | None = None,
                   till: str | None = None, if_match: str | int | None = None, token: str | None = None,
                   headers: dict[str, str] | None = None) -> Answer:
        hdrs = dict(headers or {})
        bearer = token or (self.tokens[user] if user else None)
        if bearer:
            hdrs["Authorization"] = f"Bearer {bearer}"
        if till is not None:
            hdrs["X-Till-Id"] = till
        if if_match is not None:
            hdrs["If-Match"] = str(if_match)
        data = None if body is None else json.dumps(body)
        if method in ("POST", "PUT") and data is None:
            data = ""
        resp = await tornado.httpclient.AsyncHTTPClient().fetch(
            f"{self.base}{path}", method=method, body=data, headers=hdrs, raise_error=False,
            follow_redirects=False, allow_nonstandard_methods=True,
        )
        parsed = json.loads(resp.body) if resp.body else None
        return Answer(resp.code, parsed, dict(resp.headers))

    async def login(self, user: str, till: str | None = None) -> Answer:
        password = ADMIN_PASSWORD if user == "admin" else PASSWORD
        answer = await self.call("POST", "/api/staff/login", {"username": user, "password": password}, till=till)
        assert answer.code == 200, answer.body
        self.tokens[user] = answer.body["token"]
        return answer

    async def socket(self, user: str, till: str | None = None) -> WsClient:
        return await staff_socket(self.ws_base, self.tokens[user], till)

    async def open_session(self, user: str = "sam", till: str = "A", items: list[dict[str, Any]] | None = None
                           ) -> dict[str, Any]:
        answer = await self.call("POST", "/api/order-sessions",
                                 {"items": items if items is not None else [{"menu_item_id": "gyoza", "qty": 2}]},
                                 user=user, till=till)
        assert answer.code == 201, answer.body
        return dict(answer.body)


async def start_till_server(database_url: str, clock: Clock | None = None, **settings: Any) -> TillServer:
    config = Settings(port=0, database_url=database_url, admin_password=ADMIN_PASSWORD,
                      demo={"tables": 3}, pos={"latency_ms": 0, "success_rate": 1.0},  # type: ignore[arg-type]
                      **settings)
    store = await PostgresStore.connect(database_url)
    await store.truncate_all()
    running, _ = await start_server(config, store, demo=True, clock=clock or SystemClock())
    for username, (role, store_id) in USERS.items():
        await running.services.staff_auth.set_user(username, role, PASSWORD, store_id)
    server = TillServer(running, f"http://127.0.0.1:{running.port}", f"ws://127.0.0.1:{running.port}")
    for username in ("admin", *USERS):
        await server.login(username)
    return server
