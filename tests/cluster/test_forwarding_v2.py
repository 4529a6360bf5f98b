"""v2 deltas across nodes (issue 14): members on a node that does not own the group get the form of their
own subprotocol, v1 and v2 side by side on one node, from one forwarded item per broadcast."""

from __future__ import annotations

from typing import Any

from tests.client import WsClient
from tests.cluster.harness import Cluster, Phone
from tests.integration.test_v2_deltas import V2Cart


async def test_v1_and_v2_members_on_a_non_owner_node_each_get_their_form(cluster: Cluster) -> None:
    owner_phone = Phone(cluster, cluster.join("T005", "a"), "a")
    await owner_phone.connect("a")
    group = owner_phone.group_id
    assert cluster.owner(group) == "a"
    clients: dict[str, WsClient] = {}
    for key, node, msgpack_codec, v2 in (("b-v2", "b", False, True), ("b-v1", "b", False, False),
                                         ("c-v2-msgpack", "c", True, True)):
        joined = cluster.join("T005", node)
        ws = await WsClient.connect(cluster.nodes[node].live.ws, str(joined["token"]), msgpack_codec=msgpack_codec,
                                    v2=v2)
        await ws.wait_type("welcome", timeout=5)
        clients[key] = ws
    mirrors = {key: V2Cart(ws) for key, ws in clients.items() if "v2" in key}

    async def follow(revision: int) -> None:
        for key, mirror in mirrors.items():
            await clients[key].wait_for(lambda m: m.get("type") == "cart_delta" and m["revision"] >= revision)
            await mirror.sync()

    for i, item in enumerate(["gyoza", "miso", "edamame"]):
        last: dict[str, Any] = await owner_phone.request({"type": "add_item", "menu_item_id": item, "qty": i + 1})
        assert last["type"] == "ack"
        await follow(last["revision"])
    edit = await clients["b-v2"].request({"type": "update_item", "line_id": "L2", "qty": 7})
    assert edit["type"] == "ack"
    final = edit["revision"]
    for key, ws in clients.items():
        if "v2" in key:
            await ws.wait_for(lambda m: m.get("type") == "cart_delta" and m["revision"] >= final, timeout=5)
        else:
            await ws.wait_for(lambda m: m.get("type") == "cart_updated" and m["cart"]["revision"] >= final, timeout=5)
    truth = (await clients["b-v1"].request({"type": "get_snapshot"}))["cart"]
    assert [(x["menu_item_id"], x["qty"]) for x in truth["items"]] == [("gyoza", 1), ("miso", 7), ("edamame", 3)]
    for key, mirror in mirrors.items():
        assert await mirror.sync() == truth, key
        assert clients[key].of_type("cart_updated") == []
        # The first delta after joining a table with members is a gap (docs/protocol.md); the rest apply.
        assert mirror.gaps <= 1 and mirror.applied >= 3, (key, mirror.gaps, mirror.applied)
    assert clients["b-v1"].of_type("cart_delta") == []
    assert clients["b-v1"].of_type("cart_updated")[-1]["cart"] == truth
