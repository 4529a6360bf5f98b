"""SIGTERM to the owner: it flushes, releases its leases and closes its sockets (and the ones it serves on
other nodes) with the relocation code; members move to another node with no error beyond one reconnect."""

from __future__ import annotations

import asyncio
import signal

from tests.client import eventually, t
from tests.cluster.harness import CLOSE_RELOCATED, Cluster, Phone


async def test_sigterm_moves_the_group_with_nothing_but_a_reconnect(cluster: Cluster) -> None:
    phones = []
    for name in ("a", "b", "c", "b"):
        phone = Phone(cluster, cluster.join("T005", name), name)
        await phone.connect(name)
        phones.append(phone)
    group = phones[0].group_id
    assert cluster.owner(group) == "a"
    acked = []
    for i, phone in enumerate(phones):
        answer = await phone.request({"type": "add_item", "menu_item_id": "miso", "qty": 1, "note": f"n{i}"})
        assert answer["type"] == "ack"
        acked.append(f"n{i}")
    node_a = cluster.nodes["a"].live
    node_a.proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(node_a.proc.wait, t(15)) == 0
    for phone in phones:
        assert phone.ws is not None
        await eventually(lambda p=phone: p.ws is not None and p.ws.closed.is_set(), 5, "socket closed")
    assert {p.ws.close_code for p in phones[1:] if p.ws is not None} == {CLOSE_RELOCATED}
    assert cluster.owner(group) is None  # released, not left to expire
    # Everyone reconnects (to b or c) and goes on; the new owner has every acknowledged op.
    for phone in phones:
        await phone.ensure()
    answer = await phones[1].request({"type": "add_item", "menu_item_id": "gyoza", "qty": 1, "note": "after"})
    assert answer["type"] == "ack"
    assert cluster.owner(group) in ("b", "c")
    snapshot = await phones[3].request({"type": "get_snapshot"})
    notes = sorted(i["note"] for i in snapshot["cart"]["items"])
    assert notes == sorted([*acked, "after"])
    for phone in phones:
        assert phone.ws is not None
        assert not phone.ws.of_type("error"), phone.ws.of_type("error")  # nothing but a reconnect
