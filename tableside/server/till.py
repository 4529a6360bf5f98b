"""The till API (docs/till.md): order sessions, tabs, and the staff websocket. Thin handlers: parse, check
who may, ask the user's ``TillActor`` (through ``services.till``), map the typed errors."""

from __future__ import annotations

from typing import Any

import structlog

from tableside.actors.till import (
    Assigned,
    AssignToTab,
    Caller,
    Complete,
    Completed,
    Delete,
    IfMatchRequired,
    ItemRejected,
    LoginAnswer,
    LoginRecover,
    LogoutPark,
    Saved,
    SaveOpen,
    TakeOver,
    TillMessage,
    TillMoved,
    Update,
)
from tableside.auth import token_hash
from tableside.protocol import OutboundFrame
from tableside.protocol import server_messages as sm
from tableside.protocol.till import (
    TillItemsError,
    TillLine,
    parse_till_items,
    session_view,
    tab_view,
    transaction_view,
    valid_till_id,
)
from tableside.server.base import STAFF_COOKIE, ApiError, BaseHandler, StoreScope, bearer_token, db_id
from tableside.server.services import Services
from tableside.server.ws import SessionSocket
from tableside.storage.interface import (
    PAYMENT_METHODS,
    InvalidTransition,
    OrderSession,
    OrderSessionNotFound,
    OrderSessionStatus,
    RevisionMismatch,
    StaffRole,
    StaffSession,
    Tab,
    TabClosed,
    TableNotFound,
    TabNotFound,
    TabStatus,
)

log = structlog.get_logger("tableside.till")

TILL_ROLES = (StaffRole.MANAGER, StaffRole.SERVER)  # and admin (always)
SUPERVISORS = (StaffRole.ADMIN, StaffRole.MANAGER)
TILL_HEADER = "X-Till-Id"
def header_till_id(handler: BaseHandler) -> str | None:
    raw = handler.request.headers.get(TILL_HEADER)
    if raw is None or raw == "":
        return None
    if not valid_till_id(raw):
        raise ApiError(400, "bad_request", f"{TILL_HEADER} must be 1..64 characters [A-Za-z0-9_.:-]")
    return raw


def payment_method(data: dict[str, Any]) -> str:
    value = data.get("payment_method", "card")
    if value is None:
        return "card"
    if value not in PAYMENT_METHODS:
        raise ApiError(400, "bad_request", f"payment_method must be one of {', '.join(PAYMENT_METHODS)}",
                       extra={"field": "payment_method"})
    return str(value)


def etag(session: OrderSession) -> str:
    return f'"{session.revision}"'


def map_till_error(exc: Exception) -> ApiError | None:
    """The HTTP error for a typed failure of a till call (None: not one of ours)."""
    match exc:
        case OrderSessionNotFound():
            return ApiError(404, "not_found", "no such order session")
        case RevisionMismatch():
            return ApiError(409, "revision_mismatch", f"the session is at revision {exc.current.revision}",
                            headers={"ETag": etag(exc.current)}, extra={"session": session_view(exc.current)})
        case TillMoved():
            return ApiError(409, "moved", f"this session is open on till {exc.session.till_id}",
                            headers={"ETag": etag(exc.session)},
                            extra={"till_id": exc.session.till_id, "session": session_view(exc.session)})
        case IfMatchRequired():
            return ApiError(428, "if_match_required", str(exc), headers={"ETag": etag(exc.session)},
                            extra={"session": session_view(exc.session)})
        case ItemRejected():
            status = 409 if exc.code == "item_unavailable" else 400
            return ApiError(status, exc.code, exc.message, extra={"field": exc.field})
        case TabNotFound():
            return ApiError(404, "not_found", "no such tab")
        case TabClosed():
            return ApiError(409, "tab_closed", f"tab {exc.tab.tab_id} is closed")
        case InvalidTransition():
            return ApiError(409, "invalid_transition", str(exc) or "not allowed in the session's state")
    return None


async def ask_till(services: Services, username: str, message: TillMessage) -> Any:
    try:
        return await services.till.ask(username, message)
    except Exception as exc:
        mapped = map_till_error(exc)
        if mapped is not None:
            raise mapped from exc
        raise


class TillHandler(BaseHandler):
    staff: StaffSession
    scope: StoreScope

    async def auth(self) -> Caller:
        self.staff, self.scope = await self.require_staff_in_store(*TILL_ROLES)
        return Caller(self.staff.username, header_till_id(self))

    @property
    def supervisor(self) -> bool:
        return self.staff.role in SUPERVISORS

    async def visible_session(self, raw_id: str) -> OrderSession:
        """The session if the caller may reach it (their own; a supervisor's store's); else 404."""
        sid = db_id(raw_id)
        session = await self.services.store.get_order_session(sid) if sid is not None else None
        if session is None or not self.may_see(session):
            raise ApiError(404, "not_found", f"no order session {raw_id}")
        return session

    async def visible_tab(self, raw_id: str | int) -> Tab:
        """The tab if it is of the caller's store scope; else 404."""
        tid = db_id(raw_id)
        tab = await self.services.store.get_tab(tid) if tid is not None else None
        if tab is None or not self.scope.allows(tab.store_id):
            raise ApiError(404, "not_found", f"no tab {raw_id}")
        return tab

    def may_see(self, session: OrderSession) -> bool:
        if session.user_id == self.staff.username:
            return True
        return self.supervisor and self.scope.allows(session.store_id)

    def if_match(self, *, required: bool) -> int | None:
        raw = self.request.headers.get("If-Match")
        if raw is None or raw.strip() == "":
            if required:
                raise ApiError(428, "if_match_required", "send If-Match with the session's revision")
            return None
        value = raw.strip()
        if value.startswith("W/"):
            value = value[2:]
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if not value.isascii() or not value.isdigit() or len(value) > 12:
            raise ApiError(400, "bad_request", 'If-Match must be a revision: "3" or 3')
        return int(value)

    def send_session(self, session: OrderSession, status: int = 200) -> None:
        self.set_header("ETag", etag(session))
        self.send_json(session_view(session), status)

    def items(self, data: dict[str, Any], *, required: bool) -> tuple[TillLine, ...] | None:
        if "items" not in data:
            if required:
                raise ApiError(400, "bad_request", "items is required", extra={"field": "items"})
            return None
        try:
            return tuple(parse_till_items(data["items"]))
        except TillItemsError as exc:
            raise ApiError(400, "bad_request", exc.message, extra={"field": exc.field}) from exc


class ActiveSessionHandler(TillHandler):
    """``GET /api/order-sessions/active``: the caller's open session, or null."""

    async def get(self) -> None:
        await self.auth()
        session = await self.services.store.get_open_order_session(self.staff.username)
        if session is not None:
            self.set_header("ETag", etag(session))
        self.send_json({"session": session_view(session) if session is not None else None})


class OrderSessionsHandler(TillHandler):
    async def get(self) -> None:
        """Supervisors: the store's sessions, newest first (``status``, ``user``, ``limit``)."""
        await self.auth()
        if not self.supervisor:
            raise ApiError(403, "forbidden", "needs role manager or admin")
        raw_status = self.get_query_argument("status", None)
        status: OrderSessionStatus | None = None
        if raw_status:
            try:
                status = OrderSessionStatus(raw_status)
            except ValueError as exc:
                raise ApiError(400, "bad_request", "unknown status") from exc
        user = self.get_query_argument("user", None) or None
        if user is not None and len(user) > 64:
            raise ApiError(400, "bad_request", "user must be at most 64 characters")
        raw_limit = self.get_query_argument("limit", "200")
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 200:
            raise ApiError(400, "bad_request", "limit must be 1..200")
        sessions = await self.services.store.list_order_sessions(
            self.scope.store_id, status=status, user_id=user, limit=int(raw_limit)
        )
        self.send_json({"sessions": [session_view(s) for s in sessions]})

    async def post(self) -> None:
        """Create the caller's open session (201) or update it (200, If-Match required)."""
        caller = await self.auth()
        lines = self.items(self.json_body(), required=False) or ()
        expected = self.if_match(required=False)
        saved: Saved = await ask_till(
            self.services, caller.username, SaveOpen(caller, self.scope.store_id, lines, expected)
        )
        self.send_session(saved.session, 201 if saved.created else 200)


class OrderSessionHandler(TillHandler):
    async def get(self, session_id: str) -> None:
        await self.auth()
        self.send_session(await self.visible_session(session_id))

    async def put(self, session_id: str) -> None:
        caller = await self.auth()
        session = await self.visible_session(session_id)
        data = self.json_body()
        lines = self.items(data, required=False)
        status: OrderSessionStatus | None = None
        if "status" in data:
            raw = data["status"]
            try:
                status = OrderSessionStatus(raw) if isinstance(raw, str) else None
            except ValueError:
                status = None
            if status is None:
                raise ApiError(400, "bad_request", "unknown status", extra={"field": "status"})
        expected = self.if_match(required=True)
        assert expected is not None
        saved: Saved = await ask_till(
            self.services, session.user_id, Update(caller, session.session_id, expected, lines, status)
        )
        self.send_session(saved.session)

    async def delete(self, session_id: str) -> None:
        caller = await self.auth()
        session = await self.visible_session(session_id)
        await ask_till(self.services, session.user_id, Delete(caller, session.session_id))
        self.set_status(204)
        self.finish()


class CompleteHandler(TillHandler):
    async def post(self, session_id: str) -> None:
        caller = await self.auth()
        session = await self.visible_session(session_id)
        method = payment_method(self.json_body())
        expected = self.if_match(required=False)
        done: Completed = await ask_till(
            self.services, session.user_id, Complete(caller, session.session_id, expected, method)
        )
        self.set_header("ETag", etag(done.session))
        self.send_json({"transaction": transaction_view(done.transaction), "session": session_view(done.session),
                        "order_id": done.order.order_id})


class AssignHandler(TillHandler):
    async def post(self, session_id: str) -> None:
        caller = await self.auth()
        session = await self.visible_session(session_id)
        tab_id = self.json_body().get("tab_id")
        if type(tab_id) is not int or not 0 < tab_id < 1 << 53:
            raise ApiError(400, "bad_request", "tab_id must be a positive integer", extra={"field": "tab_id"})
        await self.visible_tab(tab_id)
        expected = self.if_match(required=False)
        done: Assigned = await ask_till(
            self.services, session.user_id, AssignToTab(caller, session.session_id, tab_id, expected)
        )
        self.set_header("ETag", etag(done.session))
        self.send_json({"session": session_view(done.session),
                        "tab": tab_view(done.tab) if done.tab is not None else None,
                        "order_id": done.order.order_id})


class TakeOverHandler(TillHandler):
    async def post(self, session_id: str) -> None:
        caller = await self.auth()
        if caller.till_id is None:
            raise ApiError(400, "till_required", f"take-over needs the {TILL_HEADER} header")
        session = await self.visible_session(session_id)
        saved: Saved = await ask_till(self.services, session.user_id, TakeOver(caller, session.session_id))
        self.send_session(saved.session)


# -- tabs --------------------------------------------------------------------------------------------


class TabsHandler(TillHandler):
    async def get(self) -> None:
        await self.auth()
        raw = self.get_query_argument("status", None)
        status: TabStatus | None = None
        if raw:
            try:
                status = TabStatus(raw)
            except ValueError as exc:
                raise ApiError(400, "bad_request", "status must be open or closed") from exc
        tabs = await self.services.store.list_tabs(self.scope.store_id, status=status)
        self.send_json({"tabs": [tab_view(t) for t in tabs]})

    async def post(self) -> None:
        await self.auth()
        name = self.field_str(self.json_body(), "name", 64)
        tab = await self.services.store.create_tab(self.scope.store_id, name, self.services.clock.now())
        self.send_json(tab_view(tab), 201)


class TabHandler(TillHandler):
    async def tab(self, raw_id: str) -> Tab:
        return await self.visible_tab(raw_id)

    async def get(self, tab_id: str) -> None:
        await self.auth()
        self.send_json(tab_view(await self.tab(tab_id)))


class CloseTabHandler(TabHandler):
    async def post(self, tab_id: str) -> None:
        await self.auth()
        tab = await self.tab(tab_id)
        method = payment_method(self.json_body())
        if tab.table_id and tab.status == TabStatus.OPEN:
            # A table's tab: check the table out (its phones are closed, the tab is closed into the
            # transaction by the same database transaction). A table no longer at that sitting: the tab
            # alone is closed below.
            table = await self.services.store.get_table(tab.table_id)
            if table is not None and table.current_group_id == tab.group_id:
                try:
                    await self.services.checkout(tab.table_id, method)
                except (InvalidTransition, TableNotFound):
                    pass
        try:
            closed, txn = await self.services.store.close_tab(tab.tab_id, method, self.services.clock.now())
        except Exception as exc:
            mapped = map_till_error(exc)
            if mapped is not None:
                raise mapped from exc
            raise
        self.send_json({"tab": tab_view(closed), "transaction": transaction_view(txn)})


# -- login and logout (called by the staff handlers) -------------------------------------------------------


async def login_order_session(handler: BaseHandler, username: str, role: StaffRole) -> dict[str, Any]:
    """``order_session`` and ``warning`` of the login answer of a till role (a kitchen login has neither);
    recovery of a parked session onto this till. Never fails the login: a till problem is logged and
    answered as no session."""
    if role not in (StaffRole.ADMIN, *TILL_ROLES):
        return {}
    till = header_till_id(handler)
    try:
        answer: LoginAnswer = await handler.services.till.ask(username, LoginRecover(Caller(username, till)))
    except Exception as exc:
        log.warning("till_login_recovery_failed", username=username, error=repr(exc))
        return {"order_session": None, "warning": None}
    return {"order_session": session_view(answer.session) if answer.session is not None else None,
            "warning": answer.warning}


async def logout_order_session(handler: BaseHandler, username: str) -> None:
    """Park the user's active session (when this till is its till, or no till is named)."""
    try:
        till = header_till_id(handler)
    except ApiError:
        till = None
    try:
        await handler.services.till.ask(username, LogoutPark(Caller(username, till)))
    except Exception as exc:
        log.warning("till_logout_park_failed", username=username, error=repr(exc))


# -- the staff websocket ---------------------------------------------------------------------------------


class StaffSocket(SessionSocket):
    """``/ws/staff?token=…&till_id=…``: a till's live view of its user's order sessions."""

    session: StaffSession
    session_key: str
    till_id: str | None = None
    subscribed = False
    welcomed = False
    kind = "staff"

    async def get(self, *args: Any, **kwargs: Any) -> None:
        token = self.get_query_argument("token", None)
        if token:
            self.request.headers["Authorization"] = f"Bearer {token}"
        try:
            self.session = await BaseHandler.require_staff(self, *TILL_ROLES)  # type: ignore[arg-type]
        except ApiError as err:
            self.refuse(err.status_code, err.code, err.message)
            return
        till = self.get_query_argument("till_id", None)
        if till is not None and till != "" and not valid_till_id(till):
            self.refuse(400, "bad_request", "till_id must be 1..64 characters [A-Za-z0-9_.:-]")
            return
        self.till_id = till or None
        self.session_key = token_hash(bearer_token(self) or self.get_cookie(STAFF_COOKIE) or "")
        self._early: list[OutboundFrame] = []
        await super().get(*args, **kwargs)

    async def open(self, *args: str, **kwargs: str) -> None:
        self.set_nodelay(True)
        self.watch()
        services = self.services
        # Subscribe first, then read: a change made meanwhile is held back and sent after the welcome.
        services.till_hub.subscribe(self, self.session.username, session=self.session_key,
                                    expires_at=self.session.expires_at)
        self.subscribed = True
        try:
            current = await services.store.get_open_order_session(self.session.username)
        except Exception as exc:
            log.warning("staff_socket_welcome_failed", error=repr(exc))
            self.close(1011, "retry")
            return
        welcome = sm.staff_welcome(
            self.session.username, self.session.role.value, self.till_id,
            session_view(current) if current is not None else None,
        )
        self.welcomed = True
        self.send_message(welcome)
        early, self._early = self._early, []
        for frame in early:
            super().send(frame)

    def send(self, frame: OutboundFrame) -> None:
        if not self.welcomed and self.subscribed and frame.type != "session_closed":
            self._early.append(frame)
            return
        super().send(frame)

    def end_session(self, reason: str) -> None:
        self.welcomed = True  # session_closed goes out now, not held back for a welcome that never comes
        super().end_session(reason)

    def on_close(self) -> None:
        if self.subscribed:
            self.services.till_hub.unsubscribe(self)
