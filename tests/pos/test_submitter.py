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
        self.timeouts: list[float] = []  # what each call was told about its time budget
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
        self.timeouts.append(timeout)
        result: PosOutcome = await self._answer(self.submits.pop(0))
        return result

    async def lookup(self, order_id: str, timeout: float) -> LookupResult:
        self.lookup_times.append(self.clock.monotonic())
        self.keys.append(order_id)
        self.timeouts.append(timeout)
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


# -- the event log and the reasons: what an operator sees of each attempt ----------------------------------


def events(log: ListLog, key: str = "ord-1") -> list[tuple[str, dict[str, Any]]]:
    """The events with the fields every one of them carries checked and taken off."""
    out = []
    for name, kw in log.events:
        kw = dict(kw)
        assert kw.pop("order_id") == key and kw.pop("adapter") == "scripted", (name, kw)
        out.append((name, kw))
    return out


async def test_events_when_resume_finds_the_ticket(clock: FakeClock, make_order: Any) -> None:
    log = ListLog()
    adapter = ScriptedAdapter(clock, [], [LookupResult(found=True, ticket_id="T7")])
    await drive(clock, submit_exactly_once(adapter, make_order(), POLICY, clock, resume=True, log=log))
    assert events(log) == [
        ("pos.lookup", {"phase": "resume", "found": True, "reason": ""}),
        ("pos.accepted", {"ticket_id": "T7", "via": "lookup", "attempts": 0}),
    ]


async def test_events_when_resume_finds_nothing_and_submits(clock: FakeClock, make_order: Any) -> None:
    log = ListLog()
    adapter = ScriptedAdapter(clock, [Accepted("T3")], [LookupResult(found=False, reason="no such key")])
    await drive(clock, submit_exactly_once(adapter, make_order(), POLICY, clock, resume=True, log=log))
    assert events(log) == [
        ("pos.lookup", {"phase": "resume", "found": False, "reason": "no such key"}),
        ("pos.submit", {"attempt": 1, "outcome": "Accepted", "ticket_id": "T3"}),
        ("pos.accepted", {"ticket_id": "T3", "via": "submit", "attempts": 1}),
    ]


async def test_events_when_every_attempt_is_unknown(clock: FakeClock, make_order: Any) -> None:
    log = ListLog()
    failed = LookupResult(found=None, reason="HTTP 502")
    adapter = ScriptedAdapter(clock, [Unknown(f"HTTP 50{i}") for i in range(4)], [failed] * 3)
    outcome = await drive(clock, submit_exactly_once(adapter, make_order(), POLICY, clock, log=log))
    assert outcome == Unknown("HTTP 503")  # the last attempt's reason
    expected: list[tuple[str, dict[str, Any]]] = [
        ("pos.submit", {"attempt": 1, "outcome": "Unknown", "reason": "HTTP 500"}),
    ]
    for retry, delay in ((1, 2.0), (2, 4.0), (3, 8.0)):
        expected += [
            ("pos.backoff", {"retry": retry, "delay_s": delay}),
            ("pos.lookup", {"phase": "retry", "retry": retry, "found": None, "reason": "HTTP 502"}),
            ("pos.submit", {"attempt": retry + 1, "outcome": "Unknown", "reason": f"HTTP 50{retry}"}),
        ]
    expected.append(("pos.unknown", {"reason": "HTTP 503", "attempts": 4}))
    assert events(log) == expected


async def test_events_when_a_retry_lookup_finds_the_ticket(clock: FakeClock, make_order: Any) -> None:
    log = ListLog()
    adapter = ScriptedAdapter(
        clock, [UNKNOWN, UNKNOWN], [LookupResult(found=False), LookupResult(found=True, ticket_id="T9")]
    )
    outcome = await drive(clock, submit_exactly_once(adapter, make_order(), POLICY, clock, log=log))
    assert outcome == Accepted("T9")
    assert events(log)[-2:] == [
        ("pos.lookup", {"phase": "retry", "retry": 2, "found": True, "reason": ""}),
        ("pos.accepted", {"ticket_id": "T9", "via": "lookup", "attempts": 2}),
    ]
    assert len(adapter.submit_times) == 2


@pytest.mark.parametrize("unknowns", [0, 1])
async def test_events_when_rejected(clock: FakeClock, make_order: Any, unknowns: int) -> None:
    log = ListLog()
    adapter = ScriptedAdapter(clock, [UNKNOWN] * unknowns + [Rejected("sold out")])
    outcome = await drive(clock, submit_exactly_once(adapter, make_order(), POLICY, clock, log=log))
    assert outcome == Rejected("sold out")
    assert events(log)[-2:] == [
        ("pos.submit", {"attempt": unknowns + 1, "outcome": "Rejected", "reason": "sold out"}),
        ("pos.rejected", {"reason": "sold out", "attempts": unknowns + 1}),
    ]


async def test_every_call_gets_the_policy_timeout(clock: FakeClock, make_order: Any) -> None:
    adapter = ScriptedAdapter(clock, [UNKNOWN, Accepted("T1")], [LookupResult(found=False)])
    policy = RetryPolicy(timeout_s=3.5, max_retries=1, backoff_s=1.0)
    assert await drive(clock, submit_exactly_once(adapter, make_order(), policy, clock)) == Accepted("T1")
    assert adapter.timeouts == [3.5, 3.5, 3.5]  # submit, lookup, submit: the adapter's own budget


async def test_default_policy_is_10s_timeout_3_retries_2s_backoff(clock: FakeClock, make_order: Any) -> None:
    hang = ScriptedAdapter(clock, [HANG] * 4, [HANG] * 3)
    outcome = await drive(clock, submit_exactly_once(hang, make_order(), RetryPolicy(), clock))
    assert outcome == Unknown("timed out after 10.0s")
    # submit 10 s, then per retry: backoff, lookup 10 s, submit 10 s.
    assert hang.submit_times == [0.0, 22.0, 46.0, 74.0]
    assert hang.lookup_times == [12.0, 36.0, 64.0]
    assert hang.cancelled == 7


async def test_unknown_reasons_say_what_happened(clock: FakeClock, make_order: Any) -> None:
    log = ListLog()
    policy = RetryPolicy(timeout_s=5.0, max_retries=2, backoff_s=1.0)
    adapter = ScriptedAdapter(
        clock,
        [ConnectionResetError("peer reset"), HANG, RuntimeError("adapter bug")],
        [OSError("dns failure"), HANG],
    )
    outcome = await drive(clock, submit_exactly_once(adapter, make_order(), policy, clock, log=log))
    assert outcome == Unknown("submit raised RuntimeError: adapter bug")
    reasons = [kw["reason"] for name, kw in events(log) if name in ("pos.submit", "pos.lookup")]
    assert reasons == [
        "submit raised ConnectionResetError: peer reset",
        "lookup raised OSError: dns failure",
        "timed out after 5.0s",
        "lookup timed out after 5.0s",
        "submit raised RuntimeError: adapter bug",
    ]


async def test_found_without_ticket_id_is_logged_as_a_failed_lookup(clock: FakeClock, make_order: Any) -> None:
    log = ListLog()
    adapter = ScriptedAdapter(clock, [UNKNOWN, Accepted("T10")], [LookupResult(found=True, ticket_id=None)])
    await drive(clock, submit_exactly_once(adapter, make_order(), POLICY, clock, log=log))
    lookup = [kw for name, kw in events(log) if name == "pos.lookup"]
    assert lookup == [{"phase": "retry", "retry": 1, "found": None,
                       "reason": "lookup found the key but returned no ticket id"}]


async def test_not_found_with_a_ticket_id_is_not_trusted(clock: FakeClock, make_order: Any) -> None:
    # Only found=True with a ticket id confirms the order; a stray ticket id alone does not.
    adapter = ScriptedAdapter(clock, [UNKNOWN, Accepted("T12")], [LookupResult(found=False, ticket_id="T0")])
    assert await drive(clock, submit_exactly_once(adapter, make_order(), POLICY, clock)) == Accepted("T12")
    resumed = ScriptedAdapter(clock, [Accepted("T13")], [LookupResult(found=None, ticket_id="T0")])
    outcome = await drive(clock, submit_exactly_once(resumed, make_order(), POLICY, clock, resume=True))
    assert outcome == Accepted("T13")


async def test_unknown_outcome_is_resumable_without_a_second_ticket(clock: FakeClock, make_order: Any) -> None:
    """The intent whose outcome stayed unknown is resumed later (crash recovery, a guest's retry) with the
    same key: it looks first and confirms the ticket the last unknown attempt did create."""
    policy = RetryPolicy(timeout_s=10.0, max_retries=1, backoff_s=2.0)
    adapter = ScriptedAdapter(clock, [UNKNOWN, UNKNOWN], [LookupResult(found=False)])
    first = await drive(clock, submit_exactly_once(adapter, make_order("key-7"), policy, clock))
    assert isinstance(first, Unknown)
    adapter.lookups = [LookupResult(found=True, ticket_id="T42")]  # the last attempt did land
    resumed = await drive(clock, submit_exactly_once(adapter, make_order("key-7"), policy, clock, resume=True))
    assert resumed == Accepted("T42")
    assert len(adapter.submit_times) == 2 and set(adapter.keys) == {"key-7"}
