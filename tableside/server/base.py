"""Handler plumbing: JSON errors, bounded JSON bodies, guest and staff authentication."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import tornado.web

from tableside.auth import token_hash
from tableside.logs import RedactedRequestLogging
from tableside.protocol.codecs import string_problem
from tableside.server.services import Services, ServiceUnavailable
from tableside.storage.interface import StaffRole, StaffSession, StorageUnavailable, TokenInfo

GUEST_COOKIE = "tableside_token"
STAFF_COOKIE = "tableside_staff"
MAX_JSON_BODY = 16 * 1024
MAX_JSON_DEPTH = 32
# A body over MAX_JSON_BODY is answered 413 at once and the rest of it read and dropped (never buffered),
# so the client gets to read the answer; past this many bytes tornado just closes the connection.
MAX_DISCARDED_BODY = 64 << 20


MAX_DB_ID = (1 << 31) - 1  # integer keys are Postgres INTEGERs: a larger id names no row


def db_id(raw: str | int) -> int | None:
    """An id from a path (digits, by the route) or a body as an integer key; None when no row can have it
    (0, negative, or beyond a Postgres INTEGER), so lookups answer 404 without asking the database."""
    value = int(raw)
    return value if 0 < value <= MAX_DB_ID else None


@dataclass(frozen=True, slots=True)
class StoreScope:
    """The stores a staff request may see and change. ``store_id``: the store whose tables, menu, board and
    kitchen the request lists (the user's own store; for an admin the ``?store_id=`` asked for, else the
    first store). ``every``: an admin who did not pick a store may act on a table, item or order of any
    store (it names the object); everyone else only on objects of ``store_id``."""

    store_id: int
    every: bool = False

    def allows(self, store_id: int) -> bool:
        return self.every or store_id == self.store_id


class ApiError(tornado.web.HTTPError):
    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(status, reason=None)
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.extra = extra or {}  # more members of the error body (e.g. ``field``)


def bearer_token(handler: tornado.web.RequestHandler) -> str | None:
    header = handler.request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[7:].strip() or None
    return None


def check_json(value: Any) -> None:
    """Walks a parsed JSON value without recursion: bounded depth, no NUL or lone surrogate anywhere."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            # The websocket protocol's rule (Postgres text cannot hold NUL either).
            if string_problem(item) is not None:
                raise ApiError(400, "bad_request", "strings may not contain NUL or unpaired surrogates")
            continue
        if not isinstance(item, (dict, list)):
            continue
        if depth > MAX_JSON_DEPTH:
            raise ApiError(400, "bad_request", f"body is nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(item, dict):
            stack.extend((k, depth) for k in item)
            stack.extend((v, depth + 1) for v in item.values())
        else:
            stack.extend((v, depth + 1) for v in item)


@tornado.web.stream_request_body
class BaseHandler(RedactedRequestLogging):
    """Bodies are streamed so an oversized one is refused from its Content-Length with a JSON 413, before
    it is read, and one without a length (chunked) is buffered only up to MAX_JSON_BODY."""

    services: Services
    _body: bytearray
    _body_too_large = False

    def initialize(self, services: Services) -> None:
        self.services = services
        self._body = bytearray()

    def prepare(self) -> None:
        declared = self.request.headers.get("Content-Length")
        connection = self.request.connection
        if declared is None:
            if connection is not None and hasattr(connection, "set_max_body_size"):
                connection.set_max_body_size(MAX_DISCARDED_BODY)
            return
        try:
            length = int(declared)
        except ValueError:
            return  # tornado refuses the body itself
        if length > MAX_JSON_BODY:
            if length <= MAX_DISCARDED_BODY and connection is not None and hasattr(connection, "set_max_body_size"):
                connection.set_max_body_size(length)
            raise ApiError(413, "too_large", f"request body larger than {MAX_JSON_BODY} bytes")

    def data_received(self, chunk: bytes) -> None:
        if self._body_too_large:
            return
        if len(self._body) + len(chunk) > MAX_JSON_BODY:
            self._body_too_large = True
            self._body = bytearray()
            return
        self._body.extend(chunk)

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ApiError):
            body = {**exc.extra, "error": exc.code, "message": exc.message}
            for name, value in exc.headers.items():
                self.set_header(name, value)
        elif isinstance(exc, ServiceUnavailable):
            body = {"error": "unavailable", "message": exc.message}
            self.set_header("Retry-After", "1")
        elif isinstance(exc, StorageUnavailable):
            super().write_error(status_code, **kwargs)  # 503 unavailable
            return
        elif status_code == 404:
            body = {"error": "not_found", "message": "not found"}
        elif status_code == 405:
            body = {"error": "method_not_allowed", "message": "method not allowed"}
        elif status_code < 500:
            body = {"error": "bad_request", "message": self._reason}
        else:
            body = {"error": "internal", "message": "internal error"}
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(body))

    def send_json(self, body: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(body, separators=(",", ":")))

    def json_body(self) -> dict[str, Any]:
        """The body as a JSON object: at most MAX_JSON_BODY bytes and MAX_JSON_DEPTH levels, and no string
        (key or value) holding NUL or a lone surrogate. Anything else is 400 ``bad_request`` (413 when too
        large), never an error further down."""
        if self._body_too_large:
            raise ApiError(413, "too_large", f"request body larger than {MAX_JSON_BODY} bytes")
        try:
            data = json.loads(bytes(self._body) or b"{}")
        except RecursionError as exc:
            raise ApiError(400, "bad_request", "body is nested too deeply") from exc
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, "bad_request", "body is not valid JSON") from exc
        if not isinstance(data, dict):
            raise ApiError(400, "bad_request", "body must be a JSON object")
        check_json(data)
        return data

    @staticmethod
    def field_str(data: dict[str, Any], name: str, max_len: int = 128) -> str:
        value = data.get(name)
        if not isinstance(value, str) or not 0 < len(value) <= max_len:
            raise ApiError(400, "bad_request", f"{name} must be a string of 1..{max_len} characters")
        return value

    def client_ip(self) -> str:
        return self.request.remote_ip or "unknown"

    async def require_guest(self) -> TokenInfo:
        token = bearer_token(self) or self.get_cookie(GUEST_COOKIE)
        info = await self.services.resolve_guest(token)
        if info is None:
            raise ApiError(401, "unauthorized", "token unknown, expired or revoked")
        return info

    async def require_staff(self, *roles: StaffRole) -> StaffSession:
        token = bearer_token(self) or self.get_cookie(STAFF_COOKIE)
        session = None
        if token and len(token) <= 128:
            session = await self.services.store.resolve_staff_session(token_hash(token), self.services.clock.now())
        if session is None:
            raise ApiError(401, "unauthorized", "staff login required")
        if roles and session.role not in roles and session.role != StaffRole.ADMIN:
            raise ApiError(403, "forbidden", f"needs role {' or '.join(r.value for r in roles)}")
        return session

    async def staff_scope(self, session: StaffSession) -> StoreScope:
        """Resolve the request's store: a staff user works in their store (a non-admin without one: the
        first store); an admin bound to no store picks one with ``?store_id=`` (default: the first store).
        Asking for another store than one's own is 403 ``forbidden``; an unknown store 404."""
        raw = self.get_query_argument("store_id", None)
        requested: int | None = None
        if raw is not None:
            try:
                requested = int(raw)
            except ValueError as exc:
                raise ApiError(400, "bad_request", "store_id must be an integer") from exc
            if not 0 <= requested <= MAX_DB_ID:
                raise ApiError(400, "bad_request", "store_id out of range")
        if session.role == StaffRole.ADMIN and session.store_id is None:
            if requested is None:
                return StoreScope(await self.services.default_store_id(), every=True)
            if await self.services.store.get_restaurant(requested) is None:
                raise ApiError(404, "store_not_found", f"no store {requested}")
            return StoreScope(requested)
        own = session.store_id if session.store_id is not None else await self.services.default_store_id()
        if requested is not None and requested != own:
            raise ApiError(403, "forbidden", "your staff login is for another store")
        return StoreScope(own)

    async def require_staff_in_store(self, *roles: StaffRole) -> tuple[StaffSession, StoreScope]:
        session = await self.require_staff(*roles)
        return session, await self.staff_scope(session)
