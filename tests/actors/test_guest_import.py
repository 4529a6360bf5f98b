"""``ImportLines``: a guest cart brought into the table group's cart (issue 11's bridge): one commit and one
``cart_updated`` for every phone, the member's lines priced from the menu, skipped lines reported in the
member's next ``welcome``, and the same import key applied once even if asked again (a retry after a crash)."""

from __future__ import annotations

from typing import Any

from tableside.actors.messages import Connect, GetCart, ImportedLine, ImportLines
from tests.actors import test_table_actor as base
from tests.actors.test_table_actor import FakeSink, connect
from tests.actors.test_table_stops_and_limits import dummy

world = base.world  # the same fixture


async def test_a_guest_cart_arrives_in_one_update_and_the_welcome_says_what_was_skipped(world: Any) -> None:
    directory = world.make(dummy(world))
    sitting, newcomer = await world.join(), await world.join()
    ref, phone = await connect(directory, sitting)
    await world.menu.set_availability("gyoza", False)
    before = len(phone.of_type("cart_updated"))
    commits = world.committer.writes
    answer = await ref.ask(
        ImportLines(
            newcomer.member_id,
            (ImportedLine("miso", 2, "no onion"), ImportedLine("gyoza", 1), ImportedLine("nope", 1), ImportedLine("edamame", 1)),
            "guest:abc:1",
        )
    )
    assert answer == {
        "lines": 2,
        "skipped": [
            {"menu_item_id": "gyoza", "name": "Pork Gyoza (6)", "reason": "item_unavailable"},
            {"menu_item_id": "nope", "name": "", "reason": "unknown_item"},
        ],
        "duplicate": False,
    }
    assert world.committer.writes == commits + 1  # one committed operation
    updates = phone.of_type("cart_updated")[before:]
    assert len(updates) == 1  # one broadcast for the whole guest cart
    items = updates[0]["cart"]["items"]
    assert [(i["menu_item_id"], i["qty"], i["note"], i["added_by"], i["unit_price"]) for i in items] == [
        ("miso", 2, "no onion", newcomer.member_id, 350),
        ("edamame", 1, "", newcomer.member_id, 450),
    ]
    # The newcomer connects: the welcome says what happened to the guest cart, once.
    sink = FakeSink()
    await ref.ask(Connect(newcomer.member_id, sink))
    welcome = sink.of_type("welcome")[0]
    assert welcome["imported"]["lines"] == 2 and [s["reason"] for s in welcome["imported"]["skipped"]] == [
        "item_unavailable",
        "unknown_item",
    ]
    again = FakeSink()
    await ref.ask(Connect(newcomer.member_id, again))
    assert "imported" not in again.of_type("welcome")[0]
    await directory.stop_all()


async def test_the_same_import_twice_is_applied_once_even_across_a_restart(world: Any) -> None:
    directory = world.make(dummy(world))
    member = await world.join()
    ref, _ = await connect(directory, member)
    lines = (ImportedLine("miso", 1),)
    assert (await ref.ask(ImportLines(member.member_id, lines, "guest:k1")))["lines"] == 1
    again = await ref.ask(ImportLines(member.member_id, lines, "guest:k1"))
    assert again == {"lines": 0, "skipped": [], "duplicate": True}
    await directory.stop_all()
    restarted = world.make(dummy(world))
    ref2, _ = await connect(restarted, member)
    assert (await ref2.ask(ImportLines(member.member_id, lines, "guest:k1")))["duplicate"] is True
    assert len((await ref2.ask(GetCart()))["items"]) == 1
    await restarted.stop_all()


async def test_an_import_into_a_closed_sitting_imports_nothing(world: Any) -> None:
    directory = world.make(dummy(world))
    member = await world.join()
    ref, _ = await connect(directory, member)
    await ref.ask(ImportLines(member.member_id, (ImportedLine("miso", 1),), "guest:before"))
    await directory.stop_all()
    await world.store.checkout_table(member.table_id, world.clock.now())
    after = world.make(dummy(world))
    ref = after.ref_for(member.group_id, member.table_id, member.restaurant_id)
    answer = await ref.ask(ImportLines(member.member_id, (ImportedLine("edamame", 1),), "guest:after"))
    assert answer["error"] == "session_closed"
    assert [i["menu_item_id"] for i in (await ref.ask(GetCart()))["items"]] == ["miso"]
    await after.stop_all()
