"""The op log of ``GroupState`` (tableside/actors/cart.py): cart edits journal compact ops, ``take_ops`` hands
them out as one record per write, ``apply_ops`` replays them. Random histories are written the way
``TableActor`` writes them (op records for cart batches, full snapshots for everything else and every few
changes); the last snapshot with the records after it must always give the final state."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tableside.actors.cart import (
    ACKED_PER_MEMBER,
    GroupState,
    LineState,
    PendingOrder,
    ProcessingStatus,
    apply_ops,
    op_record,
    replay_snapshot,
)
from tableside.storage.interface import GroupSnapshot, replay_group

# One step: (kind, a, b). Cart edits are journaled; "member", "lock" and "settle" stand for the transitions the
# actor stores as full snapshots; "write_ops" / "write_snapshot" end a batch.
STEP = st.tuples(
    st.sampled_from(
        ["add", "add", "qty", "remove", "status", "ack", "ack_order", "member", "join", "forget", "lock",
         "settle", "write_ops", "write_ops", "write_snapshot"]
    ),
    st.integers(0, 10_000),
    st.text(alphabet="abcxyz~é漢0123456789", max_size=20),
)


class Writer:
    """What TableActor does with a GroupState, and what the store keeps: the last snapshot and the records."""

    def __init__(self) -> None:
        self.state = GroupState()
        self.stored_revision = 0
        self.snapshot: tuple[int, dict[str, Any]] | None = None
        self.records: list[dict[str, Any]] = []
        self.now = 1_700_000_000.0

    def change(self) -> int:
        self.now += 0.25
        return self.state.touch(self.now)

    def write_ops(self) -> None:
        if self.state.revision == self.stored_revision and not self.state._journal:
            return
        if self.state.revision == self.stored_revision:
            self.change()  # a write is a change (the actor's next write follows an edit)
        record = op_record(self.state, self.stored_revision)
        self.records.append(json.loads(json.dumps(record)))  # as stored: through JSON
        self.stored_revision = self.state.revision

    def write_snapshot(self) -> None:
        self.state.take_ops()
        self.snapshot = (self.state.revision, json.loads(json.dumps(self.state.to_snapshot())))
        self.records = []
        self.stored_revision = self.state.revision

    def step(self, kind: str, a: int, text: str) -> None:
        s = self.state
        line_ids = list(s.lines)
        if kind == "add" and s.pending is None:
            s.add_line(f"item{a % 7}", f"name {text}", 1 + a % 99, a % 5000, text, f"m{a % 3}")
            if s.status in (ProcessingStatus.CONFIRMED, ProcessingStatus.FAILED):
                s.set_status(ProcessingStatus.IDLE)
            self.change()
        elif kind == "qty" and line_ids and s.pending is None:
            s.set_qty(line_ids[a % len(line_ids)], 1 + a % 99)
            self.change()
        elif kind == "remove" and line_ids and s.pending is None:
            s.remove_line(line_ids[a % len(line_ids)])
            self.change()
        elif kind == "status" and s.pending is None:
            s.set_status(list(ProcessingStatus)[a % 4])
            self.change()
        elif kind in ("ack", "ack_order"):
            revision = self.change()
            answer: dict[str, Any] = {"type": "ack", "id": text, "revision": revision}
            if kind == "ack_order":
                answer["order_id"] = f"ORD-1-{a}"
            s.remember(f"m{a % 3}", text or None, answer)
        elif kind == "member":
            s.add_member(f"m{a % 5}")
            self.change()
            self.write_snapshot()
        elif kind == "join":
            s.add_member(f"m{a % 5}")  # in memory only: written with the next write, whichever kind
        elif kind == "forget":
            s.remove_member(f"m{a % 5}")
        elif kind == "lock" and s.pending is None and s.orderable_lines():
            for line in s.orderable_lines():
                line.state = LineState.LOCKED
            s.pending = PendingOrder(f"ORD-1-{a}", a, "m0", text, s.total(), self.now)
            s.status = ProcessingStatus.PROCESSING
            self.change()
            self.write_snapshot()
        elif kind == "settle" and s.pending is not None:
            for line_id in [i for i, line in s.lines.items() if line.state == LineState.LOCKED]:
                del s.lines[line_id]
            s.last_order_id, s.pending, s.status = s.pending.order_id, None, ProcessingStatus.CONFIRMED
            self.change()
            self.write_snapshot()
        elif kind == "write_ops":
            self.write_ops()
        elif kind == "write_snapshot":
            self.write_snapshot()

    def recovered(self) -> GroupState:
        state = GroupState() if self.snapshot is None else GroupState.from_snapshot(*self.snapshot)
        for record in self.records:
            apply_ops(state, record)
        return state


@settings(max_examples=300, deadline=None)
@given(st.lists(STEP, max_size=120), st.integers(0, 120))
@example([("join", 0, ""), ("add", 0, "")], 1)  # a member in a snapshot of revision 0, then a record
def test_last_snapshot_plus_records_is_the_final_state(steps: list[tuple[str, int, str]], snap_at: int) -> None:
    w = Writer()
    for n, (kind, a, text) in enumerate(steps):
        if n == snap_at:
            w.write_snapshot()  # a snapshot at a random point (as every N changes or on deactivation)
        w.step(kind, a, text)
    w.write_ops()  # the last batch is committed
    recovered = w.recovered()
    assert recovered.to_snapshot() == w.state.to_snapshot()
    assert recovered.revision == w.state.revision
    assert recovered.view() == w.state.view()
    # The replay the stores use for load_group gives the same.
    if w.snapshot is not None:
        revision, state = replay_snapshot(w.snapshot[0], w.snapshot[1], w.records)
        assert (revision, state) == (w.state.revision, w.state.to_snapshot())
    # Replaying again changes nothing (records at or below the state's revision are in it).
    for record in w.records:
        apply_ops(recovered, record)
    assert recovered.to_snapshot() == w.state.to_snapshot()


def test_a_full_snapshot_write_leaves_no_journal_behind() -> None:
    w = Writer()
    w.step("add", 1, "x")
    w.step("member", 1, "")  # stored as a snapshot: the add is in it
    w.step("qty", 0, "")
    record = op_record(w.state, w.stored_revision)
    assert [op[0] for op in record["ops"]] == ["q"]


def test_the_resend_window_is_replayed_with_its_limit() -> None:
    w = Writer()
    w.write_snapshot()
    for i in range(ACKED_PER_MEMBER + 10):
        w.step("ack", 0, f"request-{i:04}-with-a-long-id")  # hashed keys: replayed as stored, not rehashed
        w.write_ops()
    recovered = w.recovered()
    assert recovered.to_snapshot() == w.state.to_snapshot()
    assert recovered.answered("m0", "request-0000-with-a-long-id") is None  # pushed out of the window
    assert recovered.answered("m0", f"request-{ACKED_PER_MEMBER + 9:04}-with-a-long-id") is not None


def test_a_record_that_does_not_follow_on_is_refused() -> None:
    w = Writer()
    w.write_snapshot()
    w.step("add", 1, "a")
    w.write_ops()
    w.step("add", 2, "b")
    w.write_ops()
    state = GroupState.from_snapshot(*w.snapshot)  # type: ignore[misc]
    with pytest.raises(ValueError, match="does not follow"):
        apply_ops(state, w.records[1])  # the first record is missing: a gap would lose a change
    with pytest.raises(ValueError, match="unknown op"):
        apply_ops(state, {"b": 0, "rev": 1, "t": 0.0, "ops": [["?"]]})


def test_replay_group_folds_records_into_a_group_snapshot() -> None:
    w = Writer()
    w.step("member", 0, "")
    w.step("add", 3, "miso")
    w.write_ops()
    assert w.snapshot is not None and len(w.records) == 1
    snap = GroupSnapshot("g", "t", 1, w.snapshot[0], w.snapshot[1])
    folded = replay_group(snap, w.records)
    assert folded == GroupSnapshot("g", "t", 1, w.state.revision, w.state.to_snapshot())
    assert replay_group(snap, []) is snap
