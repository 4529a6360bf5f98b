"""Staff and kitchen endpoints: table board and admin, menu availability ("86"), kitchen tickets,
the printable QR sheet and the kitchen-screen websocket."""

from __future__ import annotations

import asyncio
import html
import io
from typing import Any

import segno

from tableside.actors.cart import GroupState
from tableside.actors.messages import KitchenStatusChanged
from tableside.auth import new_qr_secret, token_hash
from tableside.cluster.router import RoutingUnavailable
from tableside.kitchen_flow import InvalidKitchenTransition, next_kitchen_status
from tableside.protocol import (
    ErrorCode,
    Ping,
)
from tableside.protocol import (
    server_messages as sm,
)
from tableside.server.base import STAFF_COOKIE, ApiError, BaseHandler, StoreScope, bearer_token
from tableside.server.http import StaffTablesHandler, finish_error_page, table_view
from tableside.server.kitchen import ticket_view
from tableside.server.services import Services
from tableside.server.till import logout_order_session
from tableside.server.ws import SessionSocket
from tableside.storage.interface import (
    OrderRecord,
    OrderStatus,
    StaffRole,
    StaffSession,
    StorageError,
    Table,
    TableNotFound,
    TableStatus,
)

FLOOR = (StaffRole.MANAGER, StaffRole.SERVER)
KITCHEN = (StaffRole.KITCHEN, StaffRole.MANAGER)
MENU_EDITORS = (StaffRole.MANAGER, StaffRole.KITCHEN)
ANY_STAFF = (StaffRole.MANAGER, StaffRole.SERVER, StaffRole.KITCHEN)
# Who may print QR codes, and so see a table's join URL (it carries the QR secret). Admin always may.
QR_PRINTERS = (StaffRole.MANAGER, StaffRole.SERVER)
TABLE_ID_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")

_kitchen_lock = asyncio.Lock()


def may_print_qr(session: StaffSession) -> bool:
    return session.role in QR_PRINTERS or session.role == StaffRole.ADMIN


async def change_kitchen_status(
    services: Services, order_id: str, requested: str, scope: StoreScope
) -> OrderRecord:
    """Validate and apply a ticket status change, then tell every screen and the table's phones (setting the
    current status changes nothing and tells no one). A ticket of a store outside ``scope`` is not found."""
    async with _kitchen_lock:  # two screens bumping one ticket at once see one order of events
        order = await services.store.get_order(order_id)
        if order is None or order.status != OrderStatus.CONFIRMED or not scope.allows(order.restaurant_id):
            raise ApiError(404, "not_found", f"no kitchen ticket {order_id!r}")
        try:
            status = next_kitchen_status(order.kitchen_status, requested)
        except InvalidKitchenTransition as exc:
            raise ApiError(409, "invalid_transition", str(exc)) from exc
        if status == order.kitchen_status:
            return order  # a no-op: nothing changed, so nothing to tell anyone
        order = await services.store.set_kitchen_status(order_id, status)
    services.router.kitchen_message(order.restaurant_id, sm.order_status(order.order_id, order.kitchen_status))
    try:
        await services.router.tell_group(order.group_id, KitchenStatusChanged(order.order_id, order.kitchen_status))
    except RoutingUnavailable:
        pass  # the status is stored and on every kitchen screen; the guests see it on their next reconnect
    return order


class StaffLogoutHandler(BaseHandler):
    """Ends the presented session. Idempotent: an unknown, expired or missing token is also 204."""

    async def post(self) -> None:
        token = bearer_token(self) or self.get_cookie(STAFF_COOKIE)
        if token and len(token) <= 128:
            who = await self.services.store.resolve_staff_session(token_hash(token), self.services.clock.now())
            await self.services.staff_auth.logout(token)
            if who is not None:  # the till's open order is parked, to be picked up at the next login
                await logout_order_session(self, who.username)
            # Kitchen screens opened with this token close now (4001 after session_closed "logged_out").
            self.services.router.sessions_ended({token_hash(token)}, "logged_out")
        self.clear_cookie(STAFF_COOKIE, path="/")
        self.set_status(204)
        self.finish()


class BoardHandler(BaseHandler):
    async def get(self) -> None:
        session, scope = await self.require_staff_in_store(*ANY_STAFF)
        tables = await self.services.store.list_tables(scope.store_id)
        with_join_url = may_print_qr(session)
        rows = await asyncio.gather(*(self._row(t, with_join_url) for t in tables))
        self.send_json(rows)

    async def _row(self, table: Table, with_join_url: bool) -> dict[str, Any]:
        row = table_view(self, table, with_join_url=with_join_url)
        row.update(
            members_online=0, cart_total=0, pending_order_id=None, order_processing_status="idle", owner_node=None
        )
        gid = table.current_group_id
        if table.status != TableStatus.OCCUPIED or gid is None:
            return row
        owner, info = await self.services.router.table_info(gid)
        row["owner_node"] = owner
        if info is not None:
            cart = info["cart"]
            row["members_online"] = info["members_online"]
        else:
            snap = await self.services.store.load_group(gid)
            if snap is None:
                return row
            cart = GroupState.from_snapshot(snap.revision, snap.state).view()
        row.update(
            cart_total=cart["total"],
            pending_order_id=cart["pending_order_id"],
            order_processing_status=cart["order_processing_status"],
        )
        return row


class TablesAdminHandler(StaffTablesHandler):
    async def post(self) -> None:
        _, scope = await self.require_staff_in_store(StaffRole.MANAGER)
        data = self.json_body()
        table_id = self.field_str(data, "table_id", 32)
        if not set(table_id) <= TABLE_ID_CHARS:
            raise ApiError(400, "bad_request", "table_id may use letters, digits, - and _")
        name = self.field_str(data, "name", 64) if "name" in data else table_id
        if await self.services.store.get_table(table_id) is not None:
            raise ApiError(409, "exists", f"table {table_id} exists")
        table = Table(table_id, scope.store_id, name, TableStatus.VACANT, None, new_qr_secret(),
                      self.services.clock.now())
        await self.services.store.add_table(table)
        self.send_json(table_view(self, table), 201)


class TableAdminHandler(BaseHandler):
    async def delete(self, table_id: str) -> None:
        _, scope = await self.require_staff_in_store(StaffRole.MANAGER)
        table = await self._table(table_id, scope)
        if table.status == TableStatus.OCCUPIED:
            raise ApiError(409, "invalid_transition", "check the table out before removing it")
        await self.services.store.remove_table(table_id)
        self.send_json({"removed": table_id})

    async def _table(self, table_id: str, scope: StoreScope) -> Table:
        """The table, when it is one of the scope's stores (another store's table is not found: no leak)."""
        table = await self.services.store.get_table(table_id)
        if table is None or not scope.allows(table.restaurant_id):
            raise ApiError(404, "table_not_found", f"no table {table_id!r}")
        return table


class RenameTableHandler(TableAdminHandler):
    async def post(self, table_id: str) -> None:
        _, scope = await self.require_staff_in_store(StaffRole.MANAGER)
        name = self.field_str(self.json_body(), "name", 64)
        await self._table(table_id, scope)
        try:
            table = await self.services.store.rename_table(table_id, name)
        except TableNotFound as exc:
            raise ApiError(404, "table_not_found", f"no table {table_id!r}") from exc
        self.send_json(table_view(self, table))


class RotateQrHandler(TableAdminHandler):
    async def post(self, table_id: str) -> None:
        _, scope = await self.require_staff_in_store(StaffRole.MANAGER)
        await self._table(table_id, scope)
        try:
            table = await self.services.store.rotate_qr_secret(table_id, new_qr_secret(), self.services.clock.now())
        except TableNotFound as exc:
            raise ApiError(404, "table_not_found", f"no table {table_id!r}") from exc
        self.send_json(table_view(self, table))


class StaffMenuHandler(BaseHandler):
    async def get(self) -> None:
        _, scope = await self.require_staff_in_store(*ANY_STAFF)
        items = self.services.menu.items(scope.store_id)
        self.send_json({"items": [
            {"menu_item_id": i.menu_item_id, "name": i.name, "category": i.category, "price": i.price,
             "available": i.available} for i in items
        ]})


class AvailabilityHandler(BaseHandler):
    async def post(self, menu_item_id: str) -> None:
        _, scope = await self.require_staff_in_store(*MENU_EDITORS)
        available = self.json_body().get("available")
        if not isinstance(available, bool):
            raise ApiError(400, "bad_request", "available must be true or false")
        known = self.services.menu.get(menu_item_id)
        if known is None or not scope.allows(known.restaurant_id):
            raise ApiError(404, "not_found", f"no menu item {menu_item_id!r}")
        try:
            item = await self.services.set_availability(menu_item_id, available)
        except StorageError as exc:
            raise ApiError(404, "not_found", str(exc)) from exc
        self.send_json({"menu_item_id": item.menu_item_id, "name": item.name, "available": item.available})


class KitchenStatusHandler(BaseHandler):
    async def post(self, order_id: str) -> None:
        _, scope = await self.require_staff_in_store(*KITCHEN)
        status = self.field_str(self.json_body(), "status", 16)
        order = await change_kitchen_status(self.services, order_id, status, scope)
        self.send_json({"order_id": order.order_id, "status": order.kitchen_status})


class KitchenTicketsHandler(BaseHandler):
    async def get(self) -> None:
        _, scope = await self.require_staff_in_store(*KITCHEN)
        since = _int_arg(self.get_query_argument("since", "0"))
        orders = await self.services.store.list_kitchen_orders(scope.store_id, since, 500)
        self.send_json({"tickets": [ticket_view(o) for o in orders]})


def _int_arg(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError as exc:
        raise ApiError(400, "bad_request", "since must be an integer") from exc
    if not 0 <= value < 1 << 62:
        raise ApiError(400, "bad_request", "since out of range")
    return value


class QrSheetHandler(BaseHandler):
    """One QR code per table (segno), as a printable HTML page or a PDF (``?format=pdf``)."""

    async def get(self) -> None:
        token = self.get_query_argument("token", None)
        if token:
            self.request.headers["Authorization"] = f"Bearer {token}"
        try:
            _, scope = await self.require_staff_in_store(*QR_PRINTERS)
        except ApiError as err:
            # Opened in a browser (a bookmark, a link from the startup banner): a page that says what to
            # do. API clients (no text/html in Accept) keep the JSON error.
            if "text/html" not in self.request.headers.get("Accept", ""):
                raise
            what = "This link has expired or is not valid" if token else "The QR sheet is for staff only"
            if err.status_code == 403:
                what = "Your staff role cannot print the QR sheet (it needs manager or server)"
                if "store" in err.message:
                    what = "Your staff login is for another store"
            finish_error_page(
                self,
                err,
                f"{what}.",
                title="Staff login needed",
                hint="Log in on the staff console, then open the QR sheet with the “QR sheet” button there.",
                links=[("/staff", "Log in on the staff console")],
            )
            return
        tables = await self.services.store.list_tables(scope.store_id)
        if self.get_query_argument("format", "html") == "pdf":
            self.set_header("Content-Type", "application/pdf")
            self.set_header("Content-Disposition", "inline; filename=qr-sheet.pdf")
            self.finish(qr_sheet_pdf([(t.name, self.services.join_url(t)) for t in tables]))
            return
        cards = []
        for t in tables:
            url = self.services.join_url(t)
            svg = segno.make(url, error="m").svg_inline(scale=4, dark="#000", light="#fff")
            cards.append(
                f"<figure class=card>{svg}<figcaption><strong>{html.escape(t.name)}</strong><br>"
                f"<small>{html.escape(t.table_id)}</small></figcaption></figure>"
            )
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(
            "<!doctype html><html lang=en><head><meta charset=utf-8><title>QR sheet</title><style>"
            "body{font-family:system-ui,sans-serif}main{display:flex;flex-wrap:wrap;gap:12px}"
            ".card{border:1px dashed #888;padding:10px;margin:0;text-align:center;width:200px;break-inside:avoid}"
            "</style></head><body><h1>Scan to order</h1><main>" + "".join(cards) + "</main></body></html>"
        )


def qr_sheet_pdf(entries: list[tuple[str, str]]) -> bytes:
    """A PDF with a grid of QR codes, drawn by matplotlib's PDF backend from segno's module matrix."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backends.backend_pdf import PdfPages
    from matplotlib.figure import Figure

    out = io.BytesIO()
    per_page = 12
    with PdfPages(out) as pdf:
        for start in range(0, max(len(entries), 1), per_page):
            fig = Figure(figsize=(8.27, 11.69))
            for i, (name, url) in enumerate(entries[start:start + per_page]):
                ax = fig.add_subplot(4, 3, i + 1)
                matrix = [[1 - int(bool(v)) for v in row] for row in segno.make(url, error="m").matrix]
                ax.imshow(matrix, cmap="gray", interpolation="nearest")
                ax.set_title(name, fontsize=10)
                ax.axis("off")
            pdf.savefig(fig)
    return out.getvalue()


class KitchenSocket(SessionSocket):
    """A kitchen display: every confirmed order once, in order; status changes from any screen."""

    session: StaffSession
    scope: StoreScope
    session_key: str  # hash of the staff token: the screen lives as long as that session
    subscribed = False
    kind = "kitchen"

    async def get(self, *args: Any, **kwargs: Any) -> None:
        token = self.get_query_argument("token", None)
        if token:
            self.request.headers["Authorization"] = f"Bearer {token}"
        try:
            self.session = await BaseHandler.require_staff(self, *KITCHEN)  # type: ignore[arg-type]
            self.scope = await BaseHandler.staff_scope(self, self.session)  # type: ignore[arg-type]
        except ApiError as err:
            self.refuse(err.status_code, err.code, err.message)
            return
        self.session_key = token_hash(bearer_token(self) or self.get_cookie(STAFF_COOKIE) or "")
        try:
            self.since = _int_arg(self.get_query_argument("since", "0")) if self.get_query_argument(
                "since", None) is not None else None
        except ApiError as err:
            self.refuse(400, err.code, err.message)
            return
        await super().get(*args, **kwargs)

    async def open(self, *args: str, **kwargs: str) -> None:
        self.set_nodelay(True)
        self.watch()
        services = self.services
        rid = self.scope.store_id  # the screen shows the orders of one store only
        # Snapshot first (open tickets up to the cursor), then live orders after the cursor: no ticket twice.
        open_orders: list[OrderRecord] = []
        cursor = 0
        while True:
            page = await services.store.list_kitchen_orders(rid, cursor, 500)
            open_orders.extend(page)
            if page:
                cursor = page[-1].kitchen_seq or cursor
            if len(page) < 500:
                break
        if self.since is not None:
            cursor = min(cursor, self.since)
            open_orders = [o for o in open_orders if (o.kitchen_seq or 0) <= cursor]
        tickets = [ticket_view(o) for o in open_orders if o.kitchen_status != "served"]
        self.send_message(sm.kitchen_snapshot(tickets, cursor))
        services.kitchen.subscribe(self, rid, cursor, session=self.session_key, expires_at=self.session.expires_at)
        self.subscribed = True

    async def on_message(self, message: str | bytes) -> None:
        msg = self.read_frame(message)
        if msg is None or isinstance(msg, Ping):
            return
        try:
            order = await change_kitchen_status(self.services, msg.order_id, msg.status, self.scope)
        except ApiError as err:
            code = ErrorCode.NOT_FOUND if err.status_code == 404 else ErrorCode.BAD_REQUEST
            self.send_message(sm.error(msg.request_id, code, err.message))
            return
        self.send_message(sm.ack(msg.request_id, order.kitchen_seq or 0, status=order.kitchen_status))

    def on_close(self) -> None:
        if self.subscribed:
            self.services.kitchen.unsubscribe(self)
