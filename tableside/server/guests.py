"""Guest sessions and guest carts over HTTP (seed 001; docs/protocol.md, "Guest sessions").

A visitor who has not logged in gets a server-side session: 64 hex characters from ``secrets.token_hex(32)``,
24 h sliding expiry (``TABLESIDE_GUEST__SESSION_TTL_HOURS``), the store they picked and a cart kept in the
database. Every guest call takes the id from the path (``GET /api/guest/session/{id}``), the
``X-Guest-Session`` header or the HttpOnly cookie ``tableside_guest``, in that order. Prices always come from
the server's menu (integer minor units). The id never reaches a log line (``tableside.logs`` redacts the
path; headers and cookies are never logged).
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from tableside.server.base import ApiError, BaseHandler
from tableside.storage.interface import (
    GUEST_MAX_QUANTITY,
    GuestCartFull,
    GuestCartLine,
    GuestCartLineNotFound,
    GuestQuantityTooLarge,
    GuestSession,
    GuestSessionNotFound,
    RestaurantNotFound,
)

GUEST_SESSION_COOKIE = "tableside_guest"
GUEST_SESSION_HEADER = "X-Guest-Session"
_SESSION_ID = re.compile(r"^[0-9a-f]{64}$")


def new_session_id() -> str:
    return secrets.token_hex(32)  # 256 bits from the OS CSPRNG, 64 hex characters


def guest_session_id(handler: BaseHandler) -> str | None:
    """The id the request carries (header, else cookie); None when there is none."""
    return handler.request.headers.get(GUEST_SESSION_HEADER) or handler.get_cookie(GUEST_SESSION_COOKIE) or None


def session_body(session: GuestSession) -> dict[str, Any]:
    return {
        "session_id": session.session_id,
        "selected_store_id": session.selected_store_id,
        "expires_at": session.expires_at,
        "converted_to_user_id": session.converted_to_user_id,
    }


def set_guest_cookie(handler: BaseHandler, session: GuestSession) -> None:
    """The guest-session cookie: HttpOnly (page scripts never see the id), SameSite=Lax, living as long as
    the session."""
    handler.set_cookie(
        GUEST_SESSION_COOKIE,
        session.session_id,
        httponly=True,
        secure=handler.services.settings.cookie_secure,
        samesite="Lax",
        expires=session.expires_at,
        path="/",
    )


class GuestHandler(BaseHandler):
    """Resolves the request's guest session (401 ``unknown_session`` / ``session_expired``) and slides its
    expiry (written at most once a minute per session, by the store)."""

    @property
    def ttl_s(self) -> float:
        return self.services.settings.guest.session_ttl_hours * 3600

    def set_session_cookie(self, session: GuestSession) -> None:
        set_guest_cookie(self, session)

    async def session(self, session_id: str | None = None) -> GuestSession:
        from_cookie = session_id is None and not self.request.headers.get(GUEST_SESSION_HEADER)
        sid = session_id if session_id is not None else guest_session_id(self)
        if not sid:
            raise ApiError(401, "unknown_session", "no guest session: create one with POST /api/guest/session")
        now = self.services.clock.now()
        found = None
        if _SESSION_ID.match(sid):
            found = await self.services.guest_sessions.get(sid, now, include_expired=True)
        if found is None:
            raise ApiError(401, "unknown_session", "unknown guest session")
        if found.expires_at <= now:
            raise ApiError(401, "session_expired", "the guest session has expired: create a new one")
        expires_at = now + self.ttl_s
        if await self.services.guest_sessions.touch(sid, now, expires_at):
            found.expires_at, found.last_accessed_at = expires_at, now
            if from_cookie:
                self.set_session_cookie(found)  # the cookie slides with the session
        return found

    async def session_with_store(self) -> tuple[GuestSession, int]:
        session = await self.session()
        if session.selected_store_id is None:
            raise ApiError(409, "store_not_selected", "pick a store first: POST /api/guest/session/store")
        return session, session.selected_store_id

    def quantity(self, data: dict[str, Any], *, default: int | None = None) -> int:
        value = data.get("quantity", default)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= GUEST_MAX_QUANTITY:
            raise ApiError(400, "invalid_quantity", f"quantity must be an integer 1..{GUEST_MAX_QUANTITY}")
        return value

    async def send_cart(self, session_id: str, store_id: int | None) -> None:
        lines = await self.services.store.list_guest_cart(session_id)
        self.send_json(cart_body(self, store_id, lines))


def cart_body(handler: BaseHandler, store_id: int | None, lines: list[GuestCartLine]) -> dict[str, Any]:
    """``{"store_id", "items": [{"item_id", "menu_item_id", "name", "unit_price", "quantity", "line_total"}],
    "total"}`` priced from the server's menu."""
    items = []
    for line in lines:
        item = handler.services.menu.get(line.menu_item_id)
        if item is None:
            continue  # cannot happen (foreign key); never price from anything but the menu
        items.append({
            "item_id": line.item_id,
            "menu_item_id": line.menu_item_id,
            "name": item.name,
            "unit_price": item.price,
            "quantity": line.quantity,
            "line_total": item.price * line.quantity,
        })
    return {"store_id": store_id, "items": items, "total": sum(i["line_total"] for i in items)}


class GuestSessionHandler(GuestHandler):
    """``POST /api/guest/session`` → 201 + cookie (rate-limited per IP); ``GET /api/guest/session``."""

    async def post(self) -> None:
        ip = self.client_ip()
        limiter = self.services.guest_session_limiter
        if not limiter.allow(ip, self.services.clock.monotonic()):
            raise ApiError(429, "rate_limited", "too many guest sessions from this address; try again later",
                           headers={"Retry-After": str(limiter.retry_after(ip))})
        now = self.services.clock.now()
        session = GuestSession(new_session_id(), now, now + self.ttl_s, now)
        await self.services.store.create_guest_session(session)
        self.set_session_cookie(session)
        self.send_json(session_body(session), 201)

    async def get(self) -> None:
        self.send_json(session_body(await self.session()))


class GuestSessionByIdHandler(GuestHandler):
    """``GET /api/guest/session/{session_id}``."""

    async def get(self, session_id: str) -> None:
        self.send_json(session_body(await self.session(session_id)))


class GuestStoreHandler(GuestHandler):
    """``POST /api/guest/session/store {store_id}`` (404 ``store_not_found``); another store empties the
    cart (a cart holds one store's items)."""

    async def post(self) -> None:
        session = await self.session()
        store_id = self.json_body().get("store_id")
        if isinstance(store_id, bool) or not isinstance(store_id, int) or not 0 <= store_id < 1 << 31:
            raise ApiError(400, "bad_request", "store_id must be an integer")
        try:
            picked = await self.services.guest_sessions.select_store(session.session_id, store_id,
                                                                  self.services.clock.now())
        except RestaurantNotFound:
            raise ApiError(404, "store_not_found", f"no store {store_id}") from None
        except GuestSessionNotFound:
            raise ApiError(401, "session_expired", "the guest session has expired") from None
        picked.expires_at = session.expires_at
        self.send_json(session_body(picked))


class GuestCartHandler(GuestHandler):
    """``GET /api/guest/cart``."""

    async def get(self) -> None:
        session, store_id = await self.session_with_store()
        await self.send_cart(session.session_id, store_id)


class GuestCartAddHandler(GuestHandler):
    """``POST /api/guest/cart/add {menu_item_id, quantity}``: the same item again adds to its line."""

    async def post(self) -> None:
        session, store_id = await self.session_with_store()
        data = self.json_body()
        menu_item_id = self.field_str(data, "menu_item_id")
        quantity = self.quantity(data, default=1)
        item = self.services.menu.get(menu_item_id)
        if item is None:
            raise ApiError(404, "item_not_found", f"no menu item {menu_item_id}")
        if item.restaurant_id != store_id:
            raise ApiError(422, "wrong_store", "the item belongs to another store than the session's")
        if not item.available:
            raise ApiError(409, "item_unavailable", f"{item.name} is not available now")
        try:
            await self.services.store.add_guest_cart_item(
                session.session_id, menu_item_id, quantity, self.services.clock.now(),
                max_lines=self.services.settings.guest.max_cart_lines,
            )
        except GuestCartFull:
            raise ApiError(409, "cart_full", "the cart is full") from None
        except GuestQuantityTooLarge:
            raise ApiError(400, "invalid_quantity", f"a line holds at most {GUEST_MAX_QUANTITY}") from None
        except GuestSessionNotFound:
            raise ApiError(401, "session_expired", "the guest session has expired") from None
        await self.send_cart(session.session_id, store_id)


class GuestCartItemHandler(GuestHandler):
    """``PUT /api/guest/cart/item/{item_id} {quantity}`` and ``DELETE /api/guest/cart/item/{item_id}``."""

    async def put(self, item_id: str) -> None:
        session, store_id = await self.session_with_store()
        quantity = self.quantity(self.json_body())
        try:
            await self.services.store.set_guest_cart_quantity(session.session_id, int(item_id), quantity,
                                                              self.services.clock.now())
        except GuestCartLineNotFound:
            raise ApiError(404, "not_found", "no such line in this cart") from None
        await self.send_cart(session.session_id, store_id)

    async def delete(self, item_id: str) -> None:
        session, store_id = await self.session_with_store()
        if not await self.services.store.delete_guest_cart_item(session.session_id, int(item_id)):
            raise ApiError(404, "not_found", "no such line in this cart")
        await self.send_cart(session.session_id, store_id)


class MyCartHandler(GuestHandler):
    """``GET /api/me/cart`` (customer token or cookie): the user's cart, the guest session converted to
    them at login (empty when there is none)."""

    async def get(self) -> None:
        from tableside.server.users import user_token  # users imports this module (conversion at login)

        now = self.services.clock.now()
        user = await self.services.accounts.resolve(user_token(self), now)
        if user is None:
            raise ApiError(401, "unauthorized", "login required")
        cart = await self.services.store.get_user_cart_session(user.user_id, now)
        if cart is None:
            self.send_json({"store_id": None, "items": [], "total": 0})
            return
        await self.services.guest_sessions.touch(cart.session_id, now, now + self.ttl_s)
        await self.send_cart(cart.session_id, cart.selected_store_id)


async def convert_on_login(handler: BaseHandler, user_id: str) -> None:
    """A customer login or registration carrying a guest session (cookie or header) converts it: the user
    keeps its cart, or its lines merge into the user's cart (``Store.convert_guest_session``). A missing,
    malformed, unknown or expired id changes nothing and never fails the login. When the lines went into an
    older cart of the user's, the browser's guest cookie is pointed at that cart, so what the page shows
    (``/api/me/cart``) is also what its next cart call changes."""
    sid = guest_session_id(handler)
    if not sid or not _SESSION_ID.match(sid):
        return
    try:
        cart = await handler.services.guest_sessions.convert(sid, user_id, handler.services.clock.now())
    except GuestSessionNotFound:
        return
    if cart is not None and cart.session_id != sid and handler.get_cookie(GUEST_SESSION_COOKIE) == sid:
        set_guest_cookie(handler, cart)
