"""HttpPosAdapter against the simulator served in-process on a free port (real sockets, real time).

Waits here are short real ones (0.3 s timeouts, 50 ms backoff) because the simulator is a separate
system that runs on real time; the policy logic itself is covered on the fake clock in test_submitter."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tableside.clock import SystemClock
from tableside.pos import (
    Accepted,
    HttpPosAdapter,
    LookupResult,
    Rejected,
    RetryPolicy,
    Unknown,
    submit_exactly_once,
)
from tests.exactly_once import assert_submitted_once, calls_for

from .conftest import Sim

FAST = RetryPolicy(timeout_s=0.3, max_retries=3, backoff_s=0.05)


@pytest.fixture
async def pos(sim: Sim) -> AsyncIterator[HttpPosAdapter]:
    adapter = HttpPosAdapter(sim.url + "/", SystemClock())  # trailing slash on purpose
    yield adapter
    await adapter.close()


async def test_accepted_and_ticket_recorded(sim: Sim, pos: HttpPosAdapter, make_order: Any) -> None:
    outcome = await pos.submit(make_order("o1"), timeout=2)
    assert isinstance(outcome, Accepted)
    code, tickets = await sim.call("GET", "/tickets")
    assert code == 200
    assert len(tickets) == 1
    ticket = tickets[0]
    assert ticket["ticket_id"] == outcome.ticket_id
    assert ticket["order_id"] == "o1"
    assert ticket["total"] == 2500
    assert ticket["items"][0]["name"] == "Pho"
    assert isinstance(ticket["created_at"], float)


async def test_body_and_idempotency_header(sim: Sim, make_order: Any) -> None:
    """What goes over the wire: the simulator refuses a POST without Idempotency-Key, so acceptance proves
    the header; the stored canonical body shows the fields."""
    order = make_order("o2")
    pos = HttpPosAdapter(sim.url, SystemClock())
    try:
        await pos.submit(order, timeout=2)
    finally:
        await pos.close()
    ticket = sim.state.tickets["o2"]
    assert ticket.order_id == "o2"
    # The stored fingerprint is the canonical body the adapter sent.
    assert '"special_instructions":"no cilantro"' in ticket.fingerprint
    assert '"order_number":7' in ticket.fingerprint and '"table_id":"T4"' in ticket.fingerprint


async def test_duplicate_key_makes_one_ticket(sim: Sim, pos: HttpPosAdapter, make_order: Any) -> None:
    first = await pos.submit(make_order("dup"), timeout=2)
    second = await pos.submit(make_order("dup"), timeout=2)
    assert isinstance(first, Accepted) and first == second
    stats = await sim.stats()
    assert stats["tickets"] == 1
    assert stats["submissions"] == 2
    assert stats["duplicates"] == 1
    # The merge hides nothing from the log: the second submit is counted as a duplicate submission.
    code, log = await sim.call("GET", "/_sim/log")
    assert code == 200
    assert (log["submissions"], log["duplicate_submissions"], log["lookups"]) == (2, 1, 0)
    assert [(r["kind"], r["outcome"], r["status"]) for r in calls_for(log, "dup")] == [
        ("submit", "created", 201),
        ("submit", "duplicate", 200),
    ]
    with pytest.raises(AssertionError):
        assert_submitted_once(log, "dup")


async def test_concurrent_duplicates_make_one_ticket(sim: Sim, pos: HttpPosAdapter, make_order: Any) -> None:
    await sim.control(latency_ms=20)
    outcomes = await asyncio.gather(*(pos.submit(make_order("race"), timeout=2) for _ in range(5)))
    assert len({o.ticket_id for o in outcomes if isinstance(o, Accepted)}) == 1
    assert all(isinstance(o, Accepted) for o in outcomes)
    assert (await sim.stats())["tickets"] == 1
    log = sim.state.request_log()
    assert (log["submissions"], log["duplicate_submissions"]) == (5, 4)


async def test_same_key_different_body_is_409(sim: Sim, pos: HttpPosAdapter, make_order: Any) -> None:
    assert isinstance(await pos.submit(make_order("k", total=100), timeout=2), Accepted)
    outcome = await pos.submit(make_order("k", total=999), timeout=2)
    assert isinstance(outcome, Rejected)
    assert "different body" in outcome.reason
    assert (await sim.stats())["tickets"] == 1


async def test_injected_503_is_unknown_without_ticket(sim: Sim, pos: HttpPosAdapter, make_order: Any) -> None:
    await sim.control(fail_next=1)
    outcome = await pos.submit(make_order("e1"), timeout=2)
    assert outcome == Unknown("HTTP 503")
    stats = await sim.stats()
    assert stats["tickets"] == 0
    assert stats["errors_injected"] == 1
    assert await pos.lookup("e1", timeout=2) == LookupResult(found=False)


async def test_submitter_rides_out_503s(sim: Sim, pos: HttpPosAdapter, make_order: Any) -> None:
    await sim.control(fail_next=2)
    outcome = await submit_exactly_once(pos, make_order("e2"), FAST, SystemClock())
    assert isinstance(outcome, Accepted)
    stats = await sim.stats()
    assert (stats["tickets"], stats["submissions"], stats["errors_injected"]) == (1, 3, 2)
    assert_submitted_once(sim.state.request_log(), "e2")  # 503, lookup, 503, lookup, created


async def test_error_rate_exhausts_retries_to_unknown(sim: Sim, pos: HttpPosAdapter, make_order: Any) -> None:
    await sim.control(error_rate=1.0)
    policy = RetryPolicy(timeout_s=0.3, max_retries=2, backoff_s=0.01)
    outcome = await submit_exactly_once(pos, make_order("e3"), policy, SystemClock())
    assert isinstance(outcome, Unknown)
    stats = await sim.stats()
    assert (stats["tickets"], stats["submissions"]) == (0, 3)
    # The intent is kept; once the POS recovers a resume finishes it with the same key.
    await sim.control(error_rate=0.0)
    resumed = await submit_exactly_once(pos, make_order("e3"), FAST, SystemClock(), resume=True)
    assert isinstance(resumed, Accepted)
    assert (await sim.stats())["tickets"] == 1
    log = sim.state.request_log()
    assert_submitted_once(log, "e3")
    assert [c["kind"] for c in calls_for(log, "e3")][-2:] == ["lookup", "submit"]  # the resume looked first


async def test_accept_then_timeout_is_one_ticket(sim: Sim, pos: HttpPosAdapter, make_order: Any) -> None:
    """The exactly-once trap: the POS made the ticket but the client timed out waiting for the reply."""
    await sim.control(timeout_next=1, hang_ms=15000)
    outcome = await submit_exactly_once(pos, make_order("trap"), FAST, SystemClock())
    assert outcome == Accepted(sim.state.tickets["trap"].ticket_id)
    stats = await sim.stats()
    assert stats["tickets"] == 1
    assert stats["timeouts_injected"] == 1
    assert stats["submissions"] == 1  # found by lookup: never resubmitted
    log = sim.state.request_log()
    assert_submitted_once(log, "trap")
    assert [c["kind"] for c in calls_for(log, "trap")] == ["submit", "lookup"]


async def test_resume_after_a_lost_reply_only_looks_up(sim: Sim, pos: HttpPosAdapter, make_order: Any) -> None:
    """Crash recovery at the adapter level: the ticket exists, the reply was lost; resuming asks, never
    resubmits."""
    await sim.control(timeout_next=1, hang_ms=15000)
    assert isinstance(await pos.submit(make_order("lost"), timeout=0.2), Unknown)
    resumed = await submit_exactly_once(pos, make_order("lost"), FAST, SystemClock(), resume=True)
    assert resumed == Accepted(sim.state.tickets["lost"].ticket_id)
    log = sim.state.request_log()
    assert_submitted_once(log, "lost")
    assert [c["kind"] for c in calls_for(log, "lost")] == ["submit", "lookup"]


async def test_accept_then_timeout_rate_many_orders(sim: Sim, pos: HttpPosAdapter, make_order: Any) -> None:
    await sim.control(accept_then_timeout_rate=0.5, error_rate=0.2, hang_ms=15000)
    orders = [make_order(f"m{i}") for i in range(12)]
    outcomes = await asyncio.gather(*(submit_exactly_once(pos, o, FAST, SystemClock()) for o in orders))
    assert all(isinstance(o, Accepted) for o in outcomes), outcomes
    code, tickets = await sim.call("GET", "/tickets")
    assert sorted(t["order_id"] for t in tickets) == sorted(o.order_id for o in orders)
    assert len({t["ticket_id"] for t in tickets}) == 12
    log = sim.state.request_log()
    for order in orders:
        assert_submitted_once(log, order.order_id)


async def test_bare_adapter_sees_the_trap_as_unknown(sim: Sim, pos: HttpPosAdapter, make_order: Any) -> None:
    await sim.control(timeout_next=1)
    outcome = await pos.submit(make_order("t"), timeout=0.2)  # tornado's request_timeout backstop
    assert isinstance(outcome, Unknown)
    assert "t" in sim.state.tickets  # ...although the ticket exists


async def test_reject(sim: Sim, pos: HttpPosAdapter, make_order: Any) -> None:
    await sim.control(reject_rate=1.0)
    outcome = await submit_exactly_once(pos, make_order("r"), FAST, SystemClock())
    assert outcome == Rejected("injected rejection")
    # A refusal is final for that key, even after the POS stops refusing.
    await sim.control(reject_rate=0.0)
    assert isinstance(await pos.submit(make_order("r"), timeout=2), Rejected)
    assert await pos.lookup("r", timeout=2) == LookupResult(found=False)
    assert (await sim.stats())["rejected"] == 1
    assert (await sim.stats())["tickets"] == 0


async def test_lookup_found_and_not_found(sim: Sim, pos: HttpPosAdapter, make_order: Any) -> None:
    outcome = await pos.submit(make_order("a/b c"), timeout=2)  # a key that needs URL quoting
    assert isinstance(outcome, Accepted)
    assert await pos.lookup("a/b c", timeout=2) == LookupResult(found=True, ticket_id=outcome.ticket_id)
    assert await pos.lookup("nope", timeout=2) == LookupResult(found=False)


async def test_unreachable_pos_is_unknown(make_order: Any) -> None:
    with socket.socket() as s:  # bound and held, never listening: connections are refused, nobody can take it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        pos = HttpPosAdapter(f"http://127.0.0.1:{port}", SystemClock())
        try:
            assert isinstance(await pos.submit(make_order(), timeout=1), Unknown)
            lookup = await pos.lookup("x", timeout=1)
            assert lookup.found is None and lookup.reason
        finally:
            await pos.close()


async def test_control_endpoint(sim: Sim) -> None:
    settings = await sim.control(latency_ms=5, error_rate=0.25, fail_next=2)
    assert settings["latency_ms"] == 5
    assert settings["error_rate"] == 0.25
    assert settings["fail_next"] == 2
    assert settings["reject_rate"] == 0.0
    for bad in ({"error_rate": 2}, {"bogus": 1}, {"fail_next": -1}, {"latency_ms": "fast"}):
        code, body = await sim.call("POST", "/control", bad)
        assert code == 400, bad
        assert body["reason"]
    assert sim.state.config.error_rate == 0.25  # a bad request changed nothing


async def test_latency_holds_the_call_in_flight(sim: Sim, pos: HttpPosAdapter, make_order: Any) -> None:
    """With latency the submit is logged on arrival and stays in flight (no ticket, no reply) until the
    latency is over: what crash tests wait on to kill a server mid-call."""
    await sim.control(latency_ms=60_000)
    call = asyncio.ensure_future(pos.submit(make_order("slow"), timeout=120))
    code, log = await sim.call("GET", "/_sim/log?key=slow&kind=submit&in_flight=true&wait_s=10")
    assert code == 200, log
    (entry,) = log["requests"]
    assert (entry["kind"], entry["key"], entry["outcome"], entry["in_flight"]) == ("submit", "slow", "received", True)
    assert "slow" not in sim.state.tickets and not call.done()
    code, log = await sim.call("GET", "/_sim/log?key=slow&outcome=created&wait_s=0.05")
    assert code == 408 and log["waited_for"] == {"key": "slow", "outcome": "created"}
    await sim.control(release=True)  # the held call goes on at once, as if the latency had passed
    assert await call == Accepted(sim.state.tickets["slow"].ticket_id)
    (entry,) = sim.state.request_log()["requests"]
    assert (entry["outcome"], entry["status"], entry["in_flight"]) == ("created", 201, False)


async def test_stats_and_reset(sim: Sim, pos: HttpPosAdapter, make_order: Any) -> None:
    await sim.control(fail_next=1, error_rate=0.1)
    await pos.submit(make_order("s1"), timeout=2)  # 503
    await pos.submit(make_order("s1"), timeout=2)  # accepted (error_rate draw with seed 1 passes)
    await pos.submit(make_order("s1"), timeout=2)  # duplicate
    assert await sim.stats() == {
        "tickets": 1,
        "submissions": 3,
        "duplicates": 1,
        "rejected": 0,
        "errors_injected": 1,
        "timeouts_injected": 0,
    }
    code, _ = await sim.call("POST", "/reset", {})
    assert code == 200
    assert set((await sim.stats()).values()) == {0}
    log = sim.state.request_log()
    assert (log["requests"], log["submissions"], log["duplicate_submissions"], log["lookups"]) == ([], 0, 0, 0)
    assert sim.state.config.error_rate == 0.0  # back to the startup settings
    assert (await sim.call("GET", "/tickets")) == (200, [])


async def test_malformed_requests_are_400(sim: Sim) -> None:
    response = await sim.client.fetch(sim.url + "/orders", method="POST", body="{}", raise_error=False)
    assert response.code == 400  # no Idempotency-Key
    response = await sim.client.fetch(
        sim.url + "/orders", method="POST", body="[]", headers={"Idempotency-Key": "k"}, raise_error=False
    )
    assert response.code == 400
    response = await sim.client.fetch(
        sim.url + "/orders",
        method="POST",
        body='{"order_id": "other"}',
        headers={"Idempotency-Key": "k"},
        raise_error=False,
    )
    assert response.code == 400
    assert (await sim.stats())["submissions"] == 0


def test_cli_main_serves_until_sigterm() -> None:
    argv = [sys.executable, "-m", "tableside.pos.simulator", "--port", "0", "--seed", "3"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.startswith("pos-sim listening on http://127.0.0.1:")
            port = int(line.rsplit(":", 1)[1])
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                pass
            proc.terminate()
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


def test_cli_rejects_bad_rates() -> None:
    from tableside.pos.simulator import main

    assert main(["--error-rate", "1.5"]) == 2
