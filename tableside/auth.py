"""Tokens and staff credentials.

Guest and staff tokens are 192-bit ``secrets`` values; only their SHA-256 is stored, so a database leak
gives no usable token and lookup by hash is a constant-time-safe equality on a digest. Staff passwords
are argon2id hashes (argon2-cffi)."""

from __future__ import annotations

import hashlib
import secrets
from collections import deque
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from tableside.storage.interface import StaffRole, StaffUser, Store

TOKEN_BYTES = 24  # 192 bits


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def new_qr_secret() -> str:
    return secrets.token_urlsafe(16)  # 128 bits, printed in the QR code


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class StaffAuth:
    """Staff users: argon2 hashes, roles, session tokens."""

    def __init__(self, store: Store, session_ttl_s: float) -> None:
        self._store = store
        self._ttl = session_ttl_s
        self._hasher = PasswordHasher()
        # Verifying an unknown user still costs one argon2 run, so timing does not reveal usernames.
        self._dummy_hash = self._hasher.hash(secrets.token_hex(16))

    def hash_password(self, password: str) -> str:
        return self._hasher.hash(password)

    async def set_user(self, username: str, role: StaffRole, password: str, store_id: int | None = None) -> int:
        """Create or replace a user (``store_id``: the store they work in; None = every store, for admin).
        When the password or role changes (or a disabled user is enabled), every session of theirs ends;
        returns how many. Setting the same password and role again (the admin password from the settings on
        every start) keeps the sessions. A store change needs no new login: sessions read the user's store."""
        before = await self._store.get_staff(username)
        await self._store.upsert_staff(StaffUser(username, role, self.hash_password(password), store_id=store_id))
        if before is not None and before.role == role and before.active and self.password_matches(before, password):
            return 0
        return await self._store.delete_staff_sessions_for_user(username)

    async def remove_user(self, username: str) -> bool:
        """Delete a user and end every session of theirs; False when there was no such user."""
        return await self._store.remove_staff(username)

    async def logout(self, token: str) -> None:
        """End one session (no error when it is unknown, expired or already ended)."""
        await self._store.delete_staff_session(token_hash(token))

    def password_matches(self, user: StaffUser, password: str) -> bool:
        """Whether ``password`` is ``user``'s (one argon2 verify: call it off the event loop when it can wait)."""
        try:
            return self._hasher.verify(user.password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    async def login(self, username: str, password: str, now: float) -> tuple[str, StaffUser] | None:
        user = await self._store.get_staff(username)
        stored = user.password_hash if user is not None and user.active else self._dummy_hash
        try:
            self._hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        if user is None or not user.active:
            return None
        token = new_token()
        await self._store.create_staff_session(token_hash(token), user.username, user.role, now + self._ttl)
        # The password or role may have changed (ending every session) while argon2 ran: then this
        # session, made with the old credentials, must not outlive the change.
        current = await self._store.get_staff(user.username)
        if current is None or not current.active or current.password_hash != user.password_hash \
                or current.role != user.role:
            await self._store.delete_staff_session(token_hash(token))
            return None
        return token, user


class LoginThrottle:
    """Throttles *failed* staff logins by source, never the account itself (OWASP: slow the failing source).

    A login attempt counts as a failure from the moment it starts until it succeeds (so a burst of
    concurrent guesses cannot all slip past the check before the first one fails). Failures are kept in a
    sliding window of ``window_s`` seconds and refused when, within the window:

    * the client IP has ``per_ip`` failures (any usernames), or
    * the (username, IP) pair has ``per_user_ip`` failures, or
    * the username has ``per_user`` failures across all IPs (an attack spread over many addresses) and
      this IP has ``per_user_ip_under_attack`` failures for it.

    An IP that has not been failing is never refused, so nobody can lock a user out from elsewhere. A
    success clears the (username, IP) failures. Memory is bounded: at most ``max_keys`` keys per map,
    each holding at most its limit of timestamps. Time is passed in (the injected clock's monotonic)."""

    def __init__(
        self,
        *,
        window_s: float = 300.0,
        per_ip: int = 30,
        per_user_ip: int = 10,
        per_user: int = 100,
        per_user_ip_under_attack: int = 3,
        max_keys: int = 10_000,
    ) -> None:
        self.window_s = window_s
        self.per_ip = per_ip
        self.per_user_ip = per_user_ip
        self.per_user = per_user
        self.per_user_ip_under_attack = per_user_ip_under_attack
        self.max_keys = max_keys
        self._by_ip: dict[str, deque[float]] = {}
        self._by_user_ip: dict[tuple[str, str], deque[float]] = {}
        self._by_user: dict[str, deque[float]] = {}

    def begin(self, username: str, ip: str, now: float) -> float:
        """Returns 0.0 and counts the attempt as a failure (until ``succeeded``) when it may go ahead;
        otherwise the seconds until this source may try again (nothing recorded)."""
        wait = self.retry_after(username, ip, now)
        if wait > 0:
            return wait
        self._add(self._by_ip, ip, self.per_ip, now)
        self._add(self._by_user_ip, (username, ip), self.per_user_ip, now)
        self._add(self._by_user, username, self.per_user, now)
        return 0.0

    def succeeded(self, username: str, ip: str, began: float) -> None:
        """The attempt that ``begin`` admitted at ``began`` was a success: it was not a failure after all."""
        for stamps in (self._by_ip.get(ip), self._by_user.get(username)):
            if stamps is not None and began in stamps:
                stamps.remove(began)
        self._by_user_ip.pop((username, ip), None)

    def retry_after(self, username: str, ip: str, now: float) -> float:
        horizon = now - self.window_s
        waits = [
            self._blocked_for(self._by_ip.get(ip), self.per_ip, horizon),
            self._blocked_for(self._by_user_ip.get((username, ip)), self.per_user_ip, horizon),
        ]
        if self._blocked_for(self._by_user.get(username), self.per_user, horizon) > 0:
            waits.append(
                self._blocked_for(self._by_user_ip.get((username, ip)), self.per_user_ip_under_attack, horizon)
            )
        return max(waits)

    @staticmethod
    def _blocked_for(stamps: deque[float] | None, limit: int, horizon: float) -> float:
        """Seconds until fewer than ``limit`` of ``stamps`` are newer than ``horizon`` (0.0: not blocked)."""
        if stamps is None or len(stamps) < limit:
            return 0.0
        # The newest ``limit`` stamps decide: the oldest of them has to leave the window.
        oldest_counted = stamps[len(stamps) - limit]
        return max(0.0, oldest_counted - horizon)

    def _add(self, table: dict[Any, deque[float]], key: Any, limit: int, now: float) -> None:
        stamps = table.pop(key, None)  # re-inserted last: the map evicts the least recently failing key
        if stamps is None:
            if len(table) >= self.max_keys:
                table.pop(next(iter(table)))
            stamps = deque(maxlen=limit)
        stamps.append(now)
        table[key] = stamps
