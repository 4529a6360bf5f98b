"""Twenty phones on three nodes press "Place order" together, a hundred times: one order per round."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

from tests.cluster.harness import Cluster, Phone, sim_log
from tests.exactly_once import assert_submitted_once

MEMBERS = 20
ROUNDS = 100
LOSERS = {"order_in_progress", "cart_locked", "empty_cart"}


async def test_twenty_members_on_three_nodes_race_place_order_one_order_per_round(cluster: Cluster) -> None:
    nodes = ("a", "b", "c")
    phones: list[Phone] = []
    for i in range(MEMBERS):
        node = nodes[i % 3]
        phone = Phone(cluster, cluster.join("T001", node), node)
        await phone.connect(node)
        phones.append(phone)
    group = phones[0].group_id
    assert {p.group_id for p in phones} == {group}
    assert cluster.owner(group) == "a"

    started = time.monotonic()
    placed_ids: list[str] = []
    for r in range(ROUNDS):
        adder = phones[r % MEMBERS]
        added = await adder.request({"type": "add_item", "menu_item_id": "miso", "qty": 1, "note": f"r{r}"})
        assert added["type"] == "ack", (r, added)
        answers = await asyncio.gather(*(p.request({"type": "place_order"}) for p in phones))
        winners = [a for a in answers if a["type"] == "ack"]
        assert len(winners) == 1, (r, answers)
        assert all(a["type"] == "error" and a["code"] in LOSERS for a in answers if a["type"] != "ack"), (r, answers)
        order_id = str(winners[0]["order_id"])
        placed_ids.append(order_id)
        for p in phones:
            assert p.ws is not None
            await p.ws.wait_type("order_confirmed", timeout=10, order_id=order_id)
    elapsed = time.monotonic() - started
    print(f"\n{ROUNDS} rounds x {MEMBERS} members: {elapsed:.1f} s ({elapsed / ROUNDS * 1000:.0f} ms per round)")

    # Numbers strictly increase with no gap: the counter is taken inside the intent's commit.
    assert placed_ids == [f"ORD-1-{n}" for n in range(1, ROUNDS + 1)]
    # Every member saw the same confirmations, in the same order, each once.
    for p in phones:
        assert p.ws is not None and p.reconnects == 0
        assert [m["order_id"] for m in p.ws.of_type("order_confirmed")] == placed_ids
    # The POS: one ticket per round, each by exactly one submit.
    with urllib.request.urlopen(f"{cluster.pos_url}/tickets", timeout=10) as resp:
        tickets = json.loads(resp.read())
    assert sorted(tk["order_id"] for tk in tickets) == sorted(placed_ids)
    log = sim_log(cluster.pos_url)
    assert sorted({r["key"] for r in log["requests"]}) == sorted(placed_ids)
    for order_id in placed_ids:
        assert_submitted_once(log, order_id)
    assert sum(1 for r in log["requests"] if r["kind"] == "submit") == ROUNDS
    for p in phones:
        await p.close()
