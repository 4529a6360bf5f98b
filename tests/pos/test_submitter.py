"""The exactly-once policy, driven entirely by a FakeClock: no test here waits for real time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

import pytest

from tableside.clock import FakeClock
from tableside.pos import (
    Accepted,
    LookupResult,
    PosOrder,
    PosOutcome,
    Rejected,
    RetryPolicy,
    Unknown,
    submit_exactly_once,
)

T = TypeVar("T")
HANG = "hang"  # a scripted step that never answers, so only the clock can end it


class ScriptedAdapter:
    """Answers submits and lookups from scripts; records when (on the clock) each call happened."""

    name = "scripted"

    def __init__(self, clock: FakeClock, submits: list[Any], lookups: list[Any] | None = None) -> None:
        self.clock = clock
        self.submits = list(submits)
        self.lookups = list(lookups or [])
        self.submit_times: list[float] = []
        self.lookup_times: list[float] = []
        self.keys: list[str] = []
        self.cancelled = 0

    async def _answer(self, step: Any) -> Any:
        if step == HANG:
            try:
                await asyncio.Future()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        if isinstance(step, Exception):
            raise step
        return step

    async def submit(self, order: PosOrder, timeout: float) -> PosOutcome:
        self.submit_times.append(self.clock.monotonic())
        self.keys.append(order.order_id)
        result: PosOutcome = await self._answer(self.submits.pop(0))
        return result

    async def lookup(self, order_id: str, timeout: float) -> LookupResult:
        self.lookup_times.append(self.clock.monotonic())
        self.keys.append(order_id)
        result: LookupResult = await self._answer(
            self.lookups.pop(0) if self.lookups else LookupResult(found=False)
        )
        return result

    async def close(self) -> None:
        return None


class ListLog:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def info(self, event: str, **kw: Any) -> None:
        self.events.append((event, kw))


async def settle() -> None:
    """Let freshly started tasks run up to their first real wait (a few nested tasks deep)."""
    for _ in range(10):
        await asyncio.sleep(0)


async def drive(clock: FakeClock, work: Awaitable[T], step: float = 0.5, limit: float = 1000.0) -> T:
    """Run ``work`` while moving the fake clock forward in small steps until it finishes."""
    task = asyncio.ensure_future(work)
    await settle()
    moved = 0.0
    while not task.done():
        assert moved < limit, "the submitter did not finish within the simulated time limit"
        await clock.advance(step)
        moved += step
    return task.result()


POLICY = RetryPolicy(timeout_s=10.0, max_retries=3, backoff_s=2.0)
UNKNOWN = Unknown("HTTP 503")


async def test_accepted_first_try(clock: FakeClock, make_order: Any) -> None:
    adapter = ScriptedAdapter(clock, [Accepted("T1")])
    assert await drive(clock, submit_exactly_once(adapter, make_order(), POLICY, clock)) == Accepted("T1")
    assert adapter.submit_times == [0.0]
    assert adapter.lookup_times == []


async def test_rejected_is_final(clock: FakeClock, make_order: Any) -> None:
    adapter = ScriptedAdapter(clock, [Rejected("sold out")])
    assert await drive(clock, submit_exactly_once(adapter, make_order(), POLICY, clock)) == Rejected(
        "sold out"
    )
    assert len(adapter.submit_times) == 1
    assert adapter.lookup_times == []


async def test_unknown_then_lookup_found_does_not_resubmit(clock: FakeClock, make_order: Any) -> None:
    adapter = ScriptedAdapter(clock, [UNKNOWN], [LookupResult(found=True, ticket_id="T9")])
    outcome = await drive(clock, submit_exactly_once(adapter, make_order(), POLICY, clock))
    assert outcome == Accepted("T9")
    assert adapter.submit_times == [0.0]
    assert adapter.lookup_times == [2.0]  # after the first backoff


async def test_unknown_then_not_found_resubmits_with_same_key(clock: FakeClock, make_order: Any) -> None:
    adapter = ScriptedAdapter(clock, [UNKNOWN, Accepted("T2")], [LookupResult(found=False)])
    outcome = await drive(clock, submit_exactly_once(adapter, make_order("key-42"), POLICY, clock))
    assert outcome == Accepted("T2")
    assert adapter.keys == ["key-42", "key-42", "key-42"]


async def test_unknown_every_time_gives_unknown_after_backoff_2_4_8(
    clock: FakeClock, make_order: Any
) -> None:
    # Lookups fail outright (found=None): still safe to resubmit with the same key.
    failed = LookupResult(found=None, reason="HTTP 502")
    adapter = ScriptedAdapter(clock, [UNKNOWN] * 4, [failed] * 3)
    outcome = await drive(clock, submit_exactly_once(adapter, make_order(), POLICY, clock))
    assert isinstance(outcome, Unknown)
    # 1 + max_retries submits; sleeps of 2, 4 and 8 s between them (the adapter answers instantly).
    assert adapter.submit_times == [0.0, 2.0, 6.0, 14.0]
    assert adapter.lookup_times == [2.0, 6.0, 14.0]
    assert adapter.submits == []


async def test_zero_retries_means_one_submit(clock: FakeClock, make_order: Any) -> None:
    adapter = ScriptedAdapter(clock, [UNKNOWN])
    policy = RetryPolicy(max_retries=0)
    assert isinstance(await drive(clock, submit_exactly_once(adapter, make_order(), policy, clock)), Unknown)
    assert len(adapter.submit_times) == 1
    assert adapter.lookup_times == []


async def test_resume_with_existing_ticket_never_submits(clock: FakeClock, make_order: Any) -> None:
    adapter = ScriptedAdapter(clock, [], [LookupResult(found=True, ticket_id="T7")])
    outcome = await drive(clock, submit_exactly_once(adapter, make_order(), POLICY, clock, resume=True))
    assert outcome == Accepted("T7")
    assert adapter.submit_times == []


@pytest.mark.parametrize("lookup", [LookupResult(found=False), LookupResult(found=None, reason="503")])
async def test_resume_without_ticket_submits(clock: FakeClock, make_order: Any, lookup: LookupResult) -> None:
    adapter = ScriptedAdapter(clock, [Accepted("T3")], [lookup])
    outcome = await drive(clock, submit_exactly_once(adapter, make_order(), POLICY, clock, resume=True))
    assert outcome == Accepted("T3")
    assert adapter.lookup_times == [0.0]
    assert adapter.submit_times == [0.0]


async def test_submit_timeout_on_fake_clock_then_lookup_finds_it(clock: FakeClock, make_order: Any) -> None:
    adapter = ScriptedAdapter(clock, [HANG], [LookupResult(found=True, ticket_id="T5")])
    task = asyncio.ensure_future(submit_exactly_once(adapter, make_order(), POLICY, clock))
    await settle()
    await clock.advance(9.9)
    assert not task.done()  # still inside the 10 s submit timeout
    await clock.advance(0.1)  # the timeout fires: Unknown, then the 2 s backoff starts
    assert not task.done()
    assert adapter.cancelled == 1  # the hung attempt was cancelled, not leaked
    await clock.advance(2.0)
    assert task.done()
    assert task.result() == Accepted("T5")
    assert adapter.lookup_times == [12.0]
    assert len(adapter.submit_times) == 1


async def test_lookup_timeout_counts_as_failed_lookup(clock: FakeClock, make_order: Any) -> None:
    adapter = ScriptedAdapter(clock, [UNKNOWN, Accepted("T6")], [HANG])
    outcome = await drive(clock, submit_exactly_once(adapter, make_order(), POLICY, clock))
    assert outcome == Accepted("T6")
    assert adapter.submit_times == [0.0, 12.0]  # 2 s backoff + 10 s lookup timeout


async def test_adapter_exception_is_unknown_not_a_crash(clock: FakeClock, make_order: Any) -> None:
    adapter = ScriptedAdapter(clock, [ConnectionResetError("peer reset"), Accepted("T8")], [OSError("dns")])
    outcome = await drive(clock, submit_exactly_once(adapter, make_order(), POLICY, clock))
    assert outcome == Accepted("T8")


async def test_found_without_ticket_id_is_not_trusted(clock: FakeClock, make_order: Any) -> None:
    adapter = ScriptedAdapter(clock, [UNKNOWN, Accepted("T10")], [LookupResult(found=True, ticket_id=None)])
    outcome = await drive(clock, submit_exactly_once(adapter, make_order(), POLICY, clock))
    assert outcome == Accepted("T10")
    assert len(adapter.submit_times) == 2


async def test_logs_structured_events_without_order_contents(clock: FakeClock, make_order: Any) -> None:
    log = ListLog()
    adapter = ScriptedAdapter(clock, [UNKNOWN, Accepted("T11")])
    await drive(clock, submit_exactly_once(adapter, make_order("k1"), POLICY, clock, log=log))
    names = [name for name, _ in log.events]
    assert names == ["pos.submit", "pos.backoff", "pos.lookup", "pos.submit", "pos.accepted"]
    for _, kw in log.events:
        assert kw["order_id"] == "k1"
        assert kw["adapter"] == "scripted"
        assert "no cilantro" not in repr(kw) and "Pho" not in repr(kw)
    assert log.events[1][1]["delay_s"] == 2.0
    assert log.events[-1][1] == {
        "order_id": "k1",
        "adapter": "scripted",
        "ticket_id": "T11",
        "via": "submit",
        "attempts": 2,
    }


async def test_cancelling_the_submitter_cancels_the_attempt(clock: FakeClock, make_order: Any) -> None:
    adapter = ScriptedAdapter(clock, [HANG])
    task = asyncio.ensure_future(submit_exactly_once(adapter, make_order(), POLICY, clock))
    await settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await settle()
    assert adapter.cancelled == 1
