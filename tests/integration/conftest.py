"""A real tableside server in-process (Tornado on the test's loop), on a fresh Postgres database, with
the POS simulator in-process behind the HTTP adapter."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import tornado.httpclient
import tornado.httpserver
from tornado.netutil import bind_sockets

from tableside.clock import Clock, SystemClock
from tableside.config import Settings
from tableside.pos.http import HttpPosAdapter
from tableside.pos.simulator import SimulatorConfig, SimulatorState, make_app
from tableside.server.app import RunningServer, start_server
from tableside.storage.postgres import PostgresStore
from tests.client import WsClient
from tests.integration.till_support import TillServer, start_till_server
from tests.pg import create_database_sync, drop_database_sync

ADMIN_PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def temp_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Servers started here (``demo=True`` writes demo-logins.txt) and the processes they spawn use a
    temporary data directory, never ./var of the checkout. A test that passes its own keeps it."""
    data_dir = tmp_path / "var"
    monkeypatch.setenv("TABLESIDE_DATA_DIR", str(data_dir))
    return data_dir


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    url = create_database_sync("ts_it")
    yield url
    drop_database_sync(url)


@dataclass
class Harness:
    running: RunningServer
    sim: SimulatorState
    base: str
    ws_base: str

    async def http(self, method: str, path: str, body: Any = None, token: str | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
        client = tornado.httpclient.AsyncHTTPClient()
        hdrs = dict(headers or {})
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        data = None if body is None else (body if isinstance(body, (bytes, str)) else json.dumps(body))
        if method == "POST" and data is None:
            data = b""
        resp = await client.fetch(f"{self.base}{path}", method=method, body=data, headers=hdrs,
                                   raise_error=False, follow_redirects=False)
        try:
            parsed = json.loads(resp.body) if resp.body else None
        except ValueError:
            parsed = resp.body.decode()
        return resp.code, parsed

    async def staff_token(self, username: str = "admin", password: str = ADMIN_PASSWORD) -> str:
        code, body = await self.http("POST", "/api/staff/login", {"username": username, "password": password})
        assert code == 200, body
        return str(body["token"])

    async def qr_secret(self, table_id: str) -> str:
        table = await self.running.services.store.get_table(table_id)
        assert table is not None
        return table.qr_secret

    async def join(self, table_id: str = "T001") -> dict[str, Any]:
        code, body = await self.http("POST", "/api/join", {"table_id": table_id, "qr": await self.qr_secret(table_id)})
        assert code == 201, body
        return dict(body)

    async def member(self, table_id: str = "T001", *, msgpack_codec: bool = False) -> tuple[dict[str, Any], WsClient]:
        joined = await self.join(table_id)
        client = await WsClient.connect(self.ws_base, joined["token"], msgpack_codec=msgpack_codec)
        await client.wait_type("welcome")
        return joined, client


H = TypeVar("H", bound=Harness)


async def start_on_clock(
    database_url: str, clock: Clock, *, tables: int = 2, cls: type[H] = Harness, **settings: Any  # type: ignore[assignment]
) -> H:
    """A demo server on a fresh copy of the test database, on ``clock`` (usually a ``FakeClock``), with
    ``settings`` over the defaults; the dummy POS unless ``pos`` says otherwise. Stop with
    ``h.running.stop()``."""
    config = Settings(port=0, database_url=database_url, admin_password=ADMIN_PASSWORD,
                      demo={"tables": tables}, **settings)  # type: ignore[arg-type]
    store = await PostgresStore.connect(database_url)
    await store.truncate_all()
    running, _ = await start_server(config, store, demo=True, clock=clock)
    return cls(running, SimulatorState(SimulatorConfig()), f"http://127.0.0.1:{running.port}",
               f"ws://127.0.0.1:{running.port}")


@pytest.fixture
async def harness(database_url: str) -> AsyncIterator[Harness]:
    sim = SimulatorState(SimulatorConfig(latency_ms=0))
    sim_server = tornado.httpserver.HTTPServer(make_app(sim))
    sim_sockets = bind_sockets(0, "127.0.0.1")  # port 0: bound here, never picked and released
    sim_server.add_sockets(sim_sockets)
    sim_port = sim_sockets[0].getsockname()[1]
    settings = Settings(
        port=0,
        database_url=database_url,
        admin_password=ADMIN_PASSWORD,
        demo={"tables": 4},  # type: ignore[arg-type]
        limits={"messages_per_second": 1000, "burst": 2000},  # type: ignore[arg-type]
        pos={"adapter": "http", "url": f"http://127.0.0.1:{sim_port}", "timeout_s": 2, "backoff_s": 0.1},  # type: ignore[arg-type]
    )
    store = await PostgresStore.connect(database_url)
    await store.truncate_all()
    clock = SystemClock()
    pos = HttpPosAdapter(f"http://127.0.0.1:{sim_port}", clock)
    running, _ = await start_server(settings, store, demo=True, clock=clock, pos=pos)
    h = Harness(running, sim, f"http://127.0.0.1:{running.port}", f"ws://127.0.0.1:{running.port}")
    yield h
    await running.stop()
    sim_server.stop()


@pytest.fixture
async def till(database_url: str) -> AsyncIterator[TillServer]:
    """A server for the till tests (docs/till.md), with staff of every role logged in."""
    server = await start_till_server(database_url)
    yield server
    await server.running.stop()
