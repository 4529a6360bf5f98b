"""``Store`` on PostgreSQL via SQLAlchemy 2 Core (async) + asyncpg.

Plain CRUD uses Core constructs on the tables in ``schema.py``. The hot path, ``commit_writes`` (called by
the ``GroupCommitter`` with batches of many actors' writes, thousands per second), is a hand-written
statement on asyncpg (``fastpath``) so a whole batch costs one round trip; see ``_COMMIT_BATCH``. Cart batches
are op records (table ``group_ops``) after the group's last snapshot (``group_state.state``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from tableside.config import first_line
from tableside.storage import schema as s
from tableside.storage import till_lines
from tableside.storage.codec import EncodedWrite, encode_write
from tableside.storage.codec import dumps as _dumps
from tableside.storage.fastpath import UNAVAILABLE, RawPool, asyncpg_dsn
from tableside.storage.interface import (
    GUEST_MAX_LINES,
    GUEST_MAX_QUANTITY,
    GUEST_TOUCH_INTERVAL_S,
    OPEN_SESSION_STATUSES,
    Activation,
    BadQrSecret,
    CleanupReport,
    DuplicateUser,
    FencedWrite,
    GroupFull,
    GroupSnapshot,
    GroupWrite,
    GuestCartFull,
    GuestCartLine,
    GuestCartLineNotFound,
    GuestQuantityTooLarge,
    GuestSession,
    GuestSessionNotFound,
    InvalidTransition,
    InvalidWrite,
    JoinRequest,
    JoinResult,
    MenuItem,
    MenuItemNotFound,
    OpenSessionExists,
    OrderNotFound,
    OrderRecord,
    OrderSession,
    OrderSessionChange,
    OrderSessionNotFound,
    OrderSessionStatus,
    OrderStatus,
    Restaurant,
    RestaurantNotFound,
    RevisionMismatch,
    StaffRole,
    StaffSession,
    StaffUser,
    StaleWrite,
    StorageError,
    StorageUnavailable,
    Tab,
    TabClosed,
    Table,
    TableNotFound,
    TablePaid,
    TableStatus,
    TabNotFound,
    TabStatus,
    TokenInfo,
    Transaction,
    User,
    UserSession,
    replay_group,
    validate_business_hours,
    validate_timezone,
)
from tableside.storage.joins import JoinCommitter, decide_rounds
from tableside.storage.urls import to_async_url

# Serialises kitchen_seq assignment across concurrent batches (and processes) *until commit*, so kitchen_seq
# values become visible in increasing order. Without it batch A could take seq 10, batch B seq 11, B commit
# first, and a kitchen display reading "after 9" would see 11, advance its cursor and never see 10.
# Only batches that carry a confirmed order take it, i.e. once per order, not on every cart change. The lock
# is per restaurant (kitchen screens read one restaurant's orders by cursor), so confirmations of different
# restaurants never wait for each other: with one deployment-wide key this lock would be the first thing to
# saturate as restaurants are added (docs/cluster.md, "What breaks first").
KITCHEN_SEQ_LOCK_KEY = 0x6B736571  # "kseq"


async def _lock_kitchen_seq(conn: AsyncConnection, restaurant_ids: set[int]) -> None:
    for rid in sorted(restaurant_ids):  # one order for every transaction: no deadlock between them
        await conn.execute(
            sa.text("SELECT pg_advisory_xact_lock(:k, :r)"), {"k": KITCHEN_SEQ_LOCK_KEY, "r": rid}
        )


# One statement for a whole batch (one "round", see ``_rounds``), run on asyncpg (``fastpath``) with its
# text constant, so it is prepared once per connection and every batch is Bind/Execute only:
#   * ``w``: the writes, unnested from parallel arrays. A write carries either ``state`` (a new snapshot) or
#     ``record`` (an op record: the snapshot stays, the record goes to ``group_ops``).
#   * ``upd``: update every existing row whose stored revision and epoch are the expected ones (a join, so
#     O(n); under READ COMMITTED a row changed concurrently - by a write or an activation bumping the epoch -
#     is re-checked against its newest version, which is what fences a stale owner). An op record leaves
#     ``state`` alone and moves only the revision and ``last_updated``: the row stays a few bytes of update.
#     A row pre-created by ``activate_group`` (revision 0) is updated here by a write expecting 0.
#   * ``ins``: a write expecting 0 inserts its row with its epoch; ON CONFLICT DO NOTHING refuses it when the
#     group already exists (or a concurrent batch just inserted it). ``upd`` and ``ins`` never both change
#     one row in one statement: ``ins`` only conflicts with rows that existed, which it then leaves alone.
#     Refused rows are simply skipped - no error, so they cannot abort the other writes' transaction.
#     Rows come in group_id order so concurrent batches tend to lock rows in the same order; Postgres would
#     break a deadlock anyway (the batch then fails as a whole and every caller gets the error).
#   * ``logged``: the op records of applied writes; ``pruned``: a new snapshot drops the records it covers.
#   * ``ord``: upsert the orders of applied groups only. New confirmed orders draw a kitchen_seq; an
#     existing order keeps its kitchen_seq (assigned once) and only its POS outcome fields change.
#   * ``cnt``: the order counters a numbered batch advanced (empty arrays otherwise; the rows are locked).
# The final SELECT reports which groups were applied; the rest are FencedWrite or StaleWrite (told apart by a
# second SELECT, run only when some write was refused).
_COMMIT_BATCH = """
WITH w AS (
    SELECT * FROM unnest(
        $1::text[], $2::text[], $3::int[], $4::bigint[], $5::bigint[], $6::text[], $7::text[], $8::bigint[],
        $9::float8[]
    ) AS w(group_id, table_id, restaurant_id, revision, expected, state, record, epoch, last_updated)
),
upd AS (
    UPDATE group_state AS g
    SET table_id = w.table_id,
        restaurant_id = w.restaurant_id,
        revision = w.revision,
        state = COALESCE(CAST(w.state AS jsonb), g.state),
        snapshot_revision = CASE WHEN w.state IS NULL THEN g.snapshot_revision ELSE w.revision END,
        last_updated = w.last_updated,
        updated_at = EXTRACT(EPOCH FROM clock_timestamp())::float8
    FROM w
    WHERE g.group_id = w.group_id AND g.revision = w.expected AND g.epoch = w.epoch
    RETURNING g.group_id
),
ins AS (
    INSERT INTO group_state (group_id, table_id, restaurant_id, revision, state, updated_at, epoch,
                             snapshot_revision, last_updated)
    SELECT w.group_id, w.table_id, w.restaurant_id, w.revision, COALESCE(CAST(w.state AS jsonb), '{}'::jsonb),
           EXTRACT(EPOCH FROM clock_timestamp())::float8, w.epoch,
           CASE WHEN w.state IS NULL THEN 0 ELSE w.revision END, w.last_updated
    FROM w
    WHERE w.expected = 0
    ORDER BY w.group_id
    ON CONFLICT (group_id) DO NOTHING
    RETURNING group_id
),
applied AS (
    SELECT group_id FROM upd UNION ALL SELECT group_id FROM ins
),
logged AS (
    INSERT INTO group_ops (group_id, revision, record)
    SELECT w.group_id, w.revision, CAST(w.record AS jsonb)
    FROM w JOIN applied AS a ON a.group_id = w.group_id
    WHERE w.record IS NOT NULL
    ORDER BY w.group_id
    -- cannot happen (revisions only grow, a snapshot drops what it covers); never fail the batch over it
    ON CONFLICT (group_id, revision) DO UPDATE SET record = EXCLUDED.record
    RETURNING 1
),
pruned AS (
    DELETE FROM group_ops AS p
    USING w, applied AS a
    WHERE a.group_id = w.group_id AND w.state IS NOT NULL AND p.group_id = w.group_id AND p.revision <= w.revision
    RETURNING 1
),
o AS (
    SELECT * FROM unnest(
        $10::text[], $11::text[], $12::bigint[], $13::int[], $14::text[], $15::text[], $16::text[], $17::text[],
        $18::bigint[], $19::text[], $20::text[], $21::float8[], $22::text[], $23::text[], $24::float8[],
        $25::text[]
    ) AS o(write_group_id, order_id, order_number, restaurant_id, table_id, group_id, status, items, total,
           special_instructions, placed_by, created_at, pos_ticket_id, error, confirmed_at, kitchen_status)
),
ord AS (
    INSERT INTO orders AS t (order_id, order_number, restaurant_id, table_id, group_id, status, items, total,
                             special_instructions, placed_by, created_at, pos_ticket_id, error, confirmed_at,
                             kitchen_seq, kitchen_status)
    SELECT o.order_id, o.order_number, o.restaurant_id, o.table_id, o.group_id, o.status,
           CAST(o.items AS jsonb), o.total, o.special_instructions, o.placed_by, o.created_at,
           o.pos_ticket_id, o.error, o.confirmed_at,
           CASE WHEN o.status = 'confirmed' THEN nextval('kitchen_seq_seq') END,
           o.kitchen_status
    FROM o
    WHERE o.write_group_id IN (SELECT a.group_id FROM applied AS a)
    ORDER BY o.order_id
    ON CONFLICT (order_id) DO UPDATE
        SET status = EXCLUDED.status,
            pos_ticket_id = EXCLUDED.pos_ticket_id,
            error = EXCLUDED.error,
            confirmed_at = EXCLUDED.confirmed_at,
            -- assigned once: a re-confirmation (or any later update) never renumbers the ticket
            kitchen_seq = COALESCE(t.kitchen_seq, EXCLUDED.kitchen_seq)
    RETURNING 1
),
cnt AS (
    UPDATE stores SET next_order_number = c.n
    FROM unnest($26::int[], $27::bigint[]) AS c(store_id, n)
    WHERE stores.store_id = c.store_id
    RETURNING 1
)
SELECT a.group_id FROM applied AS a
"""

# Activation takes the next epoch in one row-locking statement, so it is serialised with the old owner's
# writes of the group: a write that committed first is stored; a write still waiting on the row lock
# re-checks the epoch after us and is refused. The state is then read by a second statement: the snapshot
# and the op records must come from one snapshot of the database taken after the write that committed
# first (a subquery of the first statement would see group_ops as of before its lock wait).
_ACTIVATE = """
INSERT INTO group_state AS g (group_id, table_id, restaurant_id, revision, state, updated_at, epoch, owner_node)
VALUES ($1, $2, $3, 0, '{}'::jsonb, EXTRACT(EPOCH FROM clock_timestamp())::float8, 1, $4)
ON CONFLICT (group_id) DO UPDATE SET epoch = g.epoch + 1, owner_node = EXCLUDED.owner_node
RETURNING g.epoch
"""
# The last snapshot and the op records after it, oldest first (one statement: one consistent view).
_LOAD_GROUP = """
SELECT g.table_id, g.restaurant_id, g.revision, g.snapshot_revision, g.state,
       COALESCE((SELECT jsonb_agg(o.record ORDER BY o.revision) FROM group_ops AS o
                 WHERE o.group_id = g.group_id AND o.revision > g.snapshot_revision), '[]'::jsonb)
FROM group_state AS g WHERE g.group_id = $1
"""

# Numbered writes (order intents), one statement: a write expecting 0 of a group without a row creates it
# first (revision 0, like an activation) so that there is a row to lock (it stays harmlessly if the write is
# then refused); lock the groups and the order counters of the round (rows in key order: no deadlock between
# batches). The counter rows stay locked until commit, so numbers become visible in the order they were
# taken; a counter locked for a write that is then refused is left as it was.
_LOCK_NUMBERED = """
WITH p AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::bigint[], $5::bool[])
        AS p(group_id, table_id, restaurant_id, epoch, fresh)
),
pre AS (
    INSERT INTO group_state (group_id, table_id, restaurant_id, revision, state, updated_at, epoch)
    SELECT p.group_id, p.table_id, p.restaurant_id, 0, '{}'::jsonb, EXTRACT(EPOCH FROM clock_timestamp())::float8,
           p.epoch
    FROM p WHERE p.fresh
    ORDER BY p.group_id
    ON CONFLICT (group_id) DO NOTHING
    RETURNING group_id, revision, epoch
),
locked AS (
    SELECT group_id, revision, epoch FROM group_state
    WHERE group_id = ANY($1::text[]) ORDER BY group_id FOR UPDATE
),
counters AS (
    SELECT store_id, next_order_number FROM stores
    WHERE store_id = ANY($3::int[]) ORDER BY store_id FOR UPDATE
)
SELECT 'g' AS kind, group_id AS key, revision AS a, epoch AS b FROM pre
UNION ALL SELECT 'g', group_id, revision, epoch FROM locked
UNION ALL SELECT 'c', store_id::text, next_order_number, 0 FROM counters
"""
# Order intents (``GroupWrite.intent_number``) as ONE autocommit statement, no lock held across a round trip.
# CTEs in data-dependency order:
#   * ``upd`` / ``ins``: apply the group rows (revision and epoch checked; under READ COMMITTED a row another
#     transaction changed meanwhile is re-checked once its lock is ours), only for a restaurant that exists.
#     ``ins`` creates the row of a group never written (expected 0 without a row), as the batch does.
#   * ``a``: the applied intents ranked per restaurant in submission order (``ord``).
#   * ``lk`` / ``c``: lock the counters in store_id order, then advance each restaurant's counter by the
#     number of ITS applied intents (a refused write takes none). The counter row lock is taken last and held only for the rest of this statement; a concurrent
#     statement waiting on it reads the counter as committed by us, so numbers increase in commit order.
#   * ``logged`` / ``ord``: the op record with its ``n`` filled in and the order row (``prefix || n``).
# The final SELECT gives each applied group its number; a group not in it was refused.
_COMMIT_INTENTS = """
WITH w AS (
    SELECT * FROM unnest(
        $1::text[], $2::text[], $3::int[], $4::bigint[], $5::bigint[], $6::text[], $7::bigint[], $8::float8[],
        $9::int[]
    ) AS w(group_id, table_id, restaurant_id, revision, expected, record, epoch, last_updated, ord)
),
upd AS (
    UPDATE group_state AS g
    SET table_id = w.table_id,
        restaurant_id = w.restaurant_id,
        revision = w.revision,
        last_updated = w.last_updated,
        updated_at = EXTRACT(EPOCH FROM clock_timestamp())::float8
    FROM w
    WHERE g.group_id = w.group_id AND g.revision = w.expected AND g.epoch = w.epoch
      AND EXISTS (SELECT 1 FROM stores AS r WHERE r.store_id = w.restaurant_id)
    RETURNING g.group_id
),
ins AS (
    INSERT INTO group_state (group_id, table_id, restaurant_id, revision, state, updated_at, epoch,
                             snapshot_revision, last_updated)
    SELECT w.group_id, w.table_id, w.restaurant_id, w.revision, '{}'::jsonb,
           EXTRACT(EPOCH FROM clock_timestamp())::float8, w.epoch, 0, w.last_updated
    FROM w
    WHERE w.expected = 0 AND EXISTS (SELECT 1 FROM stores AS r WHERE r.store_id = w.restaurant_id)
    ORDER BY w.group_id
    ON CONFLICT (group_id) DO NOTHING
    RETURNING group_id
),
a AS (
    SELECT w.*,
           row_number() OVER (PARTITION BY w.restaurant_id ORDER BY w.ord) AS rn,
           count(*) OVER (PARTITION BY w.restaurant_id) AS k
    FROM w
    WHERE w.group_id IN (SELECT group_id FROM upd UNION ALL SELECT group_id FROM ins)
),
lk AS (
    -- the counters in store_id order, so statements of several processes that number intents of several
    -- restaurants cannot deadlock on them (``c`` updates only rows this has locked)
    SELECT r.store_id FROM stores AS r
    WHERE r.store_id IN (SELECT restaurant_id FROM a)
    ORDER BY r.store_id
    FOR UPDATE
),
c AS (
    UPDATE stores AS r
    SET next_order_number = r.next_order_number + t.k
    FROM (SELECT DISTINCT a.restaurant_id, a.k FROM a JOIN lk ON lk.store_id = a.restaurant_id) AS t
    WHERE r.store_id = t.restaurant_id
    RETURNING r.store_id, r.next_order_number - t.k AS first
),
num AS (
    SELECT a.group_id, a.revision, a.record, a.ord, c.first + a.rn - 1 AS n
    FROM a JOIN c ON c.store_id = a.restaurant_id
),
logged AS (
    INSERT INTO group_ops (group_id, revision, record)
    SELECT num.group_id, num.revision, jsonb_set(CAST(num.record AS jsonb), '{n}', to_jsonb(num.n))
    FROM num
    ORDER BY num.group_id
    ON CONFLICT (group_id, revision) DO UPDATE SET record = EXCLUDED.record
    RETURNING 1
),
o AS (
    SELECT * FROM unnest(
        $10::int[], $11::text[], $12::text[], $13::text[], $14::bigint[], $15::text[], $16::text[],
        $17::float8[], $18::text[]
    ) AS o(ord, prefix, table_id, items, total, special_instructions, placed_by, created_at, status)
),
ord AS (
    INSERT INTO orders (order_id, order_number, restaurant_id, table_id, group_id, status, items, total,
                        special_instructions, placed_by, created_at)
    SELECT o.prefix || num.n::text, num.n, a.restaurant_id, o.table_id, a.group_id, o.status,
           CAST(o.items AS jsonb), o.total, o.special_instructions, o.placed_by, o.created_at
    FROM o JOIN num ON num.ord = o.ord JOIN a ON a.ord = o.ord
    ORDER BY num.n
    RETURNING 1
)
SELECT num.group_id, num.n FROM num
"""
_KNOWN_RESTAURANTS = "SELECT store_id FROM stores WHERE store_id = ANY($1::int[])"
_GROUP_EPOCHS = "SELECT group_id, epoch FROM group_state WHERE group_id = ANY($1::text[])"
# The kitchen_seq lock (``KITCHEN_SEQ_LOCK_KEY``) of several restaurants in one statement, in id order.
_LOCK_KITCHEN_SEQ = """
SELECT count(pg_advisory_xact_lock($1::int, r.rid))
FROM (SELECT DISTINCT unnest($2::int[]) AS rid ORDER BY 1) AS r
"""

TOKEN_TOUCH_S = 300.0
_COUNT_LIVE_MEMBERS = sa.text(
    "SELECT count(DISTINCT member_id) FROM tokens WHERE group_id = :group_id AND expires_at > :now"
)

# Hot path (asyncpg, prepared): the websocket handshake resolves the guest's token.
_RESOLVE_TOKEN_RAW = """
SELECT k.table_id, t.restaurant_id, k.group_id, k.member_id, k.expires_at, k.last_used
FROM tokens AS k JOIN tables AS t ON t.table_id = k.table_id
WHERE k.token_hash = $1 AND k.expires_at > $2
"""
_TOUCH_TOKEN_RAW = "UPDATE tokens SET last_used = $2 WHERE token_hash = $1"
_LIVE_MEMBERS_RAW = "SELECT DISTINCT member_id FROM tokens WHERE group_id = $1 AND expires_at > $2"

# A batch of joins decided in one autocommit statement (``PostgresStore.join_tables``). The request rows
# come in as arrays. Every decision is taken on the statement's snapshot; the tables that accept a join are
# then updated (a vacant one opened, an occupied one re-written unchanged) on the condition that the row
# version is still the one the snapshot saw (``xmin``). Every token insert of a table comes with such an
# update (here and in the locked fallback), so "the row is unchanged" means "no join, checkout, reset or
# open_sitting of this table committed after the snapshot": the live count and the vacancy the snapshot
# showed are exact at the moment the row is locked. Otherwise (the lock waits for the other transaction and
# then finds a newer version) the table's joins answer 'retry' and go again in a new statement. The row
# locks last only as long as this statement (none is held across a round trip) and are taken in table_id
# order, so concurrent statements of several processes cannot deadlock.
#
# The QR secret is compared as SHA-256 digests: the comparison's timing can tell at most how many leading
# bytes of the digests agree, which says nothing about the secret (the "double hash" constant-time compare).
# It is checked before the table's status, so a wrong secret learns nothing about the table.
_JOIN_BATCH = """
WITH j AS (
    SELECT * FROM unnest($1::int[], $2::text[], $3::bytea[], $4::text[], $5::text[], $6::text[],
                         $7::float8[], $8::float8[], $9::int[])
        AS j(ord, table_id, secret_hash, token_hash, member_id, new_group_id, expires_at, now, max_members)
),
t AS (
    SELECT tb.table_id, tb.xmin AS seen, tb.restaurant_id, tb.name, tb.status, tb.current_group_id,
           sha256(convert_to(tb.qr_secret, 'UTF8')) AS secret_hash,
           (tb.status = 'vacant' OR tb.current_group_id IS NULL) AS vacant
    FROM tables AS tb
    WHERE tb.table_id IN (SELECT table_id FROM j)
),
c AS (
    SELECT j.*, t.seen, t.restaurant_id, t.name, t.vacant, t.current_group_id,
           CASE WHEN t.table_id IS NULL THEN 'not_found'
                WHEN t.secret_hash <> j.secret_hash THEN 'bad_secret'
                WHEN t.status = 'paid' THEN 'paid'
                ELSE 'ok' END AS verdict
    FROM j LEFT JOIN t ON t.table_id = j.table_id
),
r AS (
    -- the acceptable requests of each table, ranked in submission order; a vacant table's first one
    -- opens the group with its new group id and the others join that group
    SELECT c.*, row_number() OVER w AS rank,
           CASE WHEN c.vacant THEN first_value(c.new_group_id) OVER w ELSE c.current_group_id END AS gid
    FROM c WHERE c.verdict = 'ok'
    WINDOW w AS (PARTITION BY c.table_id ORDER BY c.ord)
),
d AS (
    SELECT r.*,
           CASE WHEN r.vacant AND r.rank = 1 THEN 'ok'
                WHEN r.max_members IS NULL THEN 'ok'
                WHEN (CASE WHEN r.vacant THEN 0 ELSE
                          (SELECT count(DISTINCT k.member_id) FROM tokens AS k
                           WHERE k.group_id = r.current_group_id AND k.expires_at > r.now)
                      END) + r.rank > r.max_members THEN 'full'
                ELSE 'ok' END AS outcome
    FROM r
),
p AS (
    SELECT DISTINCT ON (d.table_id) d.table_id, d.seen, d.vacant, d.gid, d.now, d.restaurant_id, d.name
    FROM d WHERE d.outcome = 'ok'
    ORDER BY d.table_id, d.ord
),
lk AS (
    -- the rows locked in table_id order, so that two statements (two processes) locking several tables
    -- never deadlock; a row whose version is no longer the one the snapshot saw is skipped
    SELECT tb.table_id FROM tables AS tb JOIN p ON p.table_id = tb.table_id
    WHERE tb.xmin = p.seen
    ORDER BY tb.table_id
    FOR UPDATE OF tb
),
upd AS (
    UPDATE tables AS tb
    SET status = CASE WHEN p.vacant THEN 'occupied' ELSE tb.status END,
        current_group_id = p.gid,
        updated_at = CASE WHEN p.vacant THEN p.now ELSE tb.updated_at END
    FROM p JOIN lk ON lk.table_id = p.table_id
    WHERE tb.table_id = p.table_id
    RETURNING tb.table_id
),
tab AS (
    INSERT INTO tabs (store_id, name, table_id, group_id, status, created_at)
    SELECT p.restaurant_id, p.name, p.table_id, p.gid, 'open', p.now
    FROM p JOIN upd ON upd.table_id = p.table_id
    WHERE p.vacant
    ON CONFLICT (group_id) WHERE group_id IS NOT NULL DO NOTHING
),
ins AS (
    INSERT INTO tokens (token_hash, table_id, group_id, member_id, created_at, last_used, expires_at)
    SELECT d.token_hash, d.table_id, d.gid, d.member_id, d.now, d.now, d.expires_at
    FROM d JOIN upd ON upd.table_id = d.table_id
    WHERE d.outcome = 'ok'
    ON CONFLICT (token_hash) DO UPDATE
    SET table_id = EXCLUDED.table_id, group_id = EXCLUDED.group_id, member_id = EXCLUDED.member_id,
        last_used = EXCLUDED.last_used, expires_at = EXCLUDED.expires_at
)
SELECT c.ord,
       CASE WHEN c.verdict <> 'ok' THEN c.verdict
            -- the table's row changed since the snapshot: every decision that depended on it goes again
            WHEN p.table_id IS NOT NULL AND upd.table_id IS NULL THEN 'retry'
            ELSE d.outcome END AS outcome,
       d.gid, c.restaurant_id, coalesce(d.vacant AND d.rank = 1, false) AS opened
FROM c
LEFT JOIN d ON d.ord = c.ord
LEFT JOIN p ON p.table_id = c.table_id
LEFT JOIN upd ON upd.table_id = c.table_id
"""

# How many times a join may meet a concurrently changed table row before it takes the row lock instead.
_JOIN_RETRIES = 3


def _stale_message(w: GroupWrite) -> str:
    return f"group {w.snapshot.group_id}: stored revision is not {w.expected_revision}"


def _rounds(writes: Sequence[GroupWrite], skip: Sequence[StorageError | None]) -> list[list[int]]:
    """Split write indexes into rounds in which no group_id / order_id repeats.

    ``INSERT ... ON CONFLICT DO UPDATE`` may not touch one row twice in a statement; an actor normally has at
    most one write in flight, so this is almost always a single round. Later writes of a group go in later
    rounds, preserving their submission order."""
    rounds: list[list[int]] = []
    seen: list[set[str]] = []
    for i, w in enumerate(writes):
        if skip[i] is not None:  # already refused
            continue
        keys = {"g:" + w.snapshot.group_id}
        # a numbered write's (or an intent's) order id is not known yet
        if w.order is not None and w.number_order is None and w.intent_number is None:
            keys.add("o:" + w.order.order_id)
        # the first round after the last round already holding one of our keys
        target = 0
        for r, used in enumerate(seen):
            if keys & used:
                target = r + 1
        if target == len(rounds):
            rounds.append([])
            seen.append(set())
        rounds[target].append(i)
        seen[target] |= keys
    return rounds


def _jsonb(value: Any) -> Any:
    """A jsonb value read on the raw asyncpg pool: text unless a codec was registered on the connection."""
    return orjson.loads(value) if isinstance(value, str | bytes) else value


_NO_COUNTERS: tuple[list[int], list[int]] = ([], [])
# A placeholder "already decided" result for ``_rounds``'s skip list (the writes of another path).
_SKIP = StorageError("not in this path")


def _batch_args(
    writes: Sequence[GroupWrite],
    encoded: Sequence[EncodedWrite | None],
    idx: Sequence[int],
    counters: tuple[list[int], list[int]] = _NO_COUNTERS,
) -> list[list[Any]]:
    """``_COMMIT_BATCH``'s 27 parameters (parallel arrays) for the writes ``idx``."""
    g: list[list[Any]] = [[] for _ in range(9)]
    o: list[list[Any]] = [[] for _ in range(16)]
    for i in idx:
        w = writes[i]
        enc = encoded[i]
        assert enc is not None
        snap = w.snapshot
        for col, value in zip(
            g,
            (
                snap.group_id,
                snap.table_id,
                snap.restaurant_id,
                snap.revision,
                w.expected_revision,
                enc.state,
                enc.record,
                w.epoch,
                enc.last_updated,
            ),
            strict=True,
        ):
            col.append(value)
        od = w.order
        if od is not None:
            for col, value in zip(
                o,
                (
                    snap.group_id,
                    od.order_id,
                    od.order_number,
                    od.restaurant_id,
                    od.table_id,
                    od.group_id,
                    str(od.status),
                    enc.items,
                    od.total,
                    od.special_instructions,
                    od.placed_by,
                    float(od.created_at),
                    od.pos_ticket_id,
                    od.error,
                    None if od.confirmed_at is None else float(od.confirmed_at),
                    od.kitchen_status,
                ),
                strict=True,
            ):
                col.append(value)
    return [*g, *o, counters[0], counters[1]]


def _unavailable_error(ctx: sa.engine.ExceptionContext) -> BaseException | None:
    """SQLAlchemy's ``handle_error`` hook: a database that is down or restarting (or a connection lost
    mid-call) surfaces as ``StorageUnavailable``, one typed error the server answers with 503, not as one of
    the many driver exceptions."""
    if not isinstance(ctx.original_exception, Exception):
        return None  # a cancellation (task cancelled mid-query) must stay a cancellation
    if ctx.is_disconnect or isinstance(ctx.original_exception, UNAVAILABLE):
        return StorageUnavailable(f"database unavailable: {first_line(ctx.original_exception)}")
    return None


class _Opening:
    """Wraps ``engine.connect()`` / ``engine.begin()``: only taking the connection is translated (that is
    where a refused connection shows); the body and the release are the engine's own, untouched (a
    generator-based wrapper here made cancellation during teardown hang)."""

    __slots__ = ("_cm",)

    def __init__(self, cm: Any) -> None:
        self._cm = cm

    async def __aenter__(self) -> AsyncConnection:
        try:
            conn: AsyncConnection = await self._cm.__aenter__()
        except UNAVAILABLE as exc:
            raise StorageUnavailable(f"database unavailable: {first_line(exc)}") from exc
        return conn

    async def __aexit__(self, *exc_info: Any) -> Any:
        return await self._cm.__aexit__(*exc_info)


def _table(row: sa.Row[Any]) -> Table:
    m = row._mapping
    return Table(
        table_id=m["table_id"],
        restaurant_id=m["restaurant_id"],
        name=m["name"],
        status=TableStatus(m["status"]),
        current_group_id=m["current_group_id"],
        qr_secret=m["qr_secret"],
        updated_at=m["updated_at"],
    )


def _menu_item(row: sa.Row[Any]) -> MenuItem:
    m = row._mapping
    return MenuItem(
        menu_item_id=m["menu_item_id"],
        restaurant_id=m["restaurant_id"],
        name=m["name"],
        category=m["category"],
        price=m["price"],
        available=m["available"],
        sort_order=m["sort_order"],
    )


def _order(row: sa.Row[Any]) -> OrderRecord:
    m = row._mapping
    return OrderRecord(
        order_id=m["order_id"],
        order_number=m["order_number"],
        restaurant_id=m["restaurant_id"],
        table_id=m["table_id"],
        group_id=m["group_id"],
        status=OrderStatus(m["status"]),
        items=m["items"],
        total=m["total"],
        special_instructions=m["special_instructions"],
        placed_by=m["placed_by"],
        created_at=m["created_at"],
        pos_ticket_id=m["pos_ticket_id"],
        error=m["error"],
        confirmed_at=m["confirmed_at"],
        kitchen_seq=m["kitchen_seq"],
        kitchen_status=m["kitchen_status"],
    )


def _staff(row: sa.Row[Any]) -> StaffUser:
    m = row._mapping
    return StaffUser(
        username=m["username"],
        role=StaffRole(m["role"]),
        password_hash=m["password_hash"],
        active=m["active"],
        store_id=m["store_id"],
    )


def _user(row: sa.Row[Any]) -> User:
    m = row._mapping
    return User(
        user_id=str(m["id"]),
        name=m["name"],
        email=m["email"],
        phone=m["phone"],
        line_id=m["line_id"],
        password_hash=m["password_hash"],
        created_at=m["created_at"].timestamp(),
        updated_at=m["updated_at"].timestamp(),
    )


# The unique index a duplicate account ran into, and the field it guards.
_USER_UNIQUE = {"ix_users_email": "email", "ix_users_phone": "phone", "ix_users_line_id": "line_id"}


def _ts(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _guest(row: sa.Row[Any]) -> GuestSession:
    m = row._mapping
    user = m["converted_to_user_id"]
    return GuestSession(
        session_id=m["session_id"],
        created_at=m["created_at"].timestamp(),
        expires_at=m["expires_at"].timestamp(),
        last_accessed_at=m["last_accessed_at"].timestamp(),
        selected_store_id=m["selected_store_id"],
        converted_to_user_id=None if user is None else str(user),
    )


def _cart_line(row: Any) -> GuestCartLine:
    m = row._mapping
    return GuestCartLine(
        item_id=m["id"],
        menu_item_id=m["menu_item_id"],
        quantity=m["quantity"],
        added_at=m["added_at"].timestamp(),
        updated_at=m["updated_at"].timestamp(),
    )


def _order_session(row: Any) -> OrderSession:
    m = row._mapping
    return OrderSession(
        session_id=m["id"],
        user_id=m["user_id"],
        store_id=m["store_id"],
        items=m["items"],
        status=OrderSessionStatus(m["status"]),
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        revision=m["revision"],
        logout_time=m["logout_time"],
        tab_id=m["tab_id"],
        till_id=m["till_id"],
        transaction_id=m["transaction_id"],
        order_id=m["order_id"],
    )


def _transaction(row: Any) -> Transaction:
    m = row._mapping
    return Transaction(
        transaction_id=m["id"],
        store_id=m["store_id"],
        lines=m["lines"],
        total=m["total"],
        payment_method=m["payment_method"],
        created_at=m["created_at"],
        tab_id=m["tab_id"],
        order_session_id=m["order_session_id"],
    )


def _json_items(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Refuse non-JSON items before the statement (a StorageError, as MemoryStore)."""
    try:
        _dumps(items)
    except (TypeError, ValueError) as e:
        raise StorageError(f"order session items are not JSON: {e}") from e
    return items


_OS, _TABS, _TX = s.order_sessions, s.tabs, s.transactions
_OPEN_STATUSES = (str(OrderSessionStatus.ACTIVE), str(OrderSessionStatus.PENDING_LOGOUT))
OPEN = (OrderSessionStatus.ACTIVE, OrderSessionStatus.PENDING_LOGOUT)


_GS, _GC = s.guest_sessions, s.guest_cart_items
_CART_COLS = (_GC.c.id, _GC.c.menu_item_id, _GC.c.quantity, _GC.c.added_at, _GC.c.updated_at)

# Add to a line atomically: a new line, or the existing line's quantity grows; the WHERE of the DO UPDATE
# refuses a sum over the maximum (no row returned, nothing written).
_ADD_ITEM = sa.text(
    "INSERT INTO guest_cart_items (session_id, menu_item_id, quantity, added_at, updated_at)"
    " VALUES (:sid, :item, :qty, :now, :now)"
    " ON CONFLICT (session_id, menu_item_id) DO UPDATE"
    " SET quantity = guest_cart_items.quantity + EXCLUDED.quantity, updated_at = EXCLUDED.updated_at"
    " WHERE guest_cart_items.quantity + EXCLUDED.quantity <= :max_qty"
    " RETURNING id, menu_item_id, quantity, added_at, updated_at"
)

# Merge: every line of the source whose item is of the target's store, added to the target's lines
# (quantities capped at the maximum).
_MERGE_LINE = sa.text(
    "INSERT INTO guest_cart_items (session_id, menu_item_id, quantity, added_at, updated_at)"
    " VALUES (:sid, :item, :qty, :now, :now)"
    " ON CONFLICT (session_id, menu_item_id) DO UPDATE"
    " SET quantity = LEAST(guest_cart_items.quantity + EXCLUDED.quantity, :max_qty),"
    " updated_at = EXCLUDED.updated_at"
)


def _duplicate_field(exc: IntegrityError) -> str | None:
    cause = getattr(exc.orig, "__cause__", None)
    name = getattr(cause, "constraint_name", None)
    if name in _USER_UNIQUE:
        return _USER_UNIQUE[name]
    text = str(exc.orig)
    return next((f for ix, f in _USER_UNIQUE.items() if ix in text), None)


def _storable(text: str) -> bool:
    """Whether Postgres text can hold ``text`` (no NUL, valid UTF-8: no lone surrogate)."""
    if "\x00" in text:
        return False
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _secret_digest(secret: str) -> bytes:
    # surrogatepass: a QR secret from JSON may hold a lone surrogate; it must simply not match.
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


def _join_arrays(requests: Sequence[JoinRequest], indexes: Sequence[int]) -> list[list[Any]]:
    """``_JOIN_BATCH``'s parameters: one array per column, ``ord`` being the position in ``indexes``."""
    rs = [requests[i] for i in indexes]
    return [
        list(range(len(rs))),
        [r.table_id for r in rs],
        [_secret_digest(r.qr_secret) for r in rs],
        [r.token_hash for r in rs],
        [r.member_id for r in rs],
        [r.new_group_id for r in rs],
        [r.expires_at for r in rs],
        [r.now for r in rs],
        [r.max_members for r in rs],
    ]


def _join_outcome(r: JoinRequest, outcome: str, row: Any) -> JoinResult | StorageError:
    match outcome:
        case "ok":
            return JoinResult(
                table_id=r.table_id,
                restaurant_id=row["restaurant_id"],
                group_id=row["gid"],
                member_id=r.member_id,
                expires_at=r.expires_at,
                opened_group=row["opened"],
            )
        case "not_found":
            return TableNotFound(r.table_id)
        case "bad_secret":
            return BadQrSecret(r.table_id)
        case "paid":
            return TablePaid(r.table_id)
        case "full":
            assert r.max_members is not None
            return GroupFull(r.table_id, r.max_members)
    raise RuntimeError(f"join {r.table_id}: unexpected outcome {outcome!r}")


class PostgresStore:
    """The production ``Store``. Create with ``await PostgresStore.connect(url)``; the schema must already be
    migrated (``tableside.storage.migrate.upgrade_to_head``)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        if not sa.event.contains(engine.sync_engine, "handle_error", _unavailable_error):
            sa.event.listen(engine.sync_engine, "handle_error", _unavailable_error)
        # Same pool, no BEGIN/COMMIT: for single statements that are a transaction on their own.
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        # The hot path (cart batches, joins, connects) runs on asyncpg directly (``fastpath``).
        self._raw = RawPool(asyncpg_dsn(engine.url), max_size=10)
        self._joins: JoinCommitter | None = None  # made on the first join (it needs a running loop)

    @staticmethod
    def _connect(opening: Any) -> _Opening:
        """A connection (or transaction) from the pool; a database that refuses connections (down,
        starting, shutting down) is ``StorageUnavailable``, as a connection lost mid-call already is (the
        engine's ``handle_error`` hook)."""
        return _Opening(opening)

    @classmethod
    async def connect(cls, url: str, *, pool_size: int = 10) -> PostgresStore:
        engine = create_async_engine(
            to_async_url(url),
            pool_size=pool_size,
            # A short burst above pool_size beats queueing requests behind the committer's transaction.
            max_overflow=pool_size,
            json_serializer=_dumps,
        )
        store = cls(engine)
        # Fail at startup (not on the first guest request) when the database is unreachable.
        async with engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
        return store

    async def close(self) -> None:
        joins, self._joins = self._joins, None
        if joins is not None and joins.loop is asyncio.get_running_loop():
            await joins.stop()
        await self._raw.close()
        await self.engine.dispose()

    # -- restaurants, tables, menu ---------------------------------------------------------------

    async def upsert_restaurant(self, restaurant: Restaurant) -> None:
        hours = validate_business_hours(restaurant.business_hours)
        tz = validate_timezone(restaurant.timezone)
        created = restaurant.created_at or sa.func.extract("epoch", sa.func.now())
        stmt = pg_insert(s.stores).values(
            store_id=restaurant.restaurant_id,
            name=restaurant.name,
            address=restaurant.address,
            phone=restaurant.phone,
            business_hours=hours,
            timezone=tz,
            created_at=created,
        )
        # next_order_number and created_at are deliberately untouched: re-seeding must never reuse numbers.
        stmt = stmt.on_conflict_do_update(
            index_elements=["store_id"],
            set_={k: stmt.excluded[k] for k in ("name", "address", "phone", "business_hours", "timezone")},
        )
        async with self._connect(self.engine.begin()) as conn:
            await conn.execute(stmt)

    _STORE_COLUMNS = ("store_id", "name", "address", "phone", "business_hours", "timezone", "created_at")

    async def get_restaurant(self, restaurant_id: int) -> Restaurant | None:
        c = s.stores.c
        async with self._connect(self.engine.connect()) as conn:
            row = (
                await conn.execute(
                    sa.select(*(c[k] for k in self._STORE_COLUMNS)).where(c.store_id == restaurant_id)
                )
            ).first()
        return None if row is None else Restaurant(*row)

    async def list_restaurants(self) -> list[Restaurant]:
        c = s.stores.c
        async with self._connect(self.engine.connect()) as conn:
            rows = await conn.execute(sa.select(*(c[k] for k in self._STORE_COLUMNS)).order_by(c.store_id))
            return [Restaurant(*r) for r in rows]

    async def add_table(self, table: Table) -> None:
        stmt = (
            pg_insert(s.tables)
            .values(
                table_id=table.table_id,
                restaurant_id=table.restaurant_id,
                name=table.name,
                status=str(table.status),
                current_group_id=table.current_group_id,
                qr_secret=table.qr_secret,
                updated_at=table.updated_at,
            )
            .on_conflict_do_nothing(index_elements=["table_id"])
        )
        try:
            async with self._connect(self.engine.begin()) as conn:
                await conn.execute(stmt)
        except IntegrityError as e:
            # The only other constraint is the restaurant foreign key.
            raise RestaurantNotFound(f"restaurant {table.restaurant_id} does not exist") from e

    async def remove_table(self, table_id: str) -> None:
        async with self._connect(self.engine.begin()) as conn:
            await conn.execute(sa.delete(s.tokens).where(s.tokens.c.table_id == table_id))
            await conn.execute(sa.delete(s.tables).where(s.tables.c.table_id == table_id))

    async def rename_table(self, table_id: str, name: str) -> Table:
        return await self._update_table(table_id, {"name": name})

    async def _update_one(self, table: sa.Table, key: sa.ColumnElement[bool], values: dict[str, Any]) -> Any:
        """UPDATE one row by key and return it as stored (None when no row matched)."""
        async with self._connect(self.engine.begin()) as conn:
            return (
                await conn.execute(sa.update(table).where(key).values(**values).returning(*table.c))
            ).first()

    async def _update_table(self, table_id: str, values: dict[str, Any]) -> Table:
        row = await self._update_one(s.tables, s.tables.c.table_id == table_id, values)
        if row is None:
            raise TableNotFound(table_id)
        return _table(row)

    async def get_table(self, table_id: str) -> Table | None:
        async with self._connect(self.engine.connect()) as conn:
            row = (await conn.execute(sa.select(s.tables).where(s.tables.c.table_id == table_id))).first()
        return None if row is None else _table(row)

    async def list_tables(self, restaurant_id: int) -> list[Table]:
        async with self._connect(self.engine.connect()) as conn:
            rows = await conn.execute(
                sa.select(s.tables)
                .where(s.tables.c.restaurant_id == restaurant_id)
                .order_by(s.tables.c.table_id)
            )
            return [_table(r) for r in rows]

    async def rotate_qr_secret(self, table_id: str, new_secret: str, now: float) -> Table:
        return await self._update_table(table_id, {"qr_secret": new_secret, "updated_at": now})

    async def upsert_menu_item(self, item: MenuItem) -> None:
        values = {
            "menu_item_id": item.menu_item_id,
            "restaurant_id": item.restaurant_id,
            "name": item.name,
            "category": item.category,
            "price": item.price,
            "available": item.available,
            "sort_order": item.sort_order,
        }
        stmt = pg_insert(s.menu_items).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["menu_item_id"],
            set_={k: stmt.excluded[k] for k in values if k != "menu_item_id"},
        )
        async with self._connect(self.engine.begin()) as conn:
            await conn.execute(stmt)

    async def list_menu(self, restaurant_id: int) -> list[MenuItem]:
        c = s.menu_items.c
        async with self._connect(self.engine.connect()) as conn:
            rows = await conn.execute(
                sa.select(s.menu_items)
                .where(c.restaurant_id == restaurant_id)
                .order_by(c.sort_order, c.name, c.menu_item_id)
            )
            return [_menu_item(r) for r in rows]

    async def set_item_availability(self, menu_item_id: str, available: bool) -> MenuItem:
        row = await self._update_one(
            s.menu_items, s.menu_items.c.menu_item_id == menu_item_id, {"available": available}
        )
        if row is None:
            raise MenuItemNotFound(menu_item_id)
        return _menu_item(row)

    # -- joining and tokens ----------------------------------------------------------------------

    async def join_table(
        self,
        table_id: str,
        qr_secret: str,
        token_hash: str,
        member_id: str,
        new_group_id: str,
        expires_at: float,
        now: float,
        *,
        max_members: int | None = None,
    ) -> JoinResult:
        # Group-committed: concurrent joins (of any tables) share one statement (``join_tables``).
        request = JoinRequest(table_id, qr_secret, token_hash, member_id, new_group_id, expires_at, now, max_members)
        return await self._join_committer().join(request)

    def _join_committer(self) -> JoinCommitter:
        loop = asyncio.get_running_loop()
        committer = self._joins
        if committer is None or (committer.loop is not None and committer.loop is not loop):
            # First join, or a store reused on another event loop (tests): a drainer of this loop.
            committer = self._joins = JoinCommitter(self.join_tables)
        return committer

    async def join_tables(self, requests: Sequence[JoinRequest]) -> list[JoinResult | StorageError]:
        results: list[JoinResult | StorageError | None] = [None] * len(requests)
        tries = [0] * len(requests)
        pending: list[int] = []
        for i, r in enumerate(requests):
            if not _storable(r.table_id):  # no such table can exist; never let it fail the whole batch
                results[i] = TableNotFound(r.table_id)
            else:
                pending.append(i)
        while pending:
            # One round per statement; what is left (later rounds, retries) is split again, in order.
            decided = (r.token_hash for r, res in zip(requests, results, strict=True) if res is not None)
            first = decide_rounds(requests, pending, decided)[0]
            async with self._raw.acquire() as conn:
                rows = await conn.fetch(_JOIN_BATCH, *_join_arrays(requests, first))
            retry: list[int] = []
            for row in rows:
                i = first[row["ord"]]
                outcome = row["outcome"]
                if outcome == "retry":
                    tries[i] += 1
                    retry.append(i)
                else:
                    results[i] = _join_outcome(requests[i], outcome, row)
            done = set(first) - set(retry)
            pending = [i for i in pending if i not in done]
            # A table that keeps changing under us (another node's joins, a checkout): take its row lock,
            # for all of its retried joins, in submission order, before any later join of that table.
            contended = {requests[i].table_id for i in retry if tries[i] >= _JOIN_RETRIES}
            for i in sorted(i for i in retry if requests[i].table_id in contended):
                pending.remove(i)
                try:
                    results[i] = await self._join_locked(requests[i])
                except (TableNotFound, BadQrSecret, TablePaid, GroupFull) as exc:
                    results[i] = exc
        return [r if r is not None else StorageUnavailable("join not decided") for r in results]

    async def _join_locked(self, r: JoinRequest) -> JoinResult:
        """One join as a transaction holding the table's row lock: the fallback for a table whose row keeps
        changing under ``join_tables``'s optimistic statement."""
        t = s.tables.c
        table_id, now = r.table_id, r.now
        async with self._connect(self.engine.begin()) as conn:
            row = (
                await conn.execute(
                    sa.select(t.restaurant_id, t.status, t.current_group_id, t.qr_secret, t.name)
                    .where(t.table_id == table_id)
                    .with_for_update()
                )
            ).first()
            if row is None:
                raise TableNotFound(table_id)
            restaurant_id, status, group_id, secret, table_name = row
            # Constant time, and before the status: a wrong secret learns nothing about the table.
            if not hmac.compare_digest(_secret_digest(secret), _secret_digest(r.qr_secret)):
                raise BadQrSecret(table_id)
            if status == TableStatus.PAID:
                raise TablePaid(table_id)
            opened = status == TableStatus.VACANT or group_id is None
            if not opened and r.max_members is not None:
                live = (
                    await conn.execute(_COUNT_LIVE_MEMBERS, {"group_id": group_id, "now": now})
                ).scalar_one()
                if live >= r.max_members:
                    raise GroupFull(table_id, r.max_members)
            if opened:
                group_id = r.new_group_id
                values: dict[str, Any] = {
                    "status": str(TableStatus.OCCUPIED),
                    "current_group_id": group_id,
                    "updated_at": now,
                }
            else:
                # Unchanged, but a new row version: join_tables's statements see that a join happened.
                values = {"updated_at": t.updated_at}
            await conn.execute(sa.update(s.tables).where(t.table_id == table_id).values(**values))
            if opened:
                await conn.execute(
                    pg_insert(_TABS)
                    .values(
                        store_id=restaurant_id,
                        name=table_name,
                        table_id=table_id,
                        group_id=group_id,
                        status=str(TabStatus.OPEN),
                        created_at=now,
                    )
                    .on_conflict_do_nothing(
                        index_elements=["group_id"], index_where=_TABS.c.group_id.isnot(None)
                    )
                )
            ins = pg_insert(s.tokens).values(
                token_hash=r.token_hash,
                table_id=table_id,
                group_id=group_id,
                member_id=r.member_id,
                created_at=now,
                last_used=now,
                expires_at=r.expires_at,
            )
            ins = ins.on_conflict_do_update(
                index_elements=["token_hash"],
                set_={
                    k: ins.excluded[k]
                    for k in ("table_id", "group_id", "member_id", "last_used", "expires_at")
                },
            )
            await conn.execute(ins)
        return JoinResult(
            table_id=table_id,
            restaurant_id=restaurant_id,
            group_id=group_id,
            member_id=r.member_id,
            expires_at=r.expires_at,
            opened_group=opened,
        )

    async def resolve_token(self, token_hash: str, now: float) -> TokenInfo | None:
        # Every HTTP call and websocket handshake resolves a token: a read, not a write (asyncpg, prepared).
        # ``last_used`` is only refreshed when it is older than TOKEN_TOUCH_S, so a busy phone costs no
        # commit per request.
        async with self._raw.acquire() as conn:
            row = await conn.fetchrow(_RESOLVE_TOKEN_RAW, token_hash, now)
            if row is None:
                return None
            if now - row["last_used"] > TOKEN_TOUCH_S:
                await conn.execute(_TOUCH_TOKEN_RAW, token_hash, now)
        return TokenInfo(
            table_id=row["table_id"],
            restaurant_id=row["restaurant_id"],
            group_id=row["group_id"],
            member_id=row["member_id"],
            expires_at=row["expires_at"],
        )

    async def live_members(self, group_id: str, now: float) -> set[str]:
        async with self._raw.acquire() as conn:
            rows = await conn.fetch(_LIVE_MEMBERS_RAW, group_id, now)
        return {str(r[0]) for r in rows}

    async def revoke_member(self, group_id: str, member_id: str) -> int:
        k = s.tokens.c
        async with self._connect(self.engine.begin()) as conn:
            res = await conn.execute(
                sa.delete(s.tokens).where(k.group_id == group_id, k.member_id == member_id)
            )
        return int(res.rowcount)

    async def open_sitting(self, table_id: str, new_group_id: str, now: float) -> Table:
        async with self._connect(self.engine.begin()) as conn:
            # The table's row lock serialises this with joins: a phone joining at the same moment either
            # opened the group first (then the table is not vacant here) or waits and joins this sitting.
            current = await self._lock_table(conn, table_id)
            if current.status != TableStatus.VACANT or current.current_group_id is not None:
                raise InvalidTransition(f"open a sitting at {current.status} table {table_id}")
            row = (
                await conn.execute(
                    sa.update(s.tables)
                    .where(s.tables.c.table_id == table_id)
                    .values(status=str(TableStatus.OCCUPIED), current_group_id=new_group_id, updated_at=now)
                    .returning(*s.tables.c)
                )
            ).one()
            # The sitting's tab, in the same transaction, as the first join opens it.
            await conn.execute(
                pg_insert(_TABS)
                .values(
                    store_id=current.restaurant_id,
                    name=current.name,
                    table_id=table_id,
                    group_id=new_group_id,
                    status=str(TabStatus.OPEN),
                    created_at=now,
                )
                .on_conflict_do_nothing(index_elements=["group_id"], index_where=_TABS.c.group_id.isnot(None))
            )
        return _table(row)

    async def checkout_table(self, table_id: str, now: float, payment_method: str = "card") -> Table:
        async with self._connect(self.engine.begin()) as conn:
            current = await self._lock_table(conn, table_id)
            if current.status != TableStatus.OCCUPIED:
                raise InvalidTransition(f"checkout of {current.status} table {table_id}")
            row = (
                await conn.execute(
                    sa.update(s.tables)
                    .where(s.tables.c.table_id == table_id)
                    .values(status=str(TableStatus.PAID), updated_at=now)
                    .returning(*s.tables.c)
                )
            ).one()
            if current.current_group_id is not None:
                await conn.execute(sa.delete(s.tokens).where(s.tokens.c.group_id == current.current_group_id))
                tab = (
                    await conn.execute(
                        sa.select(_TABS).where(_TABS.c.group_id == current.current_group_id).with_for_update()
                    )
                ).first()
                if tab is not None and tab.status == TabStatus.OPEN:
                    await self._close_tab_into_transaction(conn, tab, payment_method, now)
        return _table(row)

    async def reset_table(self, table_id: str, now: float) -> Table:
        """Also accepts a vacant table as a no-op (returned unchanged) so a repeated staff reset is harmless."""
        async with self._connect(self.engine.begin()) as conn:
            current = await self._lock_table(conn, table_id)
            if current.status == TableStatus.VACANT and current.current_group_id is None:
                return current
            row = (
                await conn.execute(
                    sa.update(s.tables)
                    .where(s.tables.c.table_id == table_id)
                    .values(status=str(TableStatus.VACANT), current_group_id=None, updated_at=now)
                    .returning(*s.tables.c)
                )
            ).one()
            if current.current_group_id is not None:
                await conn.execute(sa.delete(s.tokens).where(s.tokens.c.group_id == current.current_group_id))
                # a sitting ended without checkout: its tab is closed unpaid (no transaction)
                await conn.execute(
                    sa.update(_TABS)
                    .where(
                        _TABS.c.group_id == current.current_group_id, _TABS.c.status == str(TabStatus.OPEN)
                    )
                    .values(status=str(TabStatus.CLOSED), closed_at=now)
                )
        return _table(row)

    async def _lock_table(self, conn: AsyncConnection, table_id: str) -> Table:
        row = (
            await conn.execute(sa.select(s.tables).where(s.tables.c.table_id == table_id).with_for_update())
        ).first()
        if row is None:
            raise TableNotFound(table_id)
        return _table(row)

    async def close_idle_groups(self, cutoff: float, now: float) -> list[tuple[str, str]]:
        stmt = sa.text(
            """
            WITH idle AS (
                SELECT t.table_id, t.current_group_id AS group_id
                FROM tables t LEFT JOIN group_state g ON g.group_id = t.current_group_id
                WHERE t.status = 'occupied' AND t.current_group_id IS NOT NULL
                  AND GREATEST(t.updated_at, COALESCE(g.last_updated, 0)) < :cutoff
                FOR UPDATE OF t SKIP LOCKED
            ), dropped AS (
                DELETE FROM tokens USING idle WHERE tokens.group_id = idle.group_id
            ), unpaid AS (
                UPDATE tabs SET status = 'closed', closed_at = :now
                FROM idle WHERE tabs.group_id = idle.group_id AND tabs.status = 'open'
            )
            UPDATE tables SET status = 'vacant', current_group_id = NULL, updated_at = :now
            FROM idle WHERE tables.table_id = idle.table_id
            RETURNING tables.table_id, idle.group_id
            """
        )
        async with self._connect(self.engine.begin()) as conn:
            rows = (await conn.execute(stmt, {"cutoff": cutoff, "now": now})).all()
        return [(str(r[0]), str(r[1])) for r in rows]

    async def delete_expired_tokens(self, now: float) -> int:
        async with self._connect(self.engine.begin()) as conn:
            res = await conn.execute(sa.delete(s.tokens).where(s.tokens.c.expires_at <= now))
        return int(res.rowcount)

    # -- group state -----------------------------------------------------------------------------

    async def activate_group(
        self, group_id: str, table_id: str, restaurant_id: int, node_id: str
    ) -> Activation:
        async with self._raw.acquire() as conn:
            epoch = await conn.fetchval(_ACTIVATE, group_id, table_id, restaurant_id, node_id)
            row = await conn.fetchrow(_LOAD_GROUP, group_id)
        assert row is not None  # the row exists: the statement before made sure
        table, restaurant, _revision, snapshot_revision, state, ops = row
        snapshot = (
            None
            if snapshot_revision == 0
            else GroupSnapshot(group_id, table, restaurant, int(snapshot_revision), _jsonb(state))
        )
        return Activation(epoch=int(epoch), snapshot=snapshot, ops=_jsonb(ops))

    async def load_group(self, group_id: str) -> GroupSnapshot | None:
        async with self._raw.acquire() as conn:
            row = await conn.fetchrow(_LOAD_GROUP, group_id)
        # revision 0: a row only activate_group created; nothing was written yet
        if row is None or row[2] == 0:
            return None
        table, restaurant, _revision, snapshot_revision, state, ops = row
        snapshot = GroupSnapshot(group_id, table, restaurant, int(snapshot_revision), _jsonb(state))
        return replay_group(snapshot, _jsonb(ops))

    async def commit_writes(self, writes: Sequence[GroupWrite]) -> list[StorageError | None]:
        if not writes:
            return []
        results: list[StorageError | None] = [None] * len(writes)
        # Serialise first, outside the transaction: one write with bad data is refused on its own. A numbered
        # write is encoded once number_order has made its state (``_number_writes``).
        work = list(writes)
        encoded: list[EncodedWrite | None] = [None] * len(writes)
        for i, w in enumerate(writes):
            if w.number_order is not None:
                continue
            try:
                encoded[i] = encode_write(w)
            except InvalidWrite as e:
                results[i] = e
        if all(r is not None for r in results):
            return results
        intents = [i for i, w in enumerate(writes) if w.intent_number is not None and results[i] is None]
        if intents:
            if len(intents) != len(writes) - sum(r is not None for r in results):
                # The intent lane sends intents only; a mixed batch is split (intents first: own statement).
                rest = [i for i, w in enumerate(writes) if w.intent_number is None and results[i] is None]
                sub = await self.commit_writes([writes[i] for i in rest])
                for i, r in zip(rest, sub, strict=True):
                    results[i] = r
            await self._commit_intents(writes, encoded, intents, results)
            return results
        numbered = any(w.number_order is not None for w in writes)
        confirming = {
            w.order.restaurant_id
            for w, r in zip(writes, results, strict=True)
            if r is None
            and w.order is not None
            and w.number_order is None
            and w.order.status == OrderStatus.CONFIRMED
        }
        rounds = _rounds(writes, skip=results)
        async with self._raw.acquire() as conn:
            if not confirming and not numbered and len(rounds) == 1:
                # The common case is one statement: its own implicit transaction (autocommit), one round
                # trip instead of BEGIN / statement / COMMIT, which under load is most of an ack's wait.
                idx = sorted(rounds[0], key=lambda i: writes[i].snapshot.group_id)
                applied = {r[0] for r in await conn.fetch(_COMMIT_BATCH, *_batch_args(writes, encoded, idx))}
                await self._mark_refused(conn, writes, idx, applied, results)
                return results
            async with conn.transaction():
                await self._commit_rounds(conn, work, encoded, rounds, results, confirming)
        return results

    async def _commit_rounds(
        self,
        conn: Any,
        work: list[GroupWrite],
        encoded: list[EncodedWrite | None],
        rounds: list[list[int]],
        results: list[StorageError | None],
        confirming: set[int],
    ) -> None:
        """The batch as one transaction (numbered writes, confirmations, or a group twice in the batch):
        BEGIN, [kitchen lock], per round [lock + number] and the batch statement, COMMIT."""
        locked: set[int] = set()  # restaurants whose kitchen_seq lock this transaction holds
        if confirming:
            await conn.fetchval(_LOCK_KITCHEN_SEQ, KITCHEN_SEQ_LOCK_KEY, sorted(confirming))
            locked |= confirming
        counters: dict[int, int] = {}  # restaurant -> its next order number, row locked until commit
        taken: dict[int, int] = {}  # restaurant -> numbers taken by this transaction
        for idx in rounds:
            num_idx = [i for i in idx if work[i].number_order is not None]
            if num_idx:
                await self._number_writes(conn, work, encoded, num_idx, results, counters, taken)
                idx = [i for i in idx if results[i] is None]
                late = {
                    o.restaurant_id
                    for i in num_idx
                    if results[i] is None and (o := work[i].order) is not None and o.status == OrderStatus.CONFIRMED
                }
                late -= locked
                if late:
                    # Only if number_order made a confirmed order (an intent is normally processing).
                    await conn.fetchval(_LOCK_KITCHEN_SEQ, KITCHEN_SEQ_LOCK_KEY, sorted(late))
                    locked |= late
            if not idx:
                continue
            # Sorted by group_id (stable for equal ids) so every batch locks rows in the same order.
            idx = sorted(idx, key=lambda i: work[i].snapshot.group_id)
            moved = sorted(rid for rid, count in taken.items() if count)
            args = _batch_args(work, encoded, idx, (moved, [counters[rid] for rid in moved]))
            applied = {r[0] for r in await conn.fetch(_COMMIT_BATCH, *args)}
            unapplied = [i for i in num_idx if results[i] is None and work[i].snapshot.group_id not in applied]
            if unapplied:
                # Cannot happen (their rows are locked and were checked): roll back rather than leave a gap.
                gids = sorted(work[i].snapshot.group_id for i in unapplied)
                raise StorageError(f"numbered writes of {gids} were checked but not applied")
            await self._mark_refused(conn, work, idx, applied, results)

    async def _number_writes(
        self,
        conn: Any,
        work: list[GroupWrite],
        encoded: list[EncodedWrite | None],
        num_idx: Sequence[int],
        results: list[StorageError | None],
        counters: dict[int, int],
        taken: dict[int, int],
    ) -> None:
        """Lock and check the groups of one round's numbered writes (and their restaurants' counters, one
        statement), then give each write that will apply the next number of its restaurant (in submission
        order) and replace it by what ``number_order`` makes."""
        ws = [work[i] for i in num_idx]
        rows = await conn.fetch(
            _LOCK_NUMBERED,
            [w.snapshot.group_id for w in ws],
            [w.snapshot.table_id for w in ws],
            [w.snapshot.restaurant_id for w in ws],
            [w.epoch for w in ws],
            [w.expected_revision == 0 for w in ws],
        )
        groups: dict[str, tuple[int, int]] = {}
        for kind, key, a, b in rows:
            if kind == "g":
                groups[key] = (int(a), int(b))
            elif int(key) not in counters:  # a counter this transaction already advanced keeps its value
                counters[int(key)] = int(a)
                taken[int(key)] = 0
        passing: list[int] = []
        for i in num_idx:
            w = work[i]
            row = groups.get(w.snapshot.group_id)
            if row is None:  # only if the pre-created row was deleted meanwhile
                if w.expected_revision != 0:
                    results[i] = StaleWrite(_stale_message(w))
                else:
                    passing.append(i)
            elif row[1] != w.epoch:
                results[i] = FencedWrite(w.snapshot.group_id, w.epoch, row[1])
            elif row[0] != w.expected_revision:
                results[i] = StaleWrite(_stale_message(w))
            else:
                passing.append(i)
        for i in passing:
            w = work[i]
            rid = w.snapshot.restaurant_id
            if rid not in counters:
                results[i] = RestaurantNotFound(str(rid))
                continue
            n = counters[rid]
            assert w.number_order is not None
            try:
                state, order = w.number_order(n)
                made = replace(
                    w, snapshot=replace(w.snapshot, state=state), order=order, number_order=None, ops=None
                )
                enc = encode_write(made)
            except InvalidWrite as e:
                results[i] = e
                continue
            except Exception as e:  # noqa: BLE001 - the caller's bug, refused as that write's own error
                results[i] = InvalidWrite(f"group {w.snapshot.group_id}: number_order({n}) failed: {e!r}")
                continue
            counters[rid] = n + 1
            taken[rid] += 1
            work[i], encoded[i] = made, enc

    async def _commit_intents(
        self,
        writes: Sequence[GroupWrite],
        encoded: list[EncodedWrite | None],
        idx: list[int],
        results: list[StorageError | None],
    ) -> None:
        """Order intents, one autocommit statement per round (almost always one): see ``_COMMIT_INTENTS``.
        Only after the commit is each applied write's ``intent_number`` told its number."""
        for rnd in _rounds(writes, skip=[None if i in idx else results[i] or _SKIP for i in range(len(writes))]):
            args: list[list[Any]] = [[] for _ in range(18)]
            for ord_, i in enumerate(rnd):
                w, enc = writes[i], encoded[i]
                assert enc is not None and enc.record is not None and w.order is not None
                snap, od = w.snapshot, w.order
                for col, value in zip(
                    args,
                    (
                        snap.group_id, snap.table_id, snap.restaurant_id, snap.revision, w.expected_revision,
                        enc.record, w.epoch, enc.last_updated, ord_,
                        ord_, od.order_id, od.table_id, enc.items, od.total, od.special_instructions,
                        od.placed_by, od.created_at, str(od.status),
                    ),
                    strict=True,
                ):
                    col.append(value)
            async with self._raw.acquire() as conn:
                numbers = {r[0]: int(r[1]) for r in await conn.fetch(_COMMIT_INTENTS, *args)}
                await self._mark_refused(conn, writes, rnd, set(numbers), results)
                refused = [i for i in rnd if results[i] is not None]
                if refused:
                    rids = sorted({writes[i].snapshot.restaurant_id for i in refused})
                    known = {int(r[0]) for r in await conn.fetch(_KNOWN_RESTAURANTS, rids)}
                    for i in refused:
                        if writes[i].snapshot.restaurant_id not in known:
                            results[i] = RestaurantNotFound(str(writes[i].snapshot.restaurant_id))
            for i in rnd:
                n = numbers.get(writes[i].snapshot.group_id)
                callback = writes[i].intent_number
                if n is not None and callback is not None:
                    callback(n)

    @staticmethod
    async def _mark_refused(
        conn: Any,
        writes: Sequence[GroupWrite],
        idx: Sequence[int],
        applied: set[str],
        results: list[StorageError | None],
    ) -> None:
        """Refused writes are FencedWrite when the stored epoch differs, else StaleWrite. The extra SELECT
        runs only when something was refused (rare), never on the happy path."""
        refused = [i for i in idx if writes[i].snapshot.group_id not in applied]
        if not refused:
            return
        ids = sorted({writes[i].snapshot.group_id for i in refused})
        epochs = {r[0]: int(r[1]) for r in await conn.fetch(_GROUP_EPOCHS, ids)}
        for i in refused:
            w = writes[i]
            stored = epochs.get(w.snapshot.group_id)
            if stored is not None and stored != w.epoch:
                results[i] = FencedWrite(w.snapshot.group_id, w.epoch, stored)
            else:
                results[i] = StaleWrite(_stale_message(w))

    # -- orders ----------------------------------------------------------------------------------

    async def next_order_number(self, restaurant_id: int, count: int = 1) -> int:
        if count < 1:
            raise ValueError("count must be >= 1")
        r = s.stores.c
        # A single UPDATE ... RETURNING in its own committed transaction: the row lock orders concurrent
        # callers, and once returned the number is durable, so it is never handed out again after a crash.
        async with self._connect(self.engine.begin()) as conn:
            row = (
                await conn.execute(
                    sa.update(s.stores)
                    .where(r.store_id == restaurant_id)
                    .values(next_order_number=r.next_order_number + count)
                    .returning(r.next_order_number - count)
                )
            ).first()
        if row is None:
            raise RestaurantNotFound(str(restaurant_id))
        return int(row[0])

    async def get_order(self, order_id: str) -> OrderRecord | None:
        async with self._connect(self.engine.connect()) as conn:
            row = (await conn.execute(sa.select(s.orders).where(s.orders.c.order_id == order_id))).first()
        return None if row is None else _order(row)

    async def list_group_orders(self, group_id: str) -> list[OrderRecord]:
        o = s.orders.c
        async with self._connect(self.engine.connect()) as conn:
            rows = await conn.execute(
                sa.select(s.orders).where(o.group_id == group_id).order_by(o.created_at, o.order_number)
            )
            return [_order(r) for r in rows]

    async def list_orders_by_status(self, status: OrderStatus) -> list[OrderRecord]:
        o = s.orders.c
        async with self._connect(self.engine.connect()) as conn:
            rows = await conn.execute(
                sa.select(s.orders).where(o.status == str(status)).order_by(o.created_at, o.order_id)
            )
            return [_order(r) for r in rows]

    async def list_kitchen_orders(self, restaurant_id: int, after_seq: int, limit: int) -> list[OrderRecord]:
        o = s.orders.c
        async with self._connect(self.engine.connect()) as conn:
            rows = await conn.execute(
                sa.select(s.orders)
                .where(
                    o.restaurant_id == restaurant_id,
                    o.status == str(OrderStatus.CONFIRMED),
                    o.kitchen_seq > after_seq,
                )
                .order_by(o.kitchen_seq)
                .limit(limit)
            )
            return [_order(r) for r in rows]

    async def set_kitchen_status(self, order_id: str, status: str) -> OrderRecord:
        row = await self._update_one(s.orders, s.orders.c.order_id == order_id, {"kitchen_status": status})
        if row is None:
            raise OrderNotFound(order_id)
        return _order(row)

    # -- staff -----------------------------------------------------------------------------------

    async def upsert_staff(self, user: StaffUser) -> None:
        stmt = pg_insert(s.staff_users).values(
            username=user.username,
            role=str(user.role),
            password_hash=user.password_hash,
            active=user.active,
            store_id=user.store_id,
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["username"],
            set_={k: stmt.excluded[k] for k in ("role", "password_hash", "active", "store_id")},
        )
        try:
            async with self._connect(self.engine.begin()) as conn:
                await conn.execute(stmt)
        except IntegrityError as e:  # the store foreign key
            raise RestaurantNotFound(f"store {user.store_id} does not exist") from e

    async def get_staff(self, username: str) -> StaffUser | None:
        async with self._connect(self.engine.connect()) as conn:
            row = (
                await conn.execute(sa.select(s.staff_users).where(s.staff_users.c.username == username))
            ).first()
        return None if row is None else _staff(row)

    async def list_staff(self) -> list[StaffUser]:
        async with self._connect(self.engine.connect()) as conn:
            rows = await conn.execute(sa.select(s.staff_users).order_by(s.staff_users.c.username))
            return [_staff(r) for r in rows]

    async def create_staff_session(
        self, token_hash: str, username: str, role: StaffRole, expires_at: float
    ) -> None:
        stmt = pg_insert(s.staff_sessions).values(
            token_hash=token_hash, username=username, role=str(role), expires_at=expires_at
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["token_hash"],
            set_={k: stmt.excluded[k] for k in ("username", "role", "expires_at")},
        )
        async with self._connect(self.engine.begin()) as conn:
            await conn.execute(stmt)

    async def resolve_staff_session(self, token_hash: str, now: float) -> StaffSession | None:
        """None when expired, or when the user has since been removed or deactivated (that ends sessions)."""
        ss, su = s.staff_sessions.c, s.staff_users.c
        stmt = (
            sa.select(ss.username, ss.role, ss.expires_at, su.store_id)
            .select_from(s.staff_sessions.join(s.staff_users, su.username == ss.username))
            .where(ss.token_hash == token_hash, ss.expires_at > now, su.active)
        )
        async with self._connect(self.engine.connect()) as conn:
            row = (await conn.execute(stmt)).first()
        if row is None:
            return None
        return StaffSession(username=row[0], role=StaffRole(row[1]), expires_at=row[2], store_id=row[3])

    async def delete_expired_staff_sessions(self, now: float) -> int:
        async with self._connect(self.engine.begin()) as conn:
            res = await conn.execute(sa.delete(s.staff_sessions).where(s.staff_sessions.c.expires_at <= now))
        return int(res.rowcount)

    async def delete_staff_session(self, token_hash: str) -> None:
        async with self._connect(self.engine.begin()) as conn:
            await conn.execute(sa.delete(s.staff_sessions).where(s.staff_sessions.c.token_hash == token_hash))

    async def delete_staff_sessions_for_user(self, username: str) -> int:
        async with self._connect(self.engine.begin()) as conn:
            res = await conn.execute(
                sa.delete(s.staff_sessions).where(s.staff_sessions.c.username == username)
            )
        return int(res.rowcount)

    async def remove_staff(self, username: str) -> bool:
        async with self._connect(self.engine.begin()) as conn:
            await conn.execute(sa.delete(s.staff_sessions).where(s.staff_sessions.c.username == username))
            res = await conn.execute(sa.delete(s.staff_users).where(s.staff_users.c.username == username))
            if res.rowcount:
                # Their open sessions go; completed and assigned ones stay (history, money taken).
                await conn.execute(
                    sa.delete(s.order_sessions).where(
                        s.order_sessions.c.user_id == username,
                        s.order_sessions.c.status.in_([st.value for st in OPEN_SESSION_STATUSES]),
                    )
                )
        return int(res.rowcount) > 0

    # -- customer accounts ---------------------------------------------------------------------------

    async def create_user(self, user: User) -> None:
        stmt = sa.insert(s.users).values(
            id=user.user_id,
            name=user.name,
            email=user.email,
            phone=user.phone,
            line_id=user.line_id,
            password_hash=user.password_hash,
            created_at=datetime.fromtimestamp(user.created_at, UTC),
            updated_at=datetime.fromtimestamp(user.updated_at, UTC),
        )
        try:
            async with self._connect(self.engine.begin()) as conn:
                await conn.execute(stmt)
        except IntegrityError as e:
            field = _duplicate_field(e)
            if field is None:
                raise StorageError(f"user {user.user_id}: {first_line(e.orig or e)}") from e
            raise DuplicateUser(field) from e

    async def get_user(self, user_id: str) -> User | None:
        try:
            uuid.UUID(user_id)
        except ValueError:
            return None  # not a UUID: no such user (Postgres would refuse the cast)
        async with self._connect(self.engine.connect()) as conn:
            row = (await conn.execute(sa.select(s.users).where(s.users.c.id == user_id))).first()
        return None if row is None else _user(row)

    async def get_user_by_email(self, email: str) -> User | None:
        async with self._connect(self.engine.connect()) as conn:
            row = (await conn.execute(sa.select(s.users).where(s.users.c.email == email))).first()
        return None if row is None else _user(row)

    async def create_user_session(self, token_hash: str, user_id: str, expires_at: float, now: float) -> None:
        stmt = sa.insert(s.user_sessions).values(
            token_hash=token_hash, user_id=user_id, expires_at=expires_at, created_at=now
        )
        try:
            async with self._connect(self.engine.begin()) as conn:
                await conn.execute(stmt)
        except IntegrityError as e:
            raise StorageError(f"user session: {first_line(e.orig or e)}") from e

    async def resolve_user_session(self, token_hash: str, now: float) -> UserSession | None:
        us = s.user_sessions.c
        stmt = sa.select(us.token_hash, us.user_id, us.expires_at).where(
            us.token_hash == token_hash, us.expires_at > now
        )  # the foreign key (ON DELETE CASCADE) means a session row always has its user
        async with self._connect(self.engine.connect()) as conn:
            row = (await conn.execute(stmt)).first()
        if row is None or not hmac.compare_digest(row[0], token_hash):
            return None
        return UserSession(user_id=str(row[1]), expires_at=row[2])

    async def delete_user_session(self, token_hash: str) -> None:
        async with self._connect(self._autocommit.connect()) as conn:
            await conn.execute(sa.delete(s.user_sessions).where(s.user_sessions.c.token_hash == token_hash))

    async def delete_expired_user_sessions(self, now: float) -> int:
        async with self._connect(self._autocommit.connect()) as conn:
            res = await conn.execute(sa.delete(s.user_sessions).where(s.user_sessions.c.expires_at <= now))
        return int(res.rowcount)

    # -- guest sessions and guest carts (seed 001) ------------------------------------------------

    async def create_guest_session(self, session: GuestSession) -> None:
        stmt = sa.insert(_GS).values(
            session_id=session.session_id,
            selected_store_id=session.selected_store_id,
            created_at=_ts(session.created_at),
            expires_at=_ts(session.expires_at),
            last_accessed_at=_ts(session.last_accessed_at),
            converted_to_user_id=session.converted_to_user_id,
        )
        try:
            async with self._connect(self.engine.begin()) as conn:
                await conn.execute(stmt)
        except IntegrityError as e:
            raise StorageError(f"guest session: {first_line(e.orig or e)}") from e

    async def get_guest_session(
        self, session_id: str, now: float, *, include_expired: bool = False
    ) -> GuestSession | None:
        stmt = sa.select(_GS).where(_GS.c.session_id == session_id)
        if not include_expired:
            stmt = stmt.where(_GS.c.expires_at > _ts(now))
        async with self._connect(self.engine.connect()) as conn:
            row = (await conn.execute(stmt)).first()
        return None if row is None else _guest(row)

    async def touch_guest_session(self, session_id: str, now: float, expires_at: float) -> bool:
        stmt = (
            sa.update(_GS)
            .where(
                _GS.c.session_id == session_id,
                _GS.c.expires_at > _ts(now),
                _GS.c.last_accessed_at < _ts(now - GUEST_TOUCH_INTERVAL_S),
            )
            .values(expires_at=_ts(expires_at), last_accessed_at=_ts(now))
        )
        async with self._connect(self.engine.begin()) as conn:
            res = await conn.execute(stmt)
        return bool(res.rowcount)

    async def _lock_guest(self, conn: AsyncConnection, session_id: str, now: float) -> GuestSession:
        """The live session's row, locked until commit (serialises the changes of one cart)."""
        row = (
            await conn.execute(
                sa.select(_GS)
                .where(_GS.c.session_id == session_id, _GS.c.expires_at > _ts(now))
                .with_for_update()
            )
        ).first()
        if row is None:
            raise GuestSessionNotFound("guest session unknown or expired")
        return _guest(row)

    async def select_guest_store(self, session_id: str, store_id: int, now: float) -> GuestSession:
        async with self._connect(self.engine.begin()) as conn:
            session = await self._lock_guest(conn, session_id, now)
            exists = (
                await conn.execute(sa.select(s.stores.c.store_id).where(s.stores.c.store_id == store_id))
            ).first()
            if exists is None:
                raise RestaurantNotFound(f"store {store_id} does not exist")
            if session.selected_store_id != store_id:
                await conn.execute(sa.delete(_GC).where(_GC.c.session_id == session_id))
                await conn.execute(
                    sa.update(_GS).where(_GS.c.session_id == session_id).values(selected_store_id=store_id)
                )
        session.selected_store_id = store_id
        return session

    async def add_guest_cart_item(
        self,
        session_id: str,
        menu_item_id: str,
        quantity: int,
        now: float,
        *,
        max_lines: int = GUEST_MAX_LINES,
    ) -> GuestCartLine:
        async with self._connect(self.engine.begin()) as conn:
            await self._lock_guest(conn, session_id, now)
            lines = (
                await conn.execute(
                    sa.select(
                        sa.func.count(), sa.func.count().filter(_GC.c.menu_item_id == menu_item_id)
                    ).where(_GC.c.session_id == session_id)
                )
            ).one()
            if lines[1] == 0 and lines[0] >= max_lines:
                raise GuestCartFull(f"a guest cart holds at most {max_lines} lines")
            try:
                row = (
                    await conn.execute(
                        _ADD_ITEM,
                        {
                            "sid": session_id,
                            "item": menu_item_id,
                            "qty": quantity,
                            "now": _ts(now),
                            "max_qty": GUEST_MAX_QUANTITY,
                        },
                    )
                ).first()
            except IntegrityError as e:
                if "ck_guest_cart_items_quantity" in str(e.orig):
                    raise GuestQuantityTooLarge(f"a quantity is 1..{GUEST_MAX_QUANTITY}") from e
                raise MenuItemNotFound(menu_item_id) from e
            if row is None:
                raise GuestQuantityTooLarge(f"a line holds at most {GUEST_MAX_QUANTITY}")
        return _cart_line(row)

    async def set_guest_cart_quantity(
        self, session_id: str, item_id: int, quantity: int, now: float
    ) -> GuestCartLine:
        if not 1 <= quantity <= GUEST_MAX_QUANTITY:
            raise GuestQuantityTooLarge(f"a quantity is 1..{GUEST_MAX_QUANTITY}")
        stmt = (
            sa.update(_GC)
            .where(_GC.c.id == item_id, _GC.c.session_id == session_id)
            .values(quantity=quantity, updated_at=_ts(now))
            .returning(*_CART_COLS)
        )
        async with self._connect(self.engine.begin()) as conn:
            row = (await conn.execute(stmt)).first()
        if row is None:
            raise GuestCartLineNotFound(f"no cart line {item_id}")
        return _cart_line(row)

    async def delete_guest_cart_item(self, session_id: str, item_id: int) -> bool:
        async with self._connect(self.engine.begin()) as conn:
            res = await conn.execute(
                sa.delete(_GC).where(_GC.c.id == item_id, _GC.c.session_id == session_id)
            )
        return bool(res.rowcount)

    async def list_guest_cart(self, session_id: str) -> list[GuestCartLine]:
        async with self._connect(self.engine.connect()) as conn:
            rows = await conn.execute(
                sa.select(*_CART_COLS).where(_GC.c.session_id == session_id).order_by(_GC.c.id)
            )
        return [_cart_line(r) for r in rows]

    async def count_guest_cart_lines(self, session_id: str) -> int:
        async with self._connect(self.engine.connect()) as conn:
            n = (
                await conn.execute(sa.select(sa.func.count()).where(_GC.c.session_id == session_id))
            ).scalar()
        return int(n or 0)

    async def take_guest_cart(self, session_id: str) -> list[GuestCartLine]:
        async with self._connect(self.engine.begin()) as conn:
            rows = await conn.execute(
                sa.delete(_GC).where(_GC.c.session_id == session_id).returning(*_CART_COLS)
            )
            lines = [_cart_line(r) for r in rows]
        return sorted(lines, key=lambda line: line.item_id)

    @staticmethod
    def _user_cart_stmt(user_id: str, now: float) -> sa.Select[Any]:
        return (
            sa.select(_GS)
            .where(_GS.c.converted_to_user_id == user_id, _GS.c.expires_at > _ts(now))
            .order_by(_GS.c.id)
            .limit(1)
        )

    async def get_user_cart_session(self, user_id: str, now: float) -> GuestSession | None:
        try:
            uuid.UUID(user_id)
        except ValueError:
            return None
        async with self._connect(self.engine.connect()) as conn:
            row = (await conn.execute(self._user_cart_stmt(user_id, now))).first()
        return None if row is None else _guest(row)

    async def convert_guest_session(self, session_id: str, user_id: str, now: float) -> GuestSession | None:
        async with self._connect(self.engine.begin()) as conn:
            # Serialise conversions of one user: two logins at once never make two carts.
            locked = (
                await conn.execute(sa.select(s.users.c.id).where(s.users.c.id == user_id).with_for_update())
            ).first()
            if locked is None:
                raise StorageError(f"no user {user_id}")
            session = await self._lock_guest(conn, session_id, now)
            if session.converted_to_user_id not in (None, user_id):
                return None  # another account's cart: left alone
            row = (await conn.execute(self._user_cart_stmt(user_id, now).with_for_update())).first()
            await conn.execute(
                sa.update(_GS).where(_GS.c.session_id == session_id).values(converted_to_user_id=user_id)
            )
            session.converted_to_user_id = user_id
            if row is None or row._mapping["session_id"] == session_id:
                return session
            target = _guest(row)
            await self._merge_cart(conn, session, target, now)
        return target

    async def _merge_cart(
        self, conn: AsyncConnection, source: GuestSession, target: GuestSession, now: float
    ) -> None:
        if source.selected_store_id is None:
            return  # a session without a store has no lines
        if target.selected_store_id is None:
            await conn.execute(
                sa.update(_GS)
                .where(_GS.c.session_id == target.session_id)
                .values(selected_store_id=source.selected_store_id)
            )
            target.selected_store_id = source.selected_store_id
        if target.selected_store_id != source.selected_store_id:
            return  # lines of another store stay in the source session
        have = {
            r[0]
            for r in await conn.execute(
                sa.select(_GC.c.menu_item_id).where(_GC.c.session_id == target.session_id)
            )
        }
        moved: list[str] = []
        for line in [
            _cart_line(r)
            for r in await conn.execute(
                sa.select(*_CART_COLS).where(_GC.c.session_id == source.session_id).order_by(_GC.c.id)
            )
        ]:
            if line.menu_item_id not in have:
                if len(have) >= GUEST_MAX_LINES:
                    continue  # the user's cart is full: the line stays in the guest session
                have.add(line.menu_item_id)
            await conn.execute(
                _MERGE_LINE,
                {
                    "sid": target.session_id,
                    "item": line.menu_item_id,
                    "qty": line.quantity,
                    "now": _ts(now),
                    "max_qty": GUEST_MAX_QUANTITY,
                },
            )
            moved.append(line.menu_item_id)
        if moved:
            await conn.execute(
                sa.delete(_GC).where(_GC.c.session_id == source.session_id, _GC.c.menu_item_id.in_(moved))
            )

    async def delete_expired_guest_sessions(self, now: float) -> int:
        async with self._connect(self._autocommit.connect()) as conn:
            res = await conn.execute(sa.delete(_GS).where(_GS.c.expires_at <= _ts(now)))
        return int(res.rowcount)

    # -- till order sessions, tabs, transactions (seed 002) -------------------------------------------

    async def create_order_session(
        self, user_id: str, store_id: int, items: list[dict[str, Any]], till_id: str | None, now: float
    ) -> OrderSession:
        stmt = (
            sa.insert(_OS)
            .values(
                user_id=user_id,
                store_id=store_id,
                items=_json_items(items),
                status=str(OrderSessionStatus.ACTIVE),
                created_at=now,
                updated_at=now,
                till_id=till_id,
                revision=1,
            )
            .returning(*_OS.c)
        )
        for _ in range(5):
            try:
                async with self._connect(self.engine.begin()) as conn:
                    return _order_session((await conn.execute(stmt)).one())
            except IntegrityError as e:
                if "uq_order_sessions_open_user" not in str(e.orig):
                    if await self.get_restaurant(store_id) is None:
                        raise RestaurantNotFound(f"store {store_id} does not exist") from e
                    raise StorageError(f"order session of {user_id} refused: {first_line(e)}") from e
                # The partial unique index decided: the user has an open session (read it; if it was
                # completed or deleted meanwhile, try again).
                current = await self.get_open_order_session(user_id)
                if current is not None:
                    raise OpenSessionExists(current) from e
        raise StorageError(f"order session of {user_id}: the open session kept changing")

    async def get_order_session(self, session_id: int) -> OrderSession | None:
        async with self._connect(self.engine.connect()) as conn:
            row = (await conn.execute(sa.select(_OS).where(_OS.c.id == session_id))).first()
        return None if row is None else _order_session(row)

    async def get_open_order_session(self, user_id: str) -> OrderSession | None:
        async with self._connect(self.engine.connect()) as conn:
            row = (
                await conn.execute(
                    sa.select(_OS).where(_OS.c.user_id == user_id, _OS.c.status.in_(_OPEN_STATUSES))
                )
            ).first()
        return None if row is None else _order_session(row)

    async def list_order_sessions(
        self,
        store_id: int,
        *,
        status: OrderSessionStatus | None = None,
        user_id: str | None = None,
        limit: int = 200,
    ) -> list[OrderSession]:
        q = sa.select(_OS).where(_OS.c.store_id == store_id)
        if status is not None:
            q = q.where(_OS.c.status == str(status))
        if user_id is not None:
            q = q.where(_OS.c.user_id == user_id)
        async with self._connect(self.engine.connect()) as conn:
            rows = await conn.execute(q.order_by(_OS.c.id.desc()).limit(max(limit, 0)))
            return [_order_session(r) for r in rows]

    @staticmethod
    async def _lock_session(conn: AsyncConnection, session_id: int) -> OrderSession:
        row = (await conn.execute(sa.select(_OS).where(_OS.c.id == session_id).with_for_update())).first()
        if row is None:
            raise OrderSessionNotFound(f"order session {session_id}")
        return _order_session(row)

    @staticmethod
    async def _set_session(
        conn: AsyncConnection, o: OrderSession, values: dict[str, Any], now: float
    ) -> OrderSession:
        row = (
            await conn.execute(
                sa.update(_OS)
                .where(_OS.c.id == o.session_id)
                .values(revision=o.revision + 1, updated_at=now, **values)
                .returning(*_OS.c)
            )
        ).one()
        return _order_session(row)

    async def update_order_session(
        self, session_id: int, expected_revision: int, change: OrderSessionChange, now: float
    ) -> OrderSession:
        async with self._connect(self.engine.begin()) as conn:
            o = await self._lock_session(conn, session_id)
            if o.revision != expected_revision:
                raise RevisionMismatch(o)
            if o.status not in OPEN:
                raise InvalidTransition(f"order session {session_id} is {o.status}")
            values: dict[str, Any] = {}
            if change.status is not None:
                new_status = OrderSessionStatus(change.status)
                if new_status not in OPEN:
                    raise InvalidTransition(f"order session status {new_status} is not set by an update")
                values["status"] = str(new_status)
                if new_status == OrderSessionStatus.PENDING_LOGOUT and o.status != new_status:
                    values["logout_time"] = now
                elif new_status == OrderSessionStatus.ACTIVE:
                    values["logout_time"] = None
            if change.items is not None:
                values["items"] = _json_items(change.items)
            if change.till_id is not None:
                values["till_id"] = change.till_id
            return await self._set_session(conn, o, values, now)

    @staticmethod
    def _check_payable(o: OrderSession, expected_revision: int | None) -> None:
        if expected_revision is not None and o.revision != expected_revision:
            raise RevisionMismatch(o)
        if o.status != OrderSessionStatus.ACTIVE:
            raise InvalidTransition(f"order session {o.session_id} is {o.status}")
        if not o.items:
            raise InvalidTransition(f"order session {o.session_id} has no items")

    @staticmethod
    async def _make_ticket(conn: AsyncConnection, o: OrderSession, table_id: str, now: float) -> OrderRecord:
        """The session's kitchen ticket: a confirmed ``orders`` row numbered from the store's counter, with a
        kitchen_seq drawn under the store's kitchen lock (held to commit, see ``_lock_kitchen_seq``)."""
        await _lock_kitchen_seq(conn, {o.store_id})
        r = s.stores.c
        n = (
            await conn.execute(
                sa.update(s.stores)
                .where(r.store_id == o.store_id)
                .values(next_order_number=r.next_order_number + 1)
                .returning(r.next_order_number - 1)
            )
        ).scalar_one_or_none()
        if n is None:
            raise RestaurantNotFound(str(o.store_id))
        rec = till_lines.ticket(o, int(n), table_id, now)
        row = (
            await conn.execute(
                sa.insert(s.orders)
                .values(
                    order_id=rec.order_id,
                    order_number=rec.order_number,
                    restaurant_id=rec.restaurant_id,
                    table_id=rec.table_id,
                    group_id=rec.group_id,
                    status=str(rec.status),
                    items=rec.items,
                    total=rec.total,
                    special_instructions=rec.special_instructions,
                    placed_by=rec.placed_by,
                    created_at=rec.created_at,
                    confirmed_at=rec.confirmed_at,
                    kitchen_seq=sa.func.nextval("kitchen_seq_seq"),
                    kitchen_status=rec.kitchen_status,
                )
                .returning(*s.orders.c)
            )
        ).one()
        return _order(row)

    @staticmethod
    async def _insert_transaction(conn: AsyncConnection, values: dict[str, Any]) -> Transaction:
        lines = values["lines"]
        row = (
            await conn.execute(
                sa.insert(_TX).values(total=till_lines.lines_total(lines), **values).returning(*_TX.c)
            )
        ).one()
        return _transaction(row)

    async def complete_order_session(
        self, session_id: int, expected_revision: int | None, payment_method: str, now: float
    ) -> tuple[OrderSession, Transaction, OrderRecord]:
        async with self._connect(self.engine.begin()) as conn:
            o = await self._lock_session(conn, session_id)
            if o.status == OrderSessionStatus.COMPLETED:
                paid = (await conn.execute(sa.select(_TX).where(_TX.c.order_session_id == session_id))).one()
                ticket = (
                    await conn.execute(sa.select(s.orders).where(s.orders.c.order_id == o.order_id))
                ).one()
                return o, _transaction(paid), _order(ticket)
            self._check_payable(o, expected_revision)
            rec = await self._make_ticket(conn, o, "", now)
            tx = await self._insert_transaction(
                conn,
                {
                    "store_id": o.store_id,
                    "order_session_id": o.session_id,
                    "lines": till_lines.session_lines(o),
                    "payment_method": payment_method,
                    "created_at": now,
                },
            )
            done = await self._set_session(
                conn,
                o,
                {
                    "status": str(OrderSessionStatus.COMPLETED),
                    "transaction_id": tx.transaction_id,
                    "order_id": rec.order_id,
                },
                now,
            )
        return done, tx, rec

    async def assign_order_session_to_tab(
        self, session_id: int, tab_id: int, expected_revision: int | None, now: float
    ) -> tuple[OrderSession, OrderRecord]:
        async with self._connect(self.engine.begin()) as conn:
            o = await self._lock_session(conn, session_id)
            if o.status == OrderSessionStatus.ASSIGNED_TO_TAB:
                if o.tab_id != tab_id:
                    raise InvalidTransition(f"order session {session_id} is on tab {o.tab_id}")
                ticket = (
                    await conn.execute(sa.select(s.orders).where(s.orders.c.order_id == o.order_id))
                ).one()
                return o, _order(ticket)
            # Shared lock: assigns to one tab go on together, a close of the tab waits for them (and they
            # for it), so a session is either on the closing bill or refused with TabClosed.
            tab = (
                await conn.execute(sa.select(_TABS).where(_TABS.c.id == tab_id).with_for_update(read=True))
            ).first()
            if tab is None or tab.store_id != o.store_id:
                raise TabNotFound(f"tab {tab_id}")
            if tab.status != TabStatus.OPEN:
                raise TabClosed((await self._tab_views(conn, [tab]))[0])
            self._check_payable(o, expected_revision)
            rec = await self._make_ticket(conn, o, tab.table_id or "", now)
            done = await self._set_session(
                conn,
                o,
                {
                    "status": str(OrderSessionStatus.ASSIGNED_TO_TAB),
                    "tab_id": tab_id,
                    "order_id": rec.order_id,
                },
                now,
            )
        return done, rec

    async def delete_order_session(self, session_id: int) -> bool:
        async with self._connect(self.engine.begin()) as conn:
            try:
                o = await self._lock_session(conn, session_id)
            except OrderSessionNotFound:
                return False
            if o.status not in OPEN:
                raise InvalidTransition(f"order session {session_id} is {o.status}")
            await conn.execute(sa.delete(_OS).where(_OS.c.id == session_id))
        return True

    async def park_stale_order_sessions(self, cutoff: float, now: float) -> list[OrderSession]:
        # One conditional UPDATE: on several nodes at once each session is parked (and returned) once.
        stmt = (
            sa.update(_OS)
            .where(_OS.c.status == str(OrderSessionStatus.ACTIVE), _OS.c.updated_at < cutoff)
            .values(
                status=str(OrderSessionStatus.PENDING_LOGOUT),
                logout_time=now,
                updated_at=now,
                revision=_OS.c.revision + 1,
            )
            .returning(*_OS.c)
        )
        async with self._connect(self.engine.begin()) as conn:
            rows = (await conn.execute(stmt)).all()
        return sorted((_order_session(r) for r in rows), key=lambda o: o.session_id)

    @staticmethod
    async def _tab_views(conn: AsyncConnection, rows: Sequence[Any]) -> list[Tab]:
        """Tabs with their lines and transaction ids (three queries however many tabs)."""
        if not rows:
            return []
        ids = [r.id for r in rows]
        groups = [r.group_id for r in rows if r.group_id is not None]
        by_group: dict[str, list[dict[str, Any]]] = {}
        if groups:
            o = s.orders.c
            found = await conn.execute(
                sa.select(o.order_id, o.group_id, o["items"])
                .where(o.group_id.in_(groups), o.status == str(OrderStatus.CONFIRMED))
                .order_by(o.kitchen_seq, o.created_at, o.order_id)
            )
            for order_id, group_id, items in found:
                by_group.setdefault(group_id, []).extend(till_lines.order_line(order_id, i) for i in items)
        by_tab: dict[int, list[dict[str, Any]]] = {}
        found = await conn.execute(
            sa.select(_OS.c.id, _OS.c.tab_id, _OS.c["items"])
            .where(_OS.c.tab_id.in_(ids), _OS.c.status == str(OrderSessionStatus.ASSIGNED_TO_TAB))
            .order_by(_OS.c.id)
        )
        for sid, tid, items in found:
            by_tab.setdefault(tid, []).extend(till_lines.session_line(sid, i) for i in items)
        txs: dict[int, int] = {
            int(r[0]): int(r[1])
            for r in await conn.execute(sa.select(_TX.c.tab_id, _TX.c.id).where(_TX.c.tab_id.in_(ids)))
        }
        return [
            Tab(
                tab_id=r.id,
                store_id=r.store_id,
                name=r.name,
                status=TabStatus(r.status),
                created_at=r.created_at,
                table_id=r.table_id,
                group_id=r.group_id,
                closed_at=r.closed_at,
                transaction_id=txs.get(r.id),
                lines=by_group.get(r.group_id, []) + by_tab.get(r.id, [])
                if r.group_id
                else by_tab.get(r.id, []),
            )
            for r in rows
        ]

    async def _close_tab_into_transaction(
        self, conn: AsyncConnection, tab: Any, payment_method: str, now: float
    ) -> Transaction:
        """Close a locked open tab into a transaction of its lines (in the caller's transaction)."""
        view = (await self._tab_views(conn, [tab]))[0]
        tx = await self._insert_transaction(
            conn,
            {
                "store_id": tab.store_id,
                "tab_id": tab.id,
                "lines": view.lines,
                "payment_method": payment_method,
                "created_at": now,
            },
        )
        await conn.execute(
            sa.update(_TABS).where(_TABS.c.id == tab.id).values(status=str(TabStatus.CLOSED), closed_at=now)
        )
        return tx

    async def create_tab(self, store_id: int, name: str, now: float) -> Tab:
        try:
            async with self._connect(self.engine.begin()) as conn:
                row = (
                    await conn.execute(
                        sa.insert(_TABS)
                        .values(store_id=store_id, name=name, status=str(TabStatus.OPEN), created_at=now)
                        .returning(*_TABS.c)
                    )
                ).one()
                return (await self._tab_views(conn, [row]))[0]
        except IntegrityError as e:
            raise RestaurantNotFound(f"store {store_id} does not exist") from e

    async def _read_tabs(self, q: sa.Select[Any]) -> list[Tab]:
        async with self._connect(self.engine.connect()) as conn:
            rows = (await conn.execute(q)).all()
            return await self._tab_views(conn, rows)

    async def get_tab(self, tab_id: int) -> Tab | None:
        found = await self._read_tabs(sa.select(_TABS).where(_TABS.c.id == tab_id))
        return found[0] if found else None

    async def get_group_tab(self, group_id: str) -> Tab | None:
        found = await self._read_tabs(sa.select(_TABS).where(_TABS.c.group_id == group_id))
        return found[0] if found else None

    async def list_tabs(
        self, store_id: int, *, status: TabStatus | None = None, limit: int = 200
    ) -> list[Tab]:
        q = sa.select(_TABS).where(_TABS.c.store_id == store_id)
        if status is not None:
            q = q.where(_TABS.c.status == str(status))
        return await self._read_tabs(q.order_by(_TABS.c.id.desc()).limit(max(limit, 0)))

    async def close_tab(self, tab_id: int, payment_method: str, now: float) -> tuple[Tab, Transaction]:
        async with self._connect(self.engine.begin()) as conn:
            tab = (await conn.execute(sa.select(_TABS).where(_TABS.c.id == tab_id).with_for_update())).first()
            if tab is None:
                raise TabNotFound(f"tab {tab_id}")
            if tab.status == TabStatus.OPEN:
                tx = await self._close_tab_into_transaction(conn, tab, payment_method, now)
                tab = (await conn.execute(sa.select(_TABS).where(_TABS.c.id == tab_id))).one()
                return (await self._tab_views(conn, [tab]))[0], tx
            view = (await self._tab_views(conn, [tab]))[0]
            row = (await conn.execute(sa.select(_TX).where(_TX.c.tab_id == tab_id))).first()
            if row is None:  # closed by a reset without checkout: there is no transaction to return
                raise TabClosed(view)
            return view, _transaction(row)

    async def get_transaction(self, transaction_id: int) -> Transaction | None:
        async with self._connect(self.engine.connect()) as conn:
            row = (await conn.execute(sa.select(_TX).where(_TX.c.id == transaction_id))).first()
        return None if row is None else _transaction(row)

    async def list_transactions(self, store_id: int, *, limit: int = 200) -> list[Transaction]:
        async with self._connect(self.engine.connect()) as conn:
            rows = await conn.execute(
                sa.select(_TX)
                .where(_TX.c.store_id == store_id)
                .order_by(_TX.c.id.desc())
                .limit(max(limit, 0))
            )
            return [_transaction(r) for r in rows]

    async def cleanup(self, now: float) -> CleanupReport:
        return CleanupReport(
            expired_tokens=await self.delete_expired_tokens(now),
            expired_staff_sessions=await self.delete_expired_staff_sessions(now),
            expired_user_sessions=await self.delete_expired_user_sessions(now),
            expired_guest_sessions=await self.delete_expired_guest_sessions(now),
        )

    # -- test support ----------------------------------------------------------------------------

    async def truncate_all(self) -> None:
        """Empty every table and restart kitchen_seq (tests only: much faster than a fresh database)."""
        names = ", ".join(t.name for t in s.ALL_TABLES)
        async with self._connect(self.engine.begin()) as conn:
            await conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
            await conn.execute(sa.text("ALTER SEQUENCE kitchen_seq_seq RESTART"))
