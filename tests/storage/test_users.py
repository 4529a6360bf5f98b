"""Customer accounts (seed 003's ``users``) and their sessions, on both stores."""

from __future__ import annotations

import uuid

import pytest

from tableside.storage import MemoryStore, Store
from tableside.storage.interface import DuplicateUser, StorageError, User

NOW = 1_700_000_000.0


def user(email: str | None = "ann@example.com", *, phone: str | None = None, line_id: str | None = None,
         name: str = "Ann") -> User:
    return User(str(uuid.uuid4()), name, email, phone, line_id, "$argon2id$hash", NOW, NOW)


async def delete_user(store: Store, user_id: str) -> None:
    """No API deletes accounts yet; the tests delete one as an operator would (Postgres: plain SQL)."""
    if isinstance(store, MemoryStore):
        store.remove_user(user_id)
        return
    import sqlalchemy as sa

    from tableside.storage.postgres import PostgresStore

    assert isinstance(store, PostgresStore)
    async with store.engine.begin() as conn:
        await conn.execute(sa.text("DELETE FROM users WHERE id = :id"), {"id": user_id})


async def test_create_and_get_a_user(store: Store) -> None:
    ann = user(phone="+81-90-1234-5678", line_id="ann.line")
    await store.create_user(ann)
    assert await store.get_user(ann.user_id) == ann
    assert await store.get_user_by_email("ann@example.com") == ann
    assert await store.get_user_by_email("ANN@example.com") is None  # callers normalise; the store matches
    assert await store.get_user(str(uuid.uuid4())) is None
    assert await store.get_user("not-a-uuid") is None
    got = await store.get_user(ann.user_id)
    assert got is not None
    got.name = "changed"  # a copy: the stored record is not aliased
    assert (await store.get_user(ann.user_id)) == ann


@pytest.mark.parametrize("field", ["email", "phone", "line_id"])
async def test_a_duplicate_names_its_field_and_stores_nothing(store: Store, field: str) -> None:
    await store.create_user(user("a@example.com", phone="0901", line_id="line-a"))
    clash = {"email": ("a@example.com", "0902", "line-b"), "phone": ("b@example.com", "0901", "line-b"),
             "line_id": ("b@example.com", "0902", "line-a")}[field]
    second = user(clash[0], phone=clash[1], line_id=clash[2])
    with pytest.raises(DuplicateUser) as err:
        await store.create_user(second)
    assert err.value.field == field
    assert await store.get_user(second.user_id) is None


async def test_missing_phone_and_line_id_never_clash(store: Store) -> None:
    a, b = user("a@example.com"), user("b@example.com")
    await store.create_user(a)
    await store.create_user(b)
    assert (await store.get_user(b.user_id)) == b


async def test_sessions_resolve_expire_and_end(store: Store) -> None:
    ann = user()
    await store.create_user(ann)
    await store.create_user_session("h1", ann.user_id, NOW + 100, NOW)
    await store.create_user_session("h2", ann.user_id, NOW + 10, NOW)
    s1 = await store.resolve_user_session("h1", NOW)
    assert s1 is not None and (s1.user_id, s1.expires_at) == (ann.user_id, NOW + 100)
    assert await store.resolve_user_session("h2", NOW + 10) is None  # expired at its expiry instant
    assert await store.resolve_user_session("nope", NOW) is None
    await store.delete_user_session("h1")
    await store.delete_user_session("h1")  # idempotent
    assert await store.resolve_user_session("h1", NOW) is None


async def test_a_session_needs_its_user(store: Store) -> None:
    with pytest.raises(StorageError):
        await store.create_user_session("h", str(uuid.uuid4()), NOW + 100, NOW)


async def test_deleting_a_user_deletes_their_sessions(store: Store) -> None:
    ann, bob = user("ann@example.com"), user("bob@example.com")
    await store.create_user(ann)
    await store.create_user(bob)
    await store.create_user_session("a", ann.user_id, NOW + 100, NOW)
    await store.create_user_session("b", bob.user_id, NOW + 100, NOW)
    await delete_user(store, ann.user_id)
    assert await store.resolve_user_session("a", NOW) is None
    assert await store.resolve_user_session("b", NOW) is not None
    assert await store.delete_expired_user_sessions(NOW + 1000) == 1  # only bob's was left (CASCADE)


async def test_cleanup_deletes_expired_user_sessions(store: Store) -> None:
    ann = user()
    await store.create_user(ann)
    await store.create_user_session("old", ann.user_id, NOW + 10, NOW)
    await store.create_user_session("new", ann.user_id, NOW + 100, NOW)
    report = await store.cleanup(NOW + 50)
    assert report.expired_user_sessions == 1
    assert await store.resolve_user_session("new", NOW + 50) is not None
    assert (await store.cleanup(NOW + 50)).expired_user_sessions == 0
