"""Issue 9, on both stores: only the SHA-256 of a guest or staff token ever reaches the store, and the QR
secret is compared in constant time. A plain-text token anywhere in what the store keeps is a failure."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa

from tableside.auth import StaffAuth, token_hash
from tableside.clock import FakeClock
from tableside.config import Settings
from tableside.demo import seed_demo
from tableside.server.app import build_services
from tableside.server.services import Services
from tableside.storage import MemoryStore, PostgresStore, Store
from tableside.storage import postgres as pg
from tableside.storage import schema as s
from tableside.storage.interface import BadQrSecret, JoinRequest, StaffRole


class CallLog:
    """Wraps a store and records every argument of every call, so a test can say what reached it."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args, kwargs))
            return attr(*args, **kwargs)

        return call

    def args_of(self, name: str) -> list[tuple[Any, ...]]:
        return [args for n, args, _ in self.calls if n == name]

    def everything_sent(self) -> str:
        return repr(self.calls)


async def persisted(store: Store) -> str:
    """Everything the store holds, as text: the memory store's state, or every row of every table."""
    if isinstance(store, MemoryStore):
        return repr(vars(store))
    assert isinstance(store, PostgresStore)
    rows: list[Any] = []
    async with store.engine.connect() as conn:
        for table in s.metadata.sorted_tables:
            rows += (await conn.execute(sa.select(table))).all()
    return repr(rows)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


NOW = 1_700_000_000.0


async def test_staff_session_stores_only_the_token_digest(store: Store) -> None:
    spy = CallLog(store)
    auth = StaffAuth(spy, session_ttl_s=3600)
    await auth.set_user("alice", StaffRole.MANAGER, "correct horse")
    result = await auth.login("alice", "correct horse", NOW)
    assert result is not None
    token, user = result
    assert user.username == "alice"
    digest = sha256_hex(token)
    assert spy.args_of("create_staff_session") == [(digest, "alice", StaffRole.MANAGER, NOW + 3600)]
    assert token not in spy.everything_sent()
    text = await persisted(store)
    assert digest in text and token not in text
    # The password is kept as an argon2id hash only.
    assert "correct horse" not in text and "$argon2id$" in text
    # The session is found by the digest, never by the token itself.
    session = await store.resolve_staff_session(digest, NOW)
    assert session is not None and session.username == "alice" and session.role == StaffRole.MANAGER
    assert await store.resolve_staff_session(token, NOW) is None
    # Logging out deletes by digest as well.
    await auth.logout(token)
    assert spy.args_of("delete_staff_session")[-1] == (digest,)
    assert await store.resolve_staff_session(digest, NOW) is None


@pytest.fixture
async def services(store: Store) -> AsyncIterator[tuple[Services, CallLog]]:
    settings = Settings(database_url="postgresql://unused/unused")
    await seed_demo(store, settings.demo.restaurant_id, "Demo", 2)
    spy = CallLog(store)
    services = await build_services(settings, spy, clock=FakeClock(NOW))
    try:
        yield services, spy
    finally:
        await services.directory.stop_all()
        await services.kitchen.stop()
        await services.committer.stop()


async def test_guest_join_stores_only_the_token_digest(services: tuple[Services, CallLog], store: Store) -> None:
    svc, spy = services
    table = await store.get_table("T001")
    assert table is not None
    token, joined = await svc.join("T001", table.qr_secret)
    digest = sha256_hex(token)
    (join_args,) = spy.args_of("join_table")
    assert join_args[:3] == ("T001", table.qr_secret, digest)
    assert token not in spy.everything_sent()
    text = await persisted(store)
    assert digest in text and token not in text
    info = await svc.resolve_guest(token)
    assert info is not None and info.member_id == joined.member_id and info.group_id == joined.group_id
    assert spy.args_of("resolve_token")[-1] == (digest, NOW)
    assert token not in spy.everything_sent()
    assert await store.resolve_token(token, NOW) is None  # the token itself is no key


async def test_two_joins_get_unrelated_tokens(services: tuple[Services, CallLog], store: Store) -> None:
    svc, _ = services
    table = await store.get_table("T001")
    assert table is not None
    a, first = await svc.join("T001", table.qr_secret)
    b, second = await svc.join("T001", table.qr_secret)
    assert a != b and first.member_id != second.member_id
    assert (await svc.resolve_guest(a)) != (await svc.resolve_guest(b))


async def test_qr_secret_is_compared_in_constant_time(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    await seed_demo(store, 1, "Demo", 1)
    table = await store.get_table("T001")
    assert table is not None
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    wrong = table.qr_secret[:-1] + ("A" if table.qr_secret[-1] != "A" else "B")
    if isinstance(store, PostgresStore):
        # Postgres decides a batch of joins in one statement: there the SHA-256 digests of the two secrets
        # are compared (the "double hash" compare: its timing says nothing about the secret). Only digests
        # of the guest's secret leave the process; the locked fallback compares digests with compare_digest.
        digested: list[str] = []
        real_digest = pg._secret_digest

        def digest_spy(secret: str) -> bytes:
            digested.append(secret)
            return real_digest(secret)

        monkeypatch.setattr(pg, "_secret_digest", digest_spy)
        with pytest.raises(BadQrSecret):
            await store.join_table("T001", wrong, token_hash("t1"), "m1", "g1", NOW + 60, NOW)
        assert digested[-1] == wrong
        with pytest.raises(BadQrSecret):
            await store._join_locked(JoinRequest("T001", wrong, token_hash("t1"), "m1", "g1", NOW + 60, NOW))
        expected = sorted([hashlib.sha256(table.qr_secret.encode()).digest(), hashlib.sha256(wrong.encode()).digest()])
        assert sorted(compared[-1]) == expected
        return
    with pytest.raises(BadQrSecret):
        await store.join_table("T001", wrong, token_hash("t1"), "m1", "g1", NOW + 60, NOW)
    assert sorted(compared[-1]) == sorted([table.qr_secret.encode(), wrong.encode()])
    await store.join_table("T001", table.qr_secret, token_hash("t2"), "m2", "g2", NOW + 60, NOW)
    assert compared[-1] == (table.qr_secret.encode(), table.qr_secret.encode())
