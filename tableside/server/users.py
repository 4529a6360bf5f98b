"""Customer accounts over HTTP (docs/protocol.md, "Customer accounts"). Thin: the rules live in
``tableside.accounts``; here are the status codes, the cookie and the rate limits."""

from __future__ import annotations

import math
from typing import Any

from tableside.accounts import InvalidField, email_key, parse_registration
from tableside.auth import token_hash
from tableside.server.base import ApiError, BaseHandler, bearer_token
from tableside.server.guests import convert_on_login
from tableside.storage.interface import DuplicateUser, User

USER_COOKIE = "tableside_user"


def user_token(handler: BaseHandler) -> str | None:
    return bearer_token(handler) or handler.get_cookie(USER_COOKIE)


class _SessionHandler(BaseHandler):
    def start_session(self, token: str, user: User, status: int) -> None:
        """Answer ``{user_id, token}`` and set the session cookie (HttpOnly, SameSite=Lax; Secure behind
        HTTPS) that every account call accepts instead of the bearer token."""
        self.set_cookie(
            USER_COOKIE,
            token,
            httponly=True,
            secure=self.services.settings.cookie_secure,
            samesite="Lax",
            expires=self.services.clock.now() + self.services.accounts.session_ttl_s,
            path="/",
        )
        self.send_json({"user_id": user.user_id, "token": token}, status)


class RegisterHandler(_SessionHandler):
    """``POST /api/users/register {name, email, password, phone?, line_id?}`` → 201 ``{user_id, token}``."""

    async def post(self) -> None:
        ip = self.client_ip()
        limiter = self.services.register_limiter
        if not limiter.allow(ip, self.services.clock.monotonic()):
            raise ApiError(429, "rate_limited", "too many registrations from this address; try again later",
                           headers={"Retry-After": str(limiter.retry_after(ip))})
        data = self.json_body()
        try:
            reg = parse_registration(data)
        except InvalidField as exc:
            raise ApiError(400, "bad_request", exc.message, extra={"field": exc.field}) from None
        try:
            token, user = await self.services.accounts.register(reg, self.services.clock.now())
        except DuplicateUser as exc:
            raise ApiError(409, "duplicate", f"an account with this {exc.field} already exists",
                           extra={"field": exc.field}) from None
        await convert_on_login(self, user.user_id)
        self.start_session(token, user, 201)


class LoginHandler(_SessionHandler):
    """``POST /api/users/login {email, password}`` → 200 ``{user_id, token}``; 401 for an unknown email and
    a wrong password alike; failing sources throttled like staff logins (429 + Retry-After)."""

    async def post(self) -> None:
        data = self.json_body()
        email = self.field_str(data, "email", 255)
        password = self.field_str(data, "password", 256)
        key, ip = email_key(email), self.client_ip()
        throttle = self.services.user_login_throttle
        began = self.services.clock.monotonic()
        wait = throttle.begin(key, ip, began)
        if wait > 0:
            raise ApiError(429, "rate_limited", "too many failed logins from this address; try again later",
                           headers={"Retry-After": str(math.ceil(wait))})
        result = await self.services.accounts.login(email, password, self.services.clock.now())
        if result is None:
            raise ApiError(401, "unauthorized", "wrong email or password")
        throttle.succeeded(key, ip, began)
        token, user = result
        await convert_on_login(self, user.user_id)
        self.start_session(token, user, 200)


class LogoutHandler(BaseHandler):
    """``POST /api/users/logout`` (bearer or cookie) → 204; idempotent (no, unknown or ended token: 204)."""

    async def post(self) -> None:
        token = user_token(self)
        await self.services.accounts.logout(token)
        if token and len(token) <= 128:  # its live sockets (/ws/me), on every node, close with 4001
            self.services.router.sessions_ended({token_hash(token)}, "logged_out")
        self.clear_cookie(USER_COOKIE, path="/")
        self.set_status(204)
        self.finish()


class MeHandler(BaseHandler):
    """``GET /api/me`` → the account of the session (401 without a valid one)."""

    async def get(self) -> None:
        session = await self.services.accounts.resolve(user_token(self), self.services.clock.now())
        user = None if session is None else await self.services.store.get_user(session.user_id)
        if user is None:
            raise ApiError(401, "unauthorized", "login required")
        body: dict[str, Any] = {
            "user_id": user.user_id,
            "name": user.name,
            "email": user.email,
            "phone": user.phone,
            "line_id": user.line_id,
            "created_at": user.created_at,
        }
        self.send_json(body)
