"""HTTP endpoints: thin handlers that validate, call ``Services`` or the store, and map typed errors."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

import structlog

from tableside.actors.base import ActorDead
from tableside.actors.messages import GetCart
from tableside.cluster.router import RoutingUnavailable
from tableside.protocol.till import transaction_view
from tableside.server.base import GUEST_COOKIE, ApiError, BaseHandler, bearer_token
from tableside.server.guests import guest_session_id
from tableside.server.services import Services
from tableside.server.till import login_order_session
from tableside.storage.interface import (
    PAYMENT_METHODS,
    BadQrSecret,
    GroupFull,
    InvalidTransition,
    JoinResult,
    OrderStatus,
    Restaurant,
    StaffRole,
    StorageError,
    Table,
    TableNotFound,
    TablePaid,
    TokenInfo,
)

log = structlog.get_logger("tableside.http")


def order_view(order: Any) -> dict[str, Any]:
    return {
        "order_id": order.order_id,
        "order_number": order.order_number,
        "status": order.status.value,
        "kitchen_status": order.kitchen_status,
        "items": order.items,
        "total": order.total,
        "special_instructions": order.special_instructions,
        "placed_by": order.placed_by,
        "created_at": order.created_at,
        "confirmed_at": order.confirmed_at,
    }


class HealthHandler(BaseHandler):
    async def get(self) -> None:
        router = self.services.router
        self.send_json(
            {
                "status": "ok",
                "node_id": router.node_id,
                "actors": router.actors,
                "redis": router.redis_status,
                "active_tables": router.actors,
            }
        )


class JoinHandler(BaseHandler):
    """``POST /api/join``. A request carrying ``Authorization: Bearer`` with a valid token of this table's
    open sitting is that member asking again: 200 with the same token and member (no new member). The
    guest cookie is not used here: it is HttpOnly and its value must not be handed to page scripts."""

    async def post(self) -> None:
        check_ip_join_rate(self)
        data = self.json_body()
        table_id = self.field_str(data, "table_id", 64)
        qr = self.field_str(data, "qr", 128)
        token = bearer_token(self)
        existing = await self.services.current_member(token, table_id, qr) if token else None
        if token is not None and existing is not None:
            self.send_json(join_view(token, existing), 200)
            return
        token, result = await join_or_raise(self, table_id, qr)
        self.send_json(join_view(token, result), 201)


def join_view(token: str, member: JoinResult | TokenInfo) -> dict[str, Any]:
    return {
        "token": token,
        "table_id": member.table_id,
        "group_id": member.group_id,
        "member_id": member.member_id,
        "expires_at": member.expires_at,
    }


def check_ip_join_rate(handler: BaseHandler) -> None:
    limit = handler.services.settings.limits.join_per_minute_per_ip
    limiter, ip = handler.services.join_limiter, handler.client_ip()
    if not limiter.allow(ip, handler.services.clock.monotonic()):
        raise ApiError(
            429, "rate_limited", f"too many joins from this address (limit {limit} per minute)",
            headers={"Retry-After": str(limiter.retry_after(ip))},
        )


async def join_or_raise(handler: BaseHandler, table_id: str, qr: str) -> tuple[str, JoinResult]:
    """Join as a new member: the per-table rate limit, then the store's checks, as typed HTTP errors."""
    services = handler.services
    if not services.table_join_allowed(table_id, qr):
        limit = services.settings.limits.join_per_minute_per_table
        raise ApiError(
            429, "rate_limited", f"too many joins at this table (limit {limit} per minute); try again in a minute",
            headers={"Retry-After": str(services.table_join_retry_after(table_id, qr))},
        )
    try:
        return await services.join(table_id, qr)
    except TableNotFound as exc:
        raise ApiError(404, "table_not_found", f"no table {table_id!r}") from exc
    except BadQrSecret as exc:
        raise ApiError(403, "forbidden", "this QR code is not valid for the table") from exc
    except TablePaid as exc:
        raise ApiError(409, "table_paid", "this table has been checked out; please ask staff") from exc
    except GroupFull as exc:
        raise ApiError(
            409,
            "group_full",
            f"This table already has {exc.max_members} guests, the most one table can have. "
            "A guest can make room by leaving the table; otherwise please ask staff.",
        ) from exc


class QrJoinHandler(BaseHandler):
    """What a printed QR code opens: join, set the cookie, then 303 to the guest page. A browser that
    already holds a valid guest cookie for this table's open sitting is sent to the guest page as the same
    member (no new token, no second guest)."""

    async def get(self, table_id: str, qr: str) -> None:
        try:
            check_ip_join_rate(self)
            cookie = self.get_cookie(GUEST_COOKIE)
            member = await self.services.current_member(cookie, table_id, qr) if cookie else None
            if member is not None:
                await self._bring_guest_cart(member.member_id, member.group_id, table_id, member.restaurant_id)
                self.redirect("/guest", status=303)
                return
            token, result = await join_or_raise(self, table_id, qr)
        except ApiError as err:
            finish_error_page(self, err)
            return
        await self._bring_guest_cart(result.member_id, result.group_id, table_id, result.restaurant_id)
        self.set_cookie(
            GUEST_COOKIE,
            token,
            httponly=True,
            secure=self.services.settings.cookie_secure,
            samesite="Lax",  # Lax so the top-level navigation from the QR scan carries it
            expires=result.expires_at,
            path="/",
        )
        self.redirect("/guest", status=303)


    async def _bring_guest_cart(self, member_id: str, group_id: str, table_id: str, store_id: int) -> None:
        """A guest who filled a cart on the store page brings it to the table (their next welcome says
        what came over). Never stands between the guest and the table: if it cannot be done now, the
        guest cart stays as it was and opening the link again tries again."""
        try:
            await self.services.bring_guest_cart(member_id, group_id, table_id, store_id, guest_session_id(self))
        except (RoutingUnavailable, ActorDead, StorageError) as exc:
            log.warning("guest_cart_not_brought", table_id=table_id, error=repr(exc))


class LeaveHandler(BaseHandler):
    """``POST /api/leave`` (Bearer token or cookie): the same as the websocket ``leave`` message. The
    token is revoked, so the answer also clears the guest cookie."""

    async def post(self) -> None:
        info = await self.require_guest()
        answer = await self.services.leave(info)
        if answer.get("type") != "ack":
            raise ApiError(409, str(answer.get("code", "session_closed")), str(answer.get("message", "")))
        self.clear_cookie(GUEST_COOKIE, path="/")
        self.send_json({"left": True, "table_id": info.table_id, "group_id": info.group_id, "member_id": info.member_id})


GUEST_HINT = (
    "A member of staff can help: they can open the table for you or show you the right QR code. "
    "At another table? Scan the QR code on that table."
)


def finish_error_page(handler: BaseHandler, err: ApiError, message: str | None = None, **page: Any) -> None:
    """Answer ``err`` (its status and headers) as a page for a person, not JSON: for links opened in a
    browser (a scanned QR code, a bookmark). ``page``: ``closed_page``'s title, hint and links."""
    handler.set_status(err.status_code)
    for name, value in err.headers.items():
        handler.set_header(name, value)
    handler.set_header("Content-Type", "text/html; charset=utf-8")
    handler.finish(closed_page(message or err.message, **page))


def closed_page(
    message: str,
    *,
    title: str = "Please ask staff",
    hint: str = GUEST_HINT,
    links: Sequence[tuple[str, str]] = (),
) -> str:
    """A small page in the app's style: what happened (``message``) and what to do (``hint``, ``links`` as
    ``(href, label)``). Used for QR join errors and pages a guest or staff member cannot use yet."""
    buttons = "".join(
        f"<li><a class='button primary-link' href='{html.escape(href)}'>{html.escape(label)}</a></li>"
        for href, label in links
    )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        f"<title>Tableside – {html.escape(title)}</title><link rel=icon href='data:,'>"
        "<link rel=stylesheet href='/static/app.css'></head>"
        "<body class='message-page guest'><header class=topbar><div><p class=brand>Tableside</p>"
        f"<h1>{html.escape(title)}</h1></div></header>"
        "<main><section class='card message closed-page'>"
        f"<p class='notice err' role=alert>{html.escape(message[:1].upper() + message[1:])}</p>"
        f"<p>{html.escape(hint)}</p>"
        + (f"<ul class=links>{buttons}</ul>" if buttons else "")
        + "</section></main></body></html>"
    )


def menu_view(services: Services, store_id: int) -> dict[str, Any]:
    """``{"items": [...]}``: one store's menu as guests see it (``/api/menu``, ``/api/stores/{id}/menu``)."""
    return {
        "items": [
            {
                "menu_item_id": i.menu_item_id,
                "name": i.name,
                "category": i.category,
                "price": i.price,
                "available": i.available,
            }
            for i in services.menu.items(store_id)
        ]
    }


def store_view(store: Restaurant) -> dict[str, Any]:
    return {
        "store_id": store.restaurant_id,
        "name": store.name,
        "address": store.address,
        "phone": store.phone,
        "business_hours": store.business_hours,
        "timezone": store.timezone,
    }


class MenuHandler(BaseHandler):
    """The menu of the guest's table's store (a valid guest token, Bearer or cookie); without one the first
    store's (``/api/stores/{id}/menu`` names the store)."""

    async def get(self) -> None:
        info = await self.services.resolve_guest(bearer_token(self) or self.get_cookie(GUEST_COOKIE))
        store_id = info.restaurant_id if info is not None else await self.services.default_store_id()
        self.send_json(menu_view(self.services, store_id))


class StoresHandler(BaseHandler):
    """``GET /api/stores``: every store of the deployment (public)."""

    async def get(self) -> None:
        self.send_json({"stores": [store_view(r) for r in await self.services.stores()]})


class StoreMenuHandler(BaseHandler):
    """``GET /api/stores/{store_id}/menu``: one store's menu (public); 404 ``store_not_found``."""

    async def get(self, store_id: str) -> None:
        rid = int(store_id) if store_id.isdigit() and len(store_id) < 10 else -1
        if rid < 0 or await self.services.store.get_restaurant(rid) is None:
            raise ApiError(404, "store_not_found", f"no store {store_id!r}")
        self.send_json(menu_view(self.services, rid))


class CartHandler(BaseHandler):
    async def get(self) -> None:
        info = await self.require_guest()
        cart = await self.services.ask_group(info, GetCart())
        self.send_json(cart)


class OrdersHandler(BaseHandler):
    async def get(self) -> None:
        info = await self.require_guest()
        orders = await self.services.store.list_group_orders(info.group_id)
        self.send_json({"orders": [order_view(o) for o in orders if o.status == OrderStatus.CONFIRMED]})


# -- staff ---------------------------------------------------------------------------------------------


class StaffLoginHandler(BaseHandler):
    async def post(self) -> None:
        data = self.json_body()
        username = self.field_str(data, "username", 64)
        password = self.field_str(data, "password", 256)
        ip = self.client_ip()
        throttle = self.services.staff_login_throttle
        began = self.services.clock.monotonic()
        wait = throttle.begin(username, ip, began)
        if wait > 0:
            raise ApiError(429, "rate_limited", "too many failed logins from this address; try again later",
                           headers={"Retry-After": str(math.ceil(wait))})
        result = await self.services.staff_auth.login(username, password, self.services.clock.now())
        if result is None:
            raise ApiError(401, "unauthorized", "wrong username or password")
        throttle.succeeded(username, ip, began)
        token, user = result
        till = await login_order_session(self, user.username, user.role)
        self.send_json({"token": token, "username": user.username, "role": user.role.value, **till})


def table_view(handler: BaseHandler, table: Table, *, with_join_url: bool = True) -> dict[str, Any]:
    """A table for staff. ``join_url`` carries the QR secret: only for roles that may print QR codes
    (every caller but the board requires one of those roles)."""
    view: dict[str, Any] = {
        "table_id": table.table_id,
        "name": table.name,
        "status": table.status.value,
        "group_id": table.current_group_id,
        "store_id": table.restaurant_id,
    }
    if with_join_url:
        view["join_url"] = handler.services.join_url(table)
    return view


class StaffTablesHandler(BaseHandler):
    async def get(self) -> None:
        _, scope = await self.require_staff_in_store(StaffRole.MANAGER, StaffRole.SERVER)
        tables = await self.services.store.list_tables(scope.store_id)
        self.send_json([table_view(self, t) for t in tables])


class TableTransitionHandler(BaseHandler):
    """Checkout and reset: staff-only table status changes with the same error mapping."""

    async def change(self, table_id: str) -> Table:
        raise NotImplementedError

    async def extra(self, table: Table) -> dict[str, Any]:
        """More members of the answer (checkout: the transaction)."""
        return {}

    async def post(self, table_id: str) -> None:
        _, scope = await self.require_staff_in_store(StaffRole.MANAGER, StaffRole.SERVER)
        before = await self.services.store.get_table(table_id)
        if before is None or not scope.allows(before.restaurant_id):  # another store's table: not found
            raise ApiError(404, "table_not_found", f"no table {table_id!r}")
        try:
            table = await self.change(table_id)
        except TableNotFound as exc:
            raise ApiError(404, "table_not_found", f"no table {table_id!r}") from exc
        except InvalidTransition as exc:
            raise ApiError(409, "invalid_transition", str(exc) or "not allowed in the table's state") from exc
        self.send_json({**table_view(self, table), **await self.extra(table)})


class CheckoutHandler(TableTransitionHandler):
    """``{"payment_method"?}`` (card, cash, other; default card): the sitting's tab is closed into a
    transaction, answered as ``transaction`` (docs/till.md)."""

    async def change(self, table_id: str) -> Table:
        method = self.json_body().get("payment_method", "card")
        if method not in PAYMENT_METHODS:
            raise ApiError(400, "bad_request", f"payment_method must be one of {', '.join(PAYMENT_METHODS)}",
                           extra={"field": "payment_method"})
        return await self.services.checkout(table_id, str(method))

    async def extra(self, table: Table) -> dict[str, Any]:
        txn = None
        if table.current_group_id:
            tab = await self.services.store.get_group_tab(table.current_group_id)
            if tab is not None and tab.transaction_id is not None:
                txn = await self.services.store.get_transaction(tab.transaction_id)
        return {"transaction": transaction_view(txn) if txn is not None else None}


class ResetHandler(TableTransitionHandler):
    async def change(self, table_id: str) -> Table:
        return await self.services.reset(table_id)
