"""Staff session revocation, on both stores: log out, end a user's sessions, remove a user."""

from __future__ import annotations

from tableside.storage import Store
from tableside.storage.interface import StaffRole, StaffUser

NOW = 1_700_000_000.0


async def test_end_every_session_of_a_user(store: Store) -> None:
    await store.upsert_staff(StaffUser("alice", StaffRole.MANAGER, "hash-a"))
    await store.upsert_staff(StaffUser("bob", StaffRole.KITCHEN, "hash-b"))
    for h, user in (("a1", "alice"), ("a2", "alice"), ("b1", "bob")):
        await store.create_staff_session(h, user, StaffRole.MANAGER, NOW + 100)
    assert await store.delete_staff_sessions_for_user("alice") == 2
    assert await store.delete_staff_sessions_for_user("alice") == 0
    assert await store.resolve_staff_session("a1", NOW) is None
    assert await store.resolve_staff_session("a2", NOW) is None
    assert await store.resolve_staff_session("b1", NOW) is not None
    await store.delete_staff_session("b1")
    await store.delete_staff_session("b1")  # idempotent
    assert await store.resolve_staff_session("b1", NOW) is None


async def test_removing_a_user_ends_their_sessions(store: Store) -> None:
    await store.upsert_staff(StaffUser("alice", StaffRole.MANAGER, "hash-a"))
    await store.upsert_staff(StaffUser("bob", StaffRole.KITCHEN, "hash-b"))
    await store.create_staff_session("a1", "alice", StaffRole.MANAGER, NOW + 100)
    await store.create_staff_session("b1", "bob", StaffRole.KITCHEN, NOW + 100)
    assert await store.remove_staff("alice") is True
    assert await store.remove_staff("alice") is False
    assert await store.get_staff("alice") is None
    assert await store.resolve_staff_session("a1", NOW) is None
    assert await store.resolve_staff_session("b1", NOW) is not None


async def test_a_session_without_its_user_does_not_resolve(store: Store) -> None:
    # A user re-created under the same name must not inherit sessions left from before its removal.
    await store.create_staff_session("orphan", "ghost", StaffRole.ADMIN, NOW + 100)
    assert await store.resolve_staff_session("orphan", NOW) is None
