"""The exactly-once check on the POS simulator's request log (``GET /_sim/log`` / ``SimulatorState.request_log``).

Counting tickets is not enough: the simulator merges a resubmission of a known key into the existing
ticket, so a client that resubmits where it should have looked up still ends with one ticket. The log
says what the client did, and this is what every exactly-once test asserts on it."""

from __future__ import annotations

from typing import Any


def calls_for(log: dict[str, Any], key: str) -> list[dict[str, Any]]:
    return [r for r in log["requests"] if r["key"] == key]


def assert_submitted_once(log: dict[str, Any], key: str) -> None:
    """``key`` made exactly one ticket, by one submit; before it only submits the POS refused to handle
    (injected 503: no ticket), after it only lookups. Any submit of a key the POS already had counts as a
    duplicate submission and fails, as does a call still in flight."""
    calls = calls_for(log, key)
    summary = [(c["kind"], c["outcome"], c["status"]) for c in calls]
    assert log["duplicate_submissions"] == 0, (key, summary)
    created = [i for i, c in enumerate(calls) if c["kind"] == "submit" and c["outcome"] == "created"]
    assert len(created) == 1, (key, summary)
    before, after = calls[: created[0]], calls[created[0] + 1 :]
    assert all(c["kind"] == "lookup" or c["outcome"] == "error" for c in before), (key, summary)
    assert all(c["kind"] == "lookup" for c in after), (key, summary)
    assert all(not c["in_flight"] for c in after), (key, summary)
