"""kill -9 with the op log: random cart edits against a real server process (snapshots every 7 changes, so
both snapshots and op records are on disk), kill -9 - after every answer, or with edits still in flight -,
restart, and the cart is exactly the acknowledged history.

The model: every edit has a request id; after the restart every id is sent again. An edit acknowledged before
the kill must get the very same ack (its remembered answer is in the same record as the edit itself); one
that was in flight gets either its old ack (it had committed) or a new one (it had not). The cart must then be
the edits replayed in the order of their ack revisions (one revision per change), from an empty cart."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from tableside.storage.urls import to_plain_url
from tests.client import WsClient
from tests.integration.test_crash import Cluster
from tests.pg import create_database_sync, drop_database_sync
from tests.procs import Proc

ITEMS = ["miso", "gyoza", "edamame", "karaage"]


@pytest.fixture
def oplog_db() -> Iterator[str]:
    url = create_database_sync("ts_oplog")
    yield url
    drop_database_sync(url)


@pytest.fixture
def cluster(oplog_db: str, pos_sim: Proc) -> Iterator[Cluster]:
    c = Cluster(oplog_db, pos_sim)
    c.start(TABLESIDE_SNAPSHOT_EVERY="7")
    yield c
    c.stop()


async def records_after_snapshots(db: str) -> int:
    conn = await asyncpg.connect(to_plain_url(db))
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM group_ops o JOIN group_state g USING (group_id)"
                " WHERE o.revision > g.snapshot_revision"
            )
        )
    finally:
        await conn.close()


def replay(edits: dict[str, dict[str, Any]], answers: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The cart the acknowledged edits make, applied in revision order (line ids ``L1``, ``L2``, ...)."""
    lines: dict[str, dict[str, Any]] = {}
    next_line = 1
    acked = sorted((a["revision"], rid) for rid, a in answers.items() if a["type"] == "ack")
    assert len({r for r, _ in acked}) == len(acked), "two changes with one revision"
    for _, rid in acked:
        e = edits[rid]
        if e["type"] == "add_item":
            lines[f"L{next_line}"] = {"menu_item_id": e["menu_item_id"], "qty": e["qty"], "note": e.get("note", "")}
            next_line += 1
        elif e["type"] == "update_item" and e["qty"] > 0:
            lines[e["line_id"]]["qty"] = e["qty"]
        else:
            del lines[e["line_id"]]
    return [{"line_id": k, **v} for k, v in lines.items()]


def cart_lines(cart: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: i[k] for k in ("line_id", "menu_item_id", "qty", "note")} for i in cart["items"]]


async def test_kill9_with_random_edits_keeps_exactly_the_acknowledged_history(cluster: Cluster) -> None:
    rng = random.Random(14)
    joined = [cluster.join() for _ in range(3)]
    edits: dict[str, dict[str, Any]] = {}  # request id -> the edit
    answers: dict[str, dict[str, Any]] = {}  # request id -> its answer (ack or error), as last seen
    member_of: dict[str, int] = {}
    logged = 0  # op records the restarts had to replay
    for round_ in range(4):
        phones = [await cluster.member(j["token"]) for j in joined]
        cart = phones[0].of_type("welcome")[0]["cart"]
        if round_:
            # Every edit sent before this restart, again: acked ones get their answer back unchanged.
            for rid, edit in edits.items():
                await phones[member_of[rid]].send({**edit, "id": rid})
            for rid in edits:
                again = await phones[member_of[rid]].wait_for(lambda m, r=rid: m.get("id") == r, timeout=15)
                before = answers.get(rid)
                if before is not None and before["type"] == "ack":
                    assert again == before, (rid, before, again)  # acknowledged: durable, remembered
                if before is None or before["type"] == "ack" or again["type"] == "ack":
                    answers[rid] = again
            cart = (await phones[0].request({"type": "get_snapshot"}))["cart"]
            assert cart_lines(cart) == replay(edits, answers)
        in_flight = round_ % 2 == 1
        pending: list[tuple[WsClient, str]] = []
        for step in range(30):
            n = rng.randrange(3)
            phone = phones[n]
            rid = f"e{round_}-{step}"
            broadcasts = phone.of_type("cart_updated")  # the newest cart this phone heard of
            line_ids = [i["line_id"] for i in (broadcasts[-1]["cart"] if broadcasts else cart)["items"]]
            roll = rng.random()
            if roll < 0.5 or not line_ids:
                edit: dict[str, Any] = {"type": "add_item", "menu_item_id": rng.choice(ITEMS), "qty": rng.randint(1, 4)}
                if rng.random() < 0.3:
                    edit["note"] = rng.choice(["no onions", "extra hot 🌶", "née"])
            elif roll < 0.8:
                edit = {"type": "update_item", "line_id": rng.choice(line_ids), "qty": rng.randint(0, 6)}
            else:
                edit = {"type": "remove_item", "line_id": rng.choice(line_ids)}
            edits[rid], member_of[rid] = edit, n
            await phone.send({**edit, "id": rid})
            pending.append((phone, rid))
            if in_flight:
                await asyncio.sleep(rng.random() * 0.004)  # spread over several batches (op records)
            if not in_flight and rng.random() < 0.6:
                # wait for everything sent so far: several edits at once make batches, then one op record
                for p, r in pending:
                    answers[r] = await p.wait_for(lambda m, r=r: m.get("id") == r, timeout=15)
                pending = []
        if in_flight:
            # Kill with edits on their way: some answered, some committed but unanswered, some never run.
            middle_phone, middle = pending[len(pending) // 2]
            await middle_phone.wait_for(lambda m, r=middle: m.get("id") == r, timeout=15)
            for p, r in pending:
                got = [m for m in p.messages if m.get("id") == r]
                if got:
                    answers[r] = got[0]
        else:
            for p, r in pending:
                answers[r] = await p.wait_for(lambda m, r=r: m.get("id") == r, timeout=15)
        cluster.kill9()
        logged += await records_after_snapshots(cluster.db)
        for p in phones:
            await p.close()
        cluster.start(TABLESIDE_SNAPSHOT_EVERY="7")
    # A clean stop (snapshots written on deactivation), a restart: the same cart again.
    phones = [await cluster.member(j["token"]) for j in joined]
    for rid, edit in edits.items():
        await phones[member_of[rid]].send({**edit, "id": rid})
    for rid in edits:
        again = await phones[member_of[rid]].wait_for(lambda m, r=rid: m.get("id") == r, timeout=15)
        before = answers.get(rid)
        if before is not None and before["type"] == "ack":
            assert again == before, (rid, before, again)
        if before is None or before["type"] == "ack" or again["type"] == "ack":
            answers[rid] = again
    expected = replay(edits, answers)
    assert cart_lines((await phones[0].request({"type": "get_snapshot"}))["cart"]) == expected
    assert sum(1 for a in answers.values() if a["type"] == "ack") > 60  # the history was not trivial
    assert logged > 0  # and the restarts replayed op records, not only snapshots
    for p in phones:
        await p.close()
    cluster.stop()
    cluster.start(TABLESIDE_SNAPSHOT_EVERY="7")
    phone = await cluster.member(joined[0]["token"])
    assert cart_lines(phone.of_type("welcome")[0]["cart"]) == expected
    await phone.close()
    await asyncio.sleep(0)
