"""Tokens, staff credentials and the login throttle (tableside/auth.py; issue 9).

Tokens: ``secrets`` values of at least 128 bits, stored only as SHA-256 (the both-stores half is in
tests/storage/test_token_storage.py). Staff passwords: argon2id; a wrong password, an unknown or a disabled
user all cost one full argon2 verify. LoginThrottle: the policy of docs/staff-kitchen-api.md, on explicit
timestamps (the handler passes the injected clock's monotonic)."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets

import pytest
from argon2 import PasswordHasher, Type, extract_parameters

from tableside.auth import LoginThrottle, StaffAuth, new_id, new_qr_secret, new_token, token_hash
from tableside.storage import MemoryStore
from tableside.storage.interface import StaffRole, StaffUser

NOW = 1_700_000_000.0
TTL = 8 * 3600.0


def urlsafe_bytes(text: str) -> bytes:
    assert re.fullmatch(r"[A-Za-z0-9_-]+", text), text
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# -- tokens ------------------------------------------------------------------------------------------------


def test_tokens_are_192_bit_secrets_values(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[int | None] = []
    real = secrets.token_urlsafe

    def recording(nbytes: int | None = None) -> str:
        asked.append(nbytes)
        return real(nbytes)

    monkeypatch.setattr(secrets, "token_urlsafe", recording)
    token = new_token()
    assert asked == [24]  # drawn from the CSPRNG, 192 bits (the docs promise at least 128)
    assert len(urlsafe_bytes(token)) == 24
    qr = new_qr_secret()
    assert asked == [24, 16]
    assert len(urlsafe_bytes(qr)) == 16
    many = {new_token() for _ in range(200)}
    assert len(many) == 200


def test_ids_carry_their_prefix_and_64_random_bits() -> None:
    ids = {new_id("m") for _ in range(100)}
    assert len(ids) == 100
    for i in ids:
        assert re.fullmatch(r"m_[0-9a-f]{16}", i), i
    assert new_id("g").startswith("g_")


def test_token_hash_is_hex_sha256_of_the_utf8_token() -> None:
    assert token_hash("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert token_hash("tök") == hashlib.sha256("tök".encode()).hexdigest()
    # Whatever a client sends as a token hashes without an error (it then simply matches nothing).
    assert token_hash("\ud800") == hashlib.sha256(b"\xed\xa0\x80").hexdigest()
    assert token_hash("a") != token_hash("b")


# -- staff passwords and sessions ---------------------------------------------------------------------------


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


class CheapHasher(PasswordHasher):
    """argon2id still, at the lowest cost: the production cost is a second per hash on a busy CI box."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=64, parallelism=1)


@pytest.fixture
def cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tableside.auth.PasswordHasher", CheapHasher)


@pytest.fixture
def auth(store: MemoryStore, cheap_argon2: None) -> StaffAuth:
    return StaffAuth(store, session_ttl_s=TTL)


async def session_count(store: MemoryStore) -> int:
    """How many staff sessions the store holds (it forgets them all, counting)."""
    return await store.delete_expired_staff_sessions(float("inf"))


class VerifyCounter:
    """Counts argon2 verifies (and records the hashes checked), wherever StaffAuth runs them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.hashes: list[str] = []
        real = PasswordHasher.verify

        def verify(hasher: PasswordHasher, hash: str | bytes, password: str | bytes) -> bool:
            self.hashes.append(str(hash))
            return real(hasher, hash, password)

        monkeypatch.setattr(PasswordHasher, "verify", verify)


async def test_passwords_are_stored_as_argon2id(store: MemoryStore) -> None:
    auth = StaffAuth(store, session_ttl_s=TTL)  # the production hasher
    await auth.set_user("alice", StaffRole.MANAGER, "correct horse")
    user = await store.get_staff("alice")
    assert user is not None and user.role == StaffRole.MANAGER and user.active
    assert user.password_hash.startswith("$argon2id$")
    assert extract_parameters(user.password_hash).type is Type.ID
    assert "correct horse" not in user.password_hash
    assert PasswordHasher().verify(user.password_hash, "correct horse")
    # argon2-cffi's recommended cost (RFC 9106 low-memory profile), not something cheaper.
    params = extract_parameters(user.password_hash)
    default = PasswordHasher()
    assert (params.time_cost, params.memory_cost, params.parallelism) == (
        default.time_cost, default.memory_cost, default.parallelism,
    )


def test_password_hashes_are_salted(auth: StaffAuth) -> None:
    assert auth.hash_password("x") != auth.hash_password("x")


async def test_login_gives_a_session_for_the_ttl(auth: StaffAuth, store: MemoryStore) -> None:
    await auth.set_user("alice", StaffRole.SERVER, "pw-alice")
    result = await auth.login("alice", "pw-alice", NOW)
    assert result is not None
    token, user = result
    assert user == StaffUser("alice", StaffRole.SERVER, user.password_hash)
    assert len(urlsafe_bytes(token)) == 24
    session = await store.resolve_staff_session(token_hash(token), NOW + TTL - 1)
    assert session is not None and session.username == "alice" and session.role == StaffRole.SERVER
    assert session.expires_at == NOW + TTL
    assert await store.resolve_staff_session(token_hash(token), NOW + TTL) is None
    other = await auth.login("alice", "pw-alice", NOW)
    assert other is not None and other[0] != token


@pytest.mark.parametrize("case", ["wrong password", "unknown user", "disabled user", "broken hash"])
async def test_every_refused_login_costs_one_real_verify(
    auth: StaffAuth, store: MemoryStore, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    await auth.set_user("alice", StaffRole.MANAGER, "pw-alice")
    real_hash = auth.hash_password("pw-alice")
    username, password = "alice", "pw-alice"
    if case == "wrong password":
        password = "pw-guess"
    elif case == "unknown user":
        username = "mallory"
    elif case == "disabled user":  # even with the right password
        await store.upsert_staff(StaffUser("alice", StaffRole.MANAGER, real_hash, active=False))
    else:
        await store.upsert_staff(StaffUser("alice", StaffRole.MANAGER, "not-an-argon2-hash"))
    counter = VerifyCounter(monkeypatch)
    assert await auth.login(username, password, NOW) is None
    assert len(counter.hashes) == 1
    if case != "broken hash":
        # A full argon2id run with the same cost as a real user's hash: timing tells nothing apart.
        checked = extract_parameters(counter.hashes[0])
        assert checked == extract_parameters(real_hash)
    assert await session_count(store) == 0


async def test_set_user_keeps_sessions_only_when_nothing_changed(auth: StaffAuth, store: MemoryStore) -> None:
    assert await auth.set_user("alice", StaffRole.MANAGER, "pw1") == 0  # new user: no sessions to end

    async def sessions(n: int) -> list[str]:
        tokens = []
        for _ in range(n):
            result = await auth.login("alice", current_pw, NOW)
            assert result is not None
            tokens.append(result[0])
        return tokens

    async def alive(tokens: list[str]) -> list[bool]:
        return [await store.resolve_staff_session(token_hash(t), NOW) is not None for t in tokens]

    current_pw = "pw1"
    tokens = await sessions(2)
    # The same password and role again (the admin password from the settings on every start): kept.
    assert await auth.set_user("alice", StaffRole.MANAGER, "pw1") == 0
    assert await alive(tokens) == [True, True]
    # A new password ends every session.
    assert await auth.set_user("alice", StaffRole.MANAGER, "pw2") == 2
    assert await alive(tokens) == [False, False]
    current_pw = "pw2"
    tokens = await sessions(1)
    # A new role ends them as well.
    assert await auth.set_user("alice", StaffRole.SERVER, "pw2") == 1
    assert await alive(tokens) == [False]
    # Re-enabling a disabled user with the same password and role: old sessions stay ended.
    tokens = await sessions(1)
    user = await store.get_staff("alice")
    assert user is not None
    await store.upsert_staff(StaffUser("alice", StaffRole.SERVER, user.password_hash, active=False))
    assert await auth.set_user("alice", StaffRole.SERVER, "pw2") == 1
    enabled = await store.get_staff("alice")
    assert enabled is not None and enabled.active
    assert await alive(tokens) == [False]
    # A stored hash argon2 cannot read counts as a change of password.
    tokens = await sessions(1)
    await store.upsert_staff(StaffUser("alice", StaffRole.SERVER, "garbage"))
    assert await auth.set_user("alice", StaffRole.SERVER, "pw2") == 1
    assert await alive(tokens) == [False]


async def test_logout_and_remove_user(auth: StaffAuth, store: MemoryStore) -> None:
    await auth.set_user("alice", StaffRole.MANAGER, "pw")
    first = await auth.login("alice", "pw", NOW)
    second = await auth.login("alice", "pw", NOW)
    assert first is not None and second is not None
    await auth.logout(first[0])
    await auth.logout(first[0])  # already ended: no error
    assert await store.resolve_staff_session(token_hash(first[0]), NOW) is None
    assert await store.resolve_staff_session(token_hash(second[0]), NOW) is not None
    assert await auth.remove_user("alice") is True
    assert await auth.remove_user("alice") is False
    assert await store.resolve_staff_session(token_hash(second[0]), NOW) is None
    assert await auth.login("alice", "pw", NOW) is None


class ChangesDuringVerify(MemoryStore):
    """A store where the user is changed by someone else between the login's two reads of it."""

    def __init__(self, change: str) -> None:
        super().__init__()
        self.change = change
        self.reads = 0

    async def get_staff(self, username: str) -> StaffUser | None:
        user = await super().get_staff(username)
        self.reads += 1
        if self.reads == 2 and user is not None:  # the login's re-read, after argon2 ran
            if self.change == "removed":
                return None
            if self.change == "disabled":
                user.active = False
            elif self.change == "password":
                user.password_hash = CheapHasher().hash("new")
            elif self.change == "role":
                user.role = StaffRole.KITCHEN
        return user


@pytest.mark.parametrize("change", ["removed", "disabled", "password", "role", "nothing"])
async def test_login_racing_a_change_of_the_user_gets_no_session(change: str, cheap_argon2: None) -> None:
    store = ChangesDuringVerify(change)
    auth = StaffAuth(store, session_ttl_s=TTL)
    await store.upsert_staff(StaffUser("alice", StaffRole.MANAGER, auth.hash_password("pw")))
    store.reads = 0
    result = await auth.login("alice", "pw", NOW)
    if change == "nothing":
        assert result is not None
        assert await store.resolve_staff_session(token_hash(result[0]), NOW) is not None
        assert await session_count(store) == 1
    else:
        assert result is None
        assert await session_count(store) == 0  # the session made with the old credentials was deleted


# -- login throttle -----------------------------------------------------------------------------------------


def fail(t: LoginThrottle, username: str, ip: str, now: float, times: int = 1) -> None:
    """``times`` admitted attempts that then fail (never ``succeeded``)."""
    for _ in range(times):
        assert t.begin(username, ip, now) == 0.0


def test_default_policy_is_the_documented_one() -> None:
    t = LoginThrottle()
    assert (t.window_s, t.per_ip, t.per_user_ip, t.per_user, t.per_user_ip_under_attack, t.max_keys) == (
        300.0, 30, 10, 100, 3, 10_000,
    )


def test_ten_failures_of_one_user_from_one_ip_refuse_the_eleventh() -> None:
    t = LoginThrottle()
    for i in range(10):
        assert t.begin("alice", "6.6.6.6", float(i)) == 0.0
    # Refused until the oldest of the ten leaves the 300 s window (it failed at t=0).
    assert t.begin("alice", "6.6.6.6", 10.0) == 290.0
    assert t.retry_after("alice", "6.6.6.6", 299.5) == 0.5
    assert t.begin("alice", "6.6.6.6", 300.0) == 0.0  # recovered by itself; this is failure 11 at t=300
    # Failures 2..11 (t=1..9, 300) are now in the window: the next one waits for t=1's to leave.
    assert t.begin("alice", "6.6.6.6", 300.0) == 1.0
    # Other users from that address, and that user from elsewhere, are not affected.
    assert t.begin("bob", "6.6.6.6", 300.0) == 0.0
    assert t.begin("alice", "10.0.0.7", 300.0) == 0.0


def test_a_refused_attempt_is_not_counted() -> None:
    t = LoginThrottle(window_s=100, per_ip=1000, per_user_ip=2, per_user=1000)
    fail(t, "alice", "6.6.6.6", 0.0, times=2)
    for now in range(1, 50):
        assert t.begin("alice", "6.6.6.6", float(now)) == 100.0 - now
    assert t.begin("alice", "6.6.6.6", 100.0) == 0.0


def test_thirty_failures_from_one_ip_refuse_any_username() -> None:
    t = LoginThrottle()
    for i in range(30):
        assert t.begin(f"user{i}", "6.6.6.6", 5.0) == 0.0
    assert t.begin("someone-new", "6.6.6.6", 5.0) == 300.0
    assert t.begin("someone-new", "6.6.6.7", 5.0) == 0.0
    assert t.begin("someone-new", "6.6.6.6", 305.0) == 0.0


def test_a_user_under_distributed_attack_allows_three_failures_per_ip() -> None:
    t = LoginThrottle()
    # 99 failures for "kitchen" from 33 addresses, 3 each: not under attack yet, so nobody is refused.
    for n in range(33):
        fail(t, "kitchen", f"7.0.0.{n}", 1.0, times=3)
    assert t.retry_after("kitchen", "7.0.0.0", 1.0) == 0.0
    fail(t, "kitchen", "8.8.8.8", 2.0)  # the 100th
    # Under attack: each address with 3 failures for the user is refused until its third one ages out...
    assert t.begin("kitchen", "7.0.0.5", 2.0) == 299.0
    # ... an address with fewer may still try ...
    fail(t, "kitchen", "8.8.8.8", 2.0, times=2)
    assert t.begin("kitchen", "8.8.8.8", 2.0) == 300.0
    # ... and the user from an address that has not been failing is never refused.
    assert t.begin("kitchen", "10.0.0.7", 2.0) == 0.0
    t.succeeded("kitchen", "10.0.0.7", 2.0)
    # Other usernames are judged by their own counts, from the attacking addresses or elsewhere: bob is
    # not under attack, so his limit per address stays 10.
    assert t.begin("bob", "7.0.0.5", 2.0) == 0.0
    fail(t, "bob", "9.9.9.9", 2.0, times=4)
    # Once the attack's failures have aged out, three failures per address are allowed again.
    assert t.retry_after("kitchen", "7.0.0.5", 301.0) == 0.0


def test_three_failures_alone_do_not_refuse_a_user_not_under_attack() -> None:
    t = LoginThrottle(per_user=5)
    fail(t, "alice", "6.6.6.6", 0.0, times=3)
    assert t.begin("alice", "6.6.6.6", 0.0) == 0.0  # the 4th: alice has 4 failures in all, fewer than 5
    assert t.begin("alice", "6.6.6.6", 0.0) == 0.0  # the 5th makes her under attack
    assert t.begin("alice", "6.6.6.6", 0.0) == 300.0
    # She stays under attack until the last of those failures leaves the window, to the last moment.
    assert t.retry_after("alice", "6.6.6.6", 299.5) == 0.5
    assert t.retry_after("alice", "6.6.6.6", 300.0) == 0.0


def test_an_attempt_counts_as_failed_until_it_succeeds() -> None:
    t = LoginThrottle(window_s=60, per_ip=3, per_user_ip=3, per_user=1000)
    # Three concurrent guesses: all admitted before any fails, the fourth refused at once.
    assert [t.begin("alice", "6.6.6.6", 0.0) for _ in range(4)] == [0.0, 0.0, 0.0, 60.0]


def test_success_forgets_that_attempt_and_the_pairs_failures() -> None:
    t = LoginThrottle(window_s=60, per_ip=3, per_user_ip=2, per_user=5, per_user_ip_under_attack=1)
    fail(t, "alice", "4.4.4.4", 0.0)
    fail(t, "alice", "1.1.1.1", 0.0)
    assert t.begin("alice", "1.1.1.1", 1.0) == 0.0
    t.succeeded("alice", "1.1.1.1", 1.0)
    # The pair's failures are cleared: two more may fail from here before it is refused.
    fail(t, "alice", "1.1.1.1", 2.0, times=2)
    assert t.retry_after("alice", "1.1.1.1", 2.0) == 60.0
    # The successful attempt is no failure of the address: it has 3 (t=0, 2, 2), so the oldest is t=0.
    assert t.retry_after("bob", "1.1.1.1", 2.0) == 58.0
    # Nor of the user: alice has 4 failures, fewer than 5, so she is not under attack and 4.4.4.4 (one
    # failure for her) may go on ...
    assert t.retry_after("alice", "4.4.4.4", 2.0) == 0.0
    # ... until a fifth failure anywhere puts her under attack: then one failure per address is the limit.
    fail(t, "alice", "5.5.5.5", 2.0)
    assert t.retry_after("alice", "4.4.4.4", 2.0) == 58.0


def test_success_removes_its_own_timestamp_only() -> None:
    t = LoginThrottle(window_s=60, per_ip=2, per_user_ip=100, per_user=100)
    fail(t, "bob", "1.1.1.1", 0.0)
    assert t.begin("alice", "1.1.1.1", 5.0) == 0.0
    t.succeeded("alice", "1.1.1.1", 5.0)
    t.succeeded("alice", "1.1.1.1", 5.0)  # twice, or for an attempt never begun: harmless
    t.succeeded("carol", "9.9.9.9", 7.0)
    fail(t, "bob", "1.1.1.1", 6.0)
    assert t.begin("bob", "1.1.1.1", 6.0) == 54.0  # bob's failures at 0 and 6 count; alice's success not


def test_memory_is_bounded_and_evicts_the_least_recently_failing() -> None:
    t = LoginThrottle(window_s=1000, per_ip=2, per_user_ip=100, per_user=100, max_keys=2)
    fail(t, "u", "A", 0.0)
    fail(t, "u", "B", 1.0)
    fail(t, "u", "A", 2.0)  # A failed most recently now (and has reached its limit)
    fail(t, "v", "C", 3.0)  # a third address: the least recently failing one (B) is forgotten
    assert len(t._by_ip) == 2 and len(t._by_user_ip) == 2 and len(t._by_user) == 2
    assert t.begin("w", "A", 4.0) == 996.0  # A is still remembered
    fail(t, "w", "B", 4.0, times=1)  # B starts from scratch: one failure, not two
    assert t.retry_after("w", "B", 4.0) == 0.0
    many = LoginThrottle(max_keys=50)
    for i in range(1000):
        many.begin(f"u{i}", f"ip{i}", float(i))
    assert all(len(m) == 50 for m in (many._by_ip, many._by_user, many._by_user_ip))


def test_a_hammering_source_keeps_only_its_limit_of_timestamps() -> None:
    t = LoginThrottle(window_s=10, per_ip=4, per_user_ip=3, per_user=5, per_user_ip_under_attack=2)
    now = 0.0
    for _ in range(100):
        t.begin("alice", "6.6.6.6", now)
        now += 4.0
    assert len(t._by_ip["6.6.6.6"]) <= 4
    assert len(t._by_user_ip[("alice", "6.6.6.6")]) <= 3
    assert len(t._by_user["alice"]) <= 5

