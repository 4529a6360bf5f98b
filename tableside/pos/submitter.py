"""Exactly-once order submission on top of any ``PosAdapter``.

The order id is the idempotency key. An attempt that ends in ``Unknown`` (timeout, lost connection, 5xx) may
have created a ticket, so before trying again we *look the key up*; only when the POS says it has no such
ticket (or cannot tell us) do we submit again, and always with the same key, so a POS that honours the key
can never make a second ticket. When every retry is used up we return ``Unknown`` and the caller keeps the
intent: a later ``resume=True`` call starts with a lookup and picks up where this one stopped.

All waiting goes through the injected ``Clock`` so tests drive timeouts and backoff with ``FakeClock``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from tableside.clock import Clock, run_with_timeout
from tableside.pos.interface import (
    Accepted,
    LookupResult,
    PosAdapter,
    PosOrder,
    PosOutcome,
    Rejected,
    Unknown,
)


class EventLog(Protocol):
    """The slice of a structlog logger we use; a bound ``structlog`` logger satisfies it."""

    def info(self, event: str, **kw: Any) -> Any: ...


@dataclass(frozen=True)
class RetryPolicy:
    timeout_s: float = 10.0  # per adapter call (submit or lookup)
    max_retries: int = 3  # extra submits after the first Unknown
    backoff_s: float = 2.0  # sleep before retry i is backoff_s * 2**i


async def submit_exactly_once(
    adapter: PosAdapter,
    order: PosOrder,
    policy: RetryPolicy,
    clock: Clock,
    *,
    resume: bool = False,
    log: EventLog | None = None,
) -> PosOutcome:
    """Get ``order`` into the POS at most once, and at least once unless the POS refuses it or stays dark.

    ``resume`` is for an intent whose earlier outcome was unknown (crash recovery, a guest's retry): the
    ticket may already exist, so look first instead of submitting blind."""
    key = order.order_id

    def emit(event: str, **kw: Any) -> None:
        # Only ids, counts and reasons: never the order body, which may carry guest notes.
        if log is not None:
            log.info(event, order_id=key, adapter=adapter.name, **kw)

    if resume:
        found = await _lookup(adapter, key, policy, clock)
        emit("pos.lookup", phase="resume", found=found.found, reason=found.reason)
        if found.found and found.ticket_id is not None:
            emit("pos.accepted", ticket_id=found.ticket_id, via="lookup", attempts=0)
            return Accepted(found.ticket_id)

    outcome = await _submit(adapter, order, policy, clock)
    emit("pos.submit", attempt=1, outcome=type(outcome).__name__, **_detail(outcome))
    attempts = 1
    for i in range(policy.max_retries):
        if not isinstance(outcome, Unknown):
            break
        delay = policy.backoff_s * 2**i
        emit("pos.backoff", retry=i + 1, delay_s=delay)
        await clock.sleep(delay)
        # The previous attempt may have landed; asking first is what keeps us from double-submitting
        # to a POS that ignores idempotency keys, and it is cheaper than a submit anyway.
        found = await _lookup(adapter, key, policy, clock)
        emit("pos.lookup", phase="retry", retry=i + 1, found=found.found, reason=found.reason)
        if found.found and found.ticket_id is not None:
            emit("pos.accepted", ticket_id=found.ticket_id, via="lookup", attempts=attempts)
            return Accepted(found.ticket_id)
        # Not found, or the lookup itself failed: resubmitting with the same key is safe either way.
        outcome = await _submit(adapter, order, policy, clock)
        attempts += 1
        emit("pos.submit", attempt=attempts, outcome=type(outcome).__name__, **_detail(outcome))

    if isinstance(outcome, Accepted):
        emit("pos.accepted", ticket_id=outcome.ticket_id, via="submit", attempts=attempts)
    elif isinstance(outcome, Rejected):
        emit("pos.rejected", reason=outcome.reason, attempts=attempts)
    else:
        emit("pos.unknown", reason=outcome.reason, attempts=attempts)
    return outcome


async def _submit(adapter: PosAdapter, order: PosOrder, policy: RetryPolicy, clock: Clock) -> PosOutcome:
    try:
        return await run_with_timeout(clock, adapter.submit(order, policy.timeout_s), policy.timeout_s)
    except TimeoutError:
        return Unknown(f"timed out after {policy.timeout_s}s")
    except Exception as exc:  # an adapter bug or transport error must not look like a definite answer
        return Unknown(f"submit raised {type(exc).__name__}: {exc}")


async def _lookup(adapter: PosAdapter, key: str, policy: RetryPolicy, clock: Clock) -> LookupResult:
    try:
        result = await run_with_timeout(clock, adapter.lookup(key, policy.timeout_s), policy.timeout_s)
    except TimeoutError:
        return LookupResult(found=None, reason=f"lookup timed out after {policy.timeout_s}s")
    except Exception as exc:
        return LookupResult(found=None, reason=f"lookup raised {type(exc).__name__}: {exc}")
    if result.found and result.ticket_id is None:
        # "Found" without a ticket id cannot be confirmed to the guest; a same-key resubmit will fetch it.
        return LookupResult(found=None, reason="lookup found the key but returned no ticket id")
    return result


def _detail(outcome: PosOutcome) -> dict[str, str]:
    if isinstance(outcome, Accepted):
        return {"ticket_id": outcome.ticket_id}
    return {"reason": outcome.reason}
