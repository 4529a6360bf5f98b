"""Handler plumbing: JSON errors, bounded JSON bodies, guest and staff authentication."""

from __future__ import annotations

import json
from typing import Any

import tornado.web

from tableside.auth import token_hash
from tableside.logs import RedactedRequestLogging
from tableside.server.services import Services
from tableside.storage.interface import StaffRole, StaffSession, TokenInfo

GUEST_COOKIE = "tableside_token"
STAFF_COOKIE = "tableside_staff"
MAX_JSON_BODY = 16 * 1024


class ApiError(tornado.web.HTTPError):
    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(status, reason=None)
        self.code = code
        self.message = message
        self.headers = headers or {}


def bearer_token(handler: tornado.web.RequestHandler) -> str | None:
    header = handler.request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[7:].strip() or None
    return None


class BaseHandler(RedactedRequestLogging):
    services: Services

    def initialize(self, services: Services) -> None:
        self.services = services

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ApiError):
            body = {"error": exc.code, "message": exc.message}
            for name, value in exc.headers.items():
                self.set_header(name, value)
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
        if len(self.request.body) > MAX_JSON_BODY:
            raise ApiError(413, "too_large", "request body too large")
        try:
            data = json.loads(self.request.body or b"{}")
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, "bad_request", "body is not valid JSON") from exc
        if not isinstance(data, dict):
            raise ApiError(400, "bad_request", "body must be a JSON object")
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
