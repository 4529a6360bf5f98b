"""Customer accounts (seed 003's ``users``): validation, argon2id passwords, login sessions.

Like ``auth.py`` for staff: the password is hashed with argon2id (argon2-cffi's defaults), a login token is
192 bits from ``secrets`` and only its SHA-256 is stored (so the lookup is an equality on a digest, and
the store compares it once more in constant time). Logging in with an unknown email costs the same
argon2 verify as a wrong password (against a dummy hash), and both get the same answer, so neither the
answer nor its timing tells whether an account exists. Hashing and verifying run off the event loop.

Normalisation (so one person cannot register twice by spelling, and can log in however they type it):
* email: surrounding whitespace stripped and the *whole* address lower-cased, local part included (RFC 5321
  lets a server treat the local part case-sensitively; no mail provider our customers use does, and
  ``Ann@x`` and ``ann@x`` being two accounts would be a support trap). ASCII only, at most 255 characters,
  ``local@domain`` with a dotted domain.
* phone: spaces, hyphens, dots and parentheses dropped, an optional leading ``+`` kept; then 6-19 digits
  (at most 20 characters, the seed's VARCHAR(20)).
* line_id: stripped and lower-cased (LINE IDs are case-insensitive); letters, digits, ``. _ -`` and an
  optional leading ``@`` (official accounts), at most 50 characters (the seed's VARCHAR(50)).
"""

from __future__ import annotations

import asyncio
import re
import secrets
import unicodedata
import uuid
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from tableside.auth import new_token, token_hash
from tableside.storage.interface import Store, User, UserSession

NAME_MAX = 255
EMAIL_MAX = 255
PHONE_MAX = 20
LINE_ID_MAX = 50
PASSWORD_MIN = 8
PASSWORD_MAX = 256
MAX_TOKEN_CHARS = 128  # anything longer is not one of ours: refused before hashing

_LOCAL = re.compile(r"^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_PHONE = re.compile(r"^\+?[0-9]{6,19}$")
_PHONE_SEPARATORS = re.compile(r"[\s().-]")
_LINE_ID = re.compile(r"^@?[a-z0-9._-]+$")


class InvalidField(ValueError):
    """A registration or login field that is missing, of the wrong type or not valid (HTTP 400)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def normalise_email(raw: str) -> str:
    """The stored and looked-up form of an email (see the module docstring); InvalidField if not valid."""
    email = raw.strip().lower()
    if not email or len(email) > EMAIL_MAX or not email.isascii():
        raise InvalidField("email", f"email must be an ASCII address of at most {EMAIL_MAX} characters")
    local, at, domain = email.rpartition("@")
    labels = domain.split(".")
    if (
        not at
        or len(local) > 64
        or not _LOCAL.match(local)
        or len(labels) < 2
        or not all(_LABEL.match(label) for label in labels)
        or labels[-1].isdigit()
    ):
        raise InvalidField("email", "email is not a valid address")
    return email


def email_key(raw: str) -> str:
    """What a login is looked up and throttled by: the normalised email, or, for one that is not valid
    (it matches no account), the same stripping and lower-casing cut to EMAIL_MAX."""
    try:
        return normalise_email(raw)
    except InvalidField:
        return raw.strip().lower()[:EMAIL_MAX]


def normalise_phone(raw: str) -> str:
    phone = _PHONE_SEPARATORS.sub("", raw)
    if len(phone) > PHONE_MAX or not _PHONE.match(phone):
        raise InvalidField("phone", "phone must be 6-19 digits, optionally after a +")
    return phone


def normalise_line_id(raw: str) -> str:
    line_id = raw.strip().lower()
    if not 0 < len(line_id) <= LINE_ID_MAX or not line_id.isascii() or not _LINE_ID.match(line_id):
        raise InvalidField("line_id", f"line_id must be 1..{LINE_ID_MAX} letters, digits, '.', '_' or '-'")
    return line_id


def normalise_name(raw: str) -> str:
    name = raw.strip()
    if not 0 < len(name) <= NAME_MAX or any(unicodedata.category(c) == "Cc" for c in name):
        raise InvalidField("name", f"name must be 1..{NAME_MAX} characters without control characters")
    return name


def check_password(password: str) -> str:
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise InvalidField("password", f"password must be {PASSWORD_MIN}..{PASSWORD_MAX} characters")
    return password


@dataclass(frozen=True, slots=True)
class Registration:
    name: str
    email: str
    password: str
    phone: str | None = None
    line_id: str | None = None

    def __repr__(self) -> str:  # never the password (nor the email) in a traceback or log line
        return "Registration(...)"


def _string(data: dict[str, Any], field: str, *, required: bool) -> str | None:
    value = data.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise InvalidField(field, f"{field} must be a string" if value is not None else f"{field} is required")
    return value


def parse_registration(data: dict[str, Any]) -> Registration:
    """A register body ``{name, email, password, phone?, line_id?}``, validated and normalised."""
    name = _string(data, "name", required=True)
    email = _string(data, "email", required=True)
    password = _string(data, "password", required=True)
    phone = _string(data, "phone", required=False)
    line_id = _string(data, "line_id", required=False)
    assert name is not None and email is not None and password is not None
    return Registration(
        name=normalise_name(name),
        email=normalise_email(email),
        password=check_password(password),
        phone=None if phone is None else normalise_phone(phone),
        line_id=None if line_id is None else normalise_line_id(line_id),
    )


class CustomerAccounts:
    """Register, log in, resolve and end customer sessions."""

    def __init__(self, store: Store, session_ttl_s: float) -> None:
        self._store = store
        self._ttl = session_ttl_s
        self._hasher = PasswordHasher()  # argon2id
        self._dummy_hash = self._hasher.hash(secrets.token_hex(16))

    @property
    def session_ttl_s(self) -> float:
        return self._ttl

    def _verify(self, stored: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    async def register(self, reg: Registration, now: float) -> tuple[str, User]:
        """A new account and a session for it. Raises DuplicateUser (naming the field) when the email,
        phone or line_id is taken."""
        password_hash = await asyncio.to_thread(self._hasher.hash, reg.password)
        user = User(str(uuid.uuid4()), reg.name, reg.email, reg.phone, reg.line_id, password_hash, now, now)
        await self._store.create_user(user)
        return await self._new_session(user, now), user

    async def login(self, email: str, password: str, now: float) -> tuple[str, User] | None:
        """A new session when ``password`` is the account's; None for an unknown email or a wrong password,
        after the same argon2 work either way."""
        user = await self._store.get_user_by_email(email_key(email))
        stored = user.password_hash if user is not None else self._dummy_hash
        ok = await asyncio.to_thread(self._verify, stored, password)
        if not ok or user is None:
            return None
        return await self._new_session(user, now), user

    async def _new_session(self, user: User, now: float) -> str:
        token = new_token()
        await self._store.create_user_session(token_hash(token), user.user_id, now + self._ttl, now)
        return token

    async def resolve(self, token: str | None, now: float) -> UserSession | None:
        if not token or len(token) > MAX_TOKEN_CHARS:
            return None
        return await self._store.resolve_user_session(token_hash(token), now)

    async def logout(self, token: str | None) -> None:
        """End one session (no error when it is missing, unknown, expired or already ended)."""
        if token and len(token) <= MAX_TOKEN_CHARS:
            await self._store.delete_user_session(token_hash(token))
