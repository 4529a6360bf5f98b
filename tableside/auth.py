"""Tokens and staff credentials.

Guest and staff tokens are 192-bit ``secrets`` values; only their SHA-256 is stored, so a database leak
gives no usable token and lookup by hash is a constant-time-safe equality on a digest. Staff passwords
are argon2id hashes (argon2-cffi)."""

from __future__ import annotations

import hashlib
import hmac
import secrets

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


def constant_time_equals(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


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

    async def set_user(self, username: str, role: StaffRole, password: str) -> None:
        await self._store.upsert_staff(StaffUser(username, role, self.hash_password(password)))

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
        return token, user
