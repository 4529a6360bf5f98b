"""Shared fixtures for the POS tests: a fake clock, an order factory, and the simulator served in-process."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from tableside.clock import FakeClock
from tableside.pos import PosOrder
from tableside.pos.simulator import SimulatorConfig, SimulatorState, make_app


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _make_order(order_id: str = "ord-1", **overrides: Any) -> PosOrder:
    fields: dict[str, Any] = {
        "order_id": order_id,
        "order_number": 7,
        "restaurant_id": 1,
        "table_id": "T4",
        "items": [{"menu_item_id": 3, "name": "Pho", "qty": 2, "unit_price": 1250, "note": ""}],
        "total": 2500,
        "special_instructions": "no cilantro",
    }
    fields.update(overrides)
    return PosOrder(**fields)


@pytest.fixture
def make_order() -> Callable[..., PosOrder]:
    """``make_order("key", total=...)`` builds a PosOrder with sensible defaults."""
    return _make_order


@dataclass
class Sim:
    state: SimulatorState
    url: str
    client: AsyncHTTPClient

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        response = await self.client.fetch(
            self.url + path,
            method=method,
            body=None if body is None else json.dumps(body),
            raise_error=False,
        )
        return response.code, json.loads(response.body) if response.body else None

    async def stats(self) -> dict[str, int]:
        code, data = await self.call("GET", "/stats")
        assert code == 200
        return dict(data)

    async def control(self, **changes: Any) -> dict[str, Any]:
        code, data = await self.call("POST", "/control", changes)
        assert code == 200, data
        return dict(data)


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    """The simulator app on a free port of the test's own loop (real time, no subprocess)."""
    state = SimulatorState(SimulatorConfig(seed=1))
    sockets = bind_sockets(0, "127.0.0.1")
    server = HTTPServer(make_app(state))
    server.add_sockets(sockets)
    client = AsyncHTTPClient(force_instance=True)
    yield Sim(state, f"http://127.0.0.1:{sockets[0].getsockname()[1]}", client)
    client.close()
    state.release_hung()
    server.stop()
    await server.close_all_connections()
