"""v2 subprotocols end to end (issue 14): cart changes reach ``tableside.v2.*`` sockets as ``cart_delta``
and v1 sockets as the whole ``cart_updated``, at one table; a v2 client that misses a delta recovers with
``get_snapshot``. ``V2Cart`` is the client side of docs/protocol.md's v2 rules (guest.js does the same)."""

from __future__ import annotations

import random
from typing import Any

from tableside.protocol.delta import apply_delta
from tests.client import WsClient
from tests.integration.conftest import Harness

MENU = ["edamame", "gyoza", "miso", "green-tea", "ramen-shoyu", "mochi"]


class V2Cart:
    """Follows a v2 socket's messages in order: the welcome's cart, then deltas whose ``base_revision`` is
    the cart's revision; a delta from further back is a gap, answered by ``get_snapshot``. ``drop`` lists
    deltas (by their revision) the test pretends were lost."""

    def __init__(self, client: WsClient) -> None:
        self.client = client
        self.cart: dict[str, Any] | None = None
        self.index = 0
        self.gaps = 0
        self.applied = 0
        self.drop: set[int] = set()

    async def sync(self) -> dict[str, Any]:
        while self.index < len(self.client.messages):
            msg = self.client.messages[self.index]
            self.index += 1
            kind = msg.get("type")
            if kind == "welcome" or kind == "cart_updated":
                self.cart = msg["cart"]
            elif kind == "cart_delta":
                assert self.cart is not None
                if msg["revision"] in self.drop:
                    self.drop.discard(msg["revision"])
                    continue
                if msg["base_revision"] == self.cart["revision"]:
                    self.cart = apply_delta(self.cart, msg["changes"])
                    assert self.cart["revision"] == msg["revision"]
                    self.applied += 1
                elif msg["revision"] <= self.cart["revision"]:
                    continue  # older than the cart we hold (it came before a snapshot's answer)
                else:
                    self.gaps += 1
                    snap = await self.client.request({"type": "get_snapshot"})
                    assert snap["type"] == "snapshot"
                    self.cart = snap["cart"]
        assert self.cart is not None
        return self.cart


async def v2_member(harness: Harness, *, msgpack_codec: bool = False) -> tuple[dict[str, Any], WsClient]:
    joined = await harness.join("T001")
    client = await WsClient.connect(harness.ws_base, joined["token"], msgpack_codec=msgpack_codec, v2=True)
    await client.wait_type("welcome")
    return joined, client


def selected(client: WsClient) -> str | None:
    return client.conn.selected_subprotocol


async def edit(rng: random.Random, client: WsClient, cart: dict[str, Any]) -> dict[str, Any]:
    """One random cart edit (add, change the quantity, remove) as ``client``; returns its ack."""
    lines = [line for line in cart["items"] if line["state"] == "pending"]
    choice = rng.random()
    if not lines or choice < 0.45:
        msg: dict[str, Any] = {"type": "add_item", "menu_item_id": rng.choice(MENU), "qty": rng.randint(1, 5)}
        if rng.random() < 0.3:
            msg["note"] = rng.choice(["no onion", "extra spicy"])
    elif choice < 0.8:
        msg = {"type": "update_item", "line_id": rng.choice(lines)["line_id"], "qty": rng.randint(1, 9)}
    else:
        msg = {"type": "remove_item", "line_id": rng.choice(lines)["line_id"]}
    answer = await client.request(msg)
    assert answer["type"] == "ack", answer
    return answer


async def converge(harness: Harness, v1: WsClient, v2: WsClient, mirror: V2Cart, seed: int, edits: int) -> None:
    rng = random.Random(seed)
    last = 0
    for i in range(edits):
        who = v1 if i % 2 else v2
        view = await mirror.sync() if who is v2 else (await who.request({"type": "get_snapshot"}))["cart"]
        last = (await edit(rng, who, view))["revision"]
    await v1.wait_for(lambda m: m["type"] == "cart_updated" and m["cart"]["revision"] >= last)
    await v2.wait_for(lambda m: m["type"] == "cart_delta" and m["revision"] >= last)
    mirrored = await mirror.sync()
    v1_cart = [m for m in v1.messages if m["type"] == "cart_updated"][-1]["cart"]
    for client in (v1, v2):
        snap = await client.request({"type": "get_snapshot"})
        assert snap["cart"] == mirrored == v1_cart, (snap["cart"], mirrored, v1_cart)
    # Edits reach v2 only as deltas and v1 only as whole carts.
    assert v2.of_type("cart_updated") == [] and v1.of_type("cart_delta") == []
    assert len(v2.of_type("cart_delta")) >= edits and len(v1.of_type("cart_updated")) >= edits


async def test_v1_and_v2_clients_at_one_table_converge_after_random_edits(harness: Harness) -> None:
    _, v1 = await harness.member("T001")
    _, v2 = await v2_member(harness)
    assert selected(v1) == "tableside.v1.json" and selected(v2) == "tableside.v2.json"
    mirror = V2Cart(v2)
    await converge(harness, v1, v2, mirror, seed=14, edits=30)
    # No gap: joining a table where others were connected does not move the revision (docs/protocol.md),
    # so the welcome's cart is the base of the first delta.
    assert mirror.gaps == 0 and mirror.applied >= 30


async def test_a_v2_member_joining_an_occupied_table_applies_the_next_delta(harness: Harness) -> None:
    _, v1 = await harness.member("T001")
    await v1.request({"type": "add_item", "menu_item_id": "gyoza", "qty": 2})
    _, v2 = await v2_member(harness)
    welcome = v2.of_type("welcome")[0]
    answer = await v1.request({"type": "add_item", "menu_item_id": "miso", "qty": 1})
    delta = await v2.wait_for(lambda m: m["type"] == "cart_delta" and m["revision"] == answer["revision"])
    assert delta["base_revision"] == welcome["cart"]["revision"]


async def test_msgpack_v2_and_json_v1_converge(harness: Harness) -> None:
    _, v2 = await v2_member(harness, msgpack_codec=True)
    _, v1 = await harness.member("T001", msgpack_codec=False)
    assert selected(v2) == "tableside.v2.msgpack"
    mirror = V2Cart(v2)
    await converge(harness, v1, v2, mirror, seed=7, edits=24)


async def test_a_lost_delta_is_a_gap_recovered_by_a_snapshot(harness: Harness) -> None:
    _, v2 = await v2_member(harness)
    _, v1 = await harness.member("T001", msgpack_codec=True)
    mirror = V2Cart(v2)
    cart = await mirror.sync()
    first = await v1.request({"type": "add_item", "menu_item_id": "gyoza", "qty": 2})
    mirror.drop.add(first["revision"])  # this delta never reaches the client's cart
    await v2.wait_for(lambda m: m["type"] == "cart_delta" and m["revision"] == first["revision"])
    cart = await mirror.sync()
    assert cart["items"] == [] and mirror.gaps == 0  # it does not know yet
    second = await v1.request({"type": "add_item", "menu_item_id": "miso", "qty": 1})
    delta = await v2.wait_for(lambda m: m["type"] == "cart_delta" and m["revision"] == second["revision"])
    assert delta["base_revision"] == first["revision"] != cart["revision"]
    cart = await mirror.sync()
    assert mirror.gaps == 1
    assert [line["menu_item_id"] for line in cart["items"]] == ["gyoza", "miso"]
    assert cart == (await v1.request({"type": "get_snapshot"}))["cart"]
    # After the snapshot, deltas apply again.
    applied = mirror.applied
    third = await v1.request({"type": "update_item", "line_id": cart["items"][0]["line_id"], "qty": 5})
    await v2.wait_for(lambda m: m["type"] == "cart_delta" and m["revision"] == third["revision"])
    cart = await mirror.sync()
    assert mirror.applied == applied + 1 and cart["items"][0]["qty"] == 5 and mirror.gaps == 1


async def test_a_delta_is_small_and_messages_other_than_cart_changes_are_the_same(harness: Harness) -> None:
    _, v2 = await v2_member(harness)
    _, v1 = await harness.member("T001")
    for i in range(8):
        await v1.request({"type": "add_item", "menu_item_id": MENU[i % len(MENU)], "qty": 1})
    answer = await v1.request({"type": "update_item", "line_id": "L3", "qty": 4})
    delta = await v2.wait_for(lambda m: m["type"] == "cart_delta" and m["revision"] == answer["revision"])
    assert delta["changes"]["added"] == [] and delta["changes"]["removed"] == []
    assert [line["line_id"] for line in delta["changes"]["changed"]] == ["L3"]
    assert delta["changes"]["totals"]["revision"] == answer["revision"]
    assert "items" not in delta["changes"]["totals"]
    # welcome, snapshot, member_joined: the same shapes on both.
    assert set(v2.of_type("welcome")[0]) == set(v1.of_type("welcome")[0])
    s1, s2 = await v1.request({"type": "get_snapshot"}), await v2.request({"type": "get_snapshot"})
    assert s1["cart"] == s2["cart"]
