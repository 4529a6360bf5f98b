"""A POS reached over HTTP (the simulator in ``tableside.pos.simulator`` speaks the same API).

``POST {base}/orders`` with ``Idempotency-Key: <order_id>``; ``GET {base}/orders/{order_id}`` to look a key
up. The mapping errs towards ``Unknown``: only an explicit 400/409/422 is a refusal, because calling
something a refusal that was not one would make the guest order again while a ticket may exist."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPRequest, HTTPResponse

from tableside.clock import Clock
from tableside.pos.interface import Accepted, LookupResult, PosOrder, PosOutcome, Rejected, Unknown

_REJECT_CODES = frozenset({400, 409, 422})


class HttpPosAdapter:
    name = "http"

    def __init__(self, base_url: str, clock: Clock, *, client: AsyncHTTPClient | None = None) -> None:
        self._base = base_url.rstrip("/")
        # Kept for symmetry with other adapters; the clock-based timeout is applied by the submitter and
        # tornado's request_timeout below is only a backstop so a socket can never stay open forever.
        self._clock = clock
        # force_instance: the default AsyncHTTPClient is shared per loop, and close() must not close
        # somebody else's client.
        self._client = client if client is not None else AsyncHTTPClient(force_instance=True)

    async def submit(self, order: PosOrder, timeout: float) -> PosOutcome:
        body = {
            "order_id": order.order_id,
            "order_number": order.order_number,
            "restaurant_id": order.restaurant_id,
            "table_id": order.table_id,
            "items": order.items,
            "total": order.total,
            "special_instructions": order.special_instructions,
        }
        request = HTTPRequest(
            f"{self._base}/orders",
            method="POST",
            body=json.dumps(body),
            headers={"Content-Type": "application/json", "Idempotency-Key": order.order_id},
            connect_timeout=timeout,
            request_timeout=timeout,
        )
        try:
            response = await self._fetch(request)
        except Exception as exc:  # connection refused/reset, tornado's own timeout (599), DNS...
            return Unknown(f"transport error: {type(exc).__name__}: {exc}")
        code = response.code
        if code in (200, 201):
            ticket = _json(response).get("ticket_id")
            if isinstance(ticket, str) and ticket:
                return Accepted(ticket)
            # A success without a ticket id proves nothing we could show the guest; lookup will tell.
            return Unknown(f"HTTP {code} without ticket_id")
        if code in _REJECT_CODES:
            data = _json(response)
            reason = data.get("reason") or data.get("error") or f"HTTP {code}"
            return Rejected(str(reason))
        return Unknown(f"HTTP {code}")

    async def lookup(self, order_id: str, timeout: float) -> LookupResult:
        request = HTTPRequest(
            f"{self._base}/orders/{quote(order_id, safe='')}",
            method="GET",
            connect_timeout=timeout,
            request_timeout=timeout,
        )
        try:
            response = await self._fetch(request)
        except Exception as exc:
            return LookupResult(found=None, reason=f"transport error: {type(exc).__name__}: {exc}")
        if response.code == 404:
            return LookupResult(found=False)
        if response.code == 200:
            ticket = _json(response).get("ticket_id")
            if isinstance(ticket, str) and ticket:
                return LookupResult(found=True, ticket_id=ticket)
            return LookupResult(found=None, reason="HTTP 200 without ticket_id")
        return LookupResult(found=None, reason=f"HTTP {response.code}")

    async def close(self) -> None:
        self._client.close()

    async def _fetch(self, request: HTTPRequest) -> HTTPResponse:
        # Tornado cannot abort a request in flight: when the submitter's clock timeout cancels us, the fetch
        # keeps going until request_timeout and then fails into a future nobody awaits, which tornado logs as
        # an error. Shield it so cancelling us does not cancel it, and consume whatever it ends with.
        future = self._client.fetch(request, raise_error=False)
        future.add_done_callback(_consume)
        return await asyncio.shield(future)


def _consume(future: asyncio.Future[HTTPResponse]) -> None:
    if not future.cancelled():
        future.exception()  # marks it retrieved; the awaiting caller (if any) already saw it


def _json(response: HTTPResponse) -> dict[str, Any]:
    """The body as a JSON object, or {} when it is empty or not JSON (error pages, proxies)."""
    try:
        data = json.loads(response.body or b"{}")
    except (ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}
