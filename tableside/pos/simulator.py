"""A standalone POS simulator: ``tableside pos-sim`` (or ``python -m tableside.pos.simulator``).

It honours ``Idempotency-Key`` like a well-behaved POS and injects the failures the submitter must survive:
503s (no ticket), 422 refusals (no ticket) and, the exactly-once trap, *accept then hang*: the ticket is
created but the response is held longer than the client waits, so the client sees a timeout for an order
that exists. ``POST /control`` changes injection at runtime; ``GET /stats`` and ``GET /tickets`` let tests
and benchmarks check that no order ever produced two tickets.

Merging resubmissions by key hides a client that resubmits where it should have looked up, so
``GET /_sim/log`` also tells what the client *did*: every submit and lookup in arrival order, with its key,
whether it is still in flight (received, or ticket made and the reply held) and how it ended, plus
``submissions`` and ``duplicate_submissions`` (submits of a key that already had a ticket or a refusal).
Crash tests wait on it to kill a server while its POS call is provably in flight.

The simulator stands for a separate system, so it uses real time (``asyncio.sleep``), not the app's Clock.

API::

    POST /orders          body {order_id, ...}, header Idempotency-Key -> 201 new / 200 duplicate
                          {ticket_id, order_id, duplicate}; 409 same key, different body; 422 rejected;
                          503 injected error; 400 malformed
    GET  /orders/{key}    200 {ticket_id, ...} / 404
    GET  /tickets         [{ticket_id, order_id, total, items, created_at}, ...]
    GET  /stats           {tickets, submissions, duplicates, rejected, errors_injected, timeouts_injected}
    GET  /_sim/log        {requests: [{seq, kind: submit|lookup, key, outcome, status, in_flight}, ...],
                           submissions, duplicate_submissions, lookups, dropped}; outcome is "received"
                           until decided, then created|duplicate|rejected|error|mismatch|bad_request for a
                           submit, found|not_found for a lookup; status is null until the reply is sent
    POST /control         {latency_ms?, error_rate?, reject_rate?, accept_then_timeout_rate?, hang_ms?,
                           fail_next?, timeout_next?, release?} -> the effective settings; release: true
                           ends every latency wait and held reply now (requests go on as if it had passed)
    POST /reset           forget every ticket, counter and pending injection; back to the startup settings
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from enum import Enum
from typing import Any

import tornado.web
from tornado.httpserver import HTTPServer
from tornado.log import access_log
from tornado.netutil import bind_sockets


@dataclass
class SimulatorConfig:
    latency_ms: int = 0  # delay before handling POST /orders and GET /orders/{key}
    error_rate: float = 0.0  # new key -> 503, no ticket
    reject_rate: float = 0.0  # new key -> 422, no ticket (and the key stays rejected)
    accept_then_timeout_rate: float = 0.0  # new key -> ticket created, response held for hang_ms
    hang_ms: int = 15000
    seed: int | None = None

    def validate(self) -> None:
        for name in ("error_rate", "reject_rate", "accept_then_timeout_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if self.latency_ms < 0 or self.hang_ms < 0:
            raise ValueError("latency_ms and hang_ms must be >= 0")


@dataclass
class Ticket:
    ticket_id: str
    order_id: str
    total: int
    items: list[Any]
    created_at: float
    fingerprint: str = field(repr=False)  # canonical body, to spot a reused key with a different order

    def public(self) -> dict[str, Any]:
        return {
            "ticket_id": self.ticket_id,
            "order_id": self.order_id,
            "total": self.total,
            "items": self.items,
            "created_at": self.created_at,
        }


LOG_LIMIT = 10_000  # requests kept in the log (a benchmark sends many); older ones are counted as dropped


@dataclass
class LoggedRequest:
    """One submit or lookup as the simulator saw it. ``status`` stays None while the reply is not sent
    (latency, or a ticket made and the reply held): that is what "the call is in flight" means."""

    seq: int
    kind: str  # "submit" | "lookup"
    key: str
    outcome: str = "received"
    status: int | None = None

    def public(self) -> dict[str, Any]:
        return {**asdict(self), "in_flight": self.status is None}


class Fate(Enum):
    """What happens to a submission of a key the simulator has not seen."""

    ACCEPT = "accept"
    ERROR = "error"
    REJECT = "reject"
    ACCEPT_THEN_HANG = "accept_then_hang"


class SimulatorState:
    """Everything the simulator knows; separate from the handlers so tests can inspect it in-process."""

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self._startup = replace(config) if config is not None else SimulatorConfig()
        self._startup.validate()
        self._hung: set[asyncio.Event] = set()
        self._log_waiters: set[asyncio.Event] = set()
        self.reset()

    def reset(self) -> None:
        self.config = replace(self._startup)
        self.rng = random.Random(self.config.seed)
        self.tickets: dict[str, Ticket] = {}  # Idempotency-Key -> ticket
        self.rejected: dict[str, str] = {}  # Idempotency-Key -> body fingerprint
        self.submissions = 0
        self.duplicates = 0
        self.rejected_count = 0
        self.errors_injected = 0
        self.timeouts_injected = 0
        self.fail_next = 0
        self.timeout_next = 0
        self._seq = 0
        self.requests: deque[LoggedRequest] = deque(maxlen=LOG_LIMIT)
        self.requests_logged = 0
        self.lookups = 0
        self.release_hung()  # a reset must not leave old responses parked

    def stats(self) -> dict[str, int]:
        return {
            "tickets": len(self.tickets),
            "submissions": self.submissions,
            "duplicates": self.duplicates,
            "rejected": self.rejected_count,
            "errors_injected": self.errors_injected,
            "timeouts_injected": self.timeouts_injected,
        }

    def log_request(self, kind: str, key: str) -> LoggedRequest:
        self.requests_logged += 1
        entry = LoggedRequest(self.requests_logged, kind, key)
        self.requests.append(entry)
        self.log_changed()
        return entry

    def log_changed(self) -> None:
        for waiter in self._log_waiters:
            waiter.set()

    async def wait_for_request(self, match: Callable[[LoggedRequest], bool], timeout: float) -> bool:
        """Wait until a logged request satisfies ``match`` (e.g. "the submit of key K is in flight");
        False after ``timeout`` seconds. Lets tests wait for the event instead of polling or sleeping."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not any(match(r) for r in self.requests):
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return False
            waiter = asyncio.Event()
            self._log_waiters.add(waiter)
            try:
                await asyncio.wait_for(waiter.wait(), remaining)
            except TimeoutError:
                return False
            finally:
                self._log_waiters.discard(waiter)
        return True

    def request_log(self) -> dict[str, Any]:
        return {
            "requests": [r.public() for r in self.requests],
            "submissions": self.submissions,
            "duplicate_submissions": self.duplicates,
            "lookups": self.lookups,
            "dropped": self.requests_logged - len(self.requests),
        }

    def settings(self) -> dict[str, Any]:
        return {**asdict(self.config), "fail_next": self.fail_next, "timeout_next": self.timeout_next}

    def control(self, changes: dict[str, Any]) -> None:
        """Apply a /control body; raises ValueError (nothing applied) on an unknown key or bad value."""
        tunable = {f.name for f in fields(SimulatorConfig)} - {"seed"}
        unknown = set(changes) - tunable - {"fail_next", "timeout_next", "release"}
        if unknown:
            raise ValueError(f"unknown control keys: {sorted(unknown)}")
        updates: dict[str, Any] = {}
        for name in tunable & set(changes):
            kind = int if name in ("latency_ms", "hang_ms") else float
            updates[name] = _number(changes[name], kind, name)
        new_config = replace(self.config, **updates)
        new_config.validate()
        fail_next = _number(changes.get("fail_next", self.fail_next), int, "fail_next")
        timeout_next = _number(changes.get("timeout_next", self.timeout_next), int, "timeout_next")
        if fail_next < 0 or timeout_next < 0:
            raise ValueError("fail_next and timeout_next must be >= 0")
        release = changes.get("release", False)
        if not isinstance(release, bool):
            raise ValueError("release must be true or false")
        self.config, self.fail_next, self.timeout_next = new_config, int(fail_next), int(timeout_next)
        if release:
            self.release_hung()

    def decide(self) -> Fate:
        """The fate of a new key: queued one-shot injections first, then the configured rates."""
        if self.fail_next > 0:
            self.fail_next -= 1
            return Fate.ERROR
        if self.timeout_next > 0:
            self.timeout_next -= 1
            return Fate.ACCEPT_THEN_HANG
        # One draw split into bands, so each rate means what it says when they are combined.
        draw = self.rng.random()
        c = self.config
        if draw < c.error_rate:
            return Fate.ERROR
        if draw < c.error_rate + c.reject_rate:
            return Fate.REJECT
        if draw < c.error_rate + c.reject_rate + c.accept_then_timeout_rate:
            return Fate.ACCEPT_THEN_HANG
        return Fate.ACCEPT

    def create_ticket(self, key: str, body: dict[str, Any], fingerprint: str) -> Ticket:
        self._seq += 1
        items = body.get("items")
        total = body.get("total")
        ticket = Ticket(
            ticket_id=f"SIM-{self._seq:06d}",
            order_id=key,
            total=total if isinstance(total, int) else 0,
            items=items if isinstance(items, list) else [],
            created_at=time.time(),
            fingerprint=fingerprint,
        )
        self.tickets[key] = ticket
        return ticket

    async def latency(self) -> None:
        """The configured latency; ``release`` (control, reset, shutdown) ends it early. A client that
        leaves does not: the POS goes on with what it received."""
        if self.config.latency_ms:
            await self.hang(self.config.latency_ms / 1000, asyncio.Event())

    async def hang(self, seconds: float, released: asyncio.Event) -> None:
        """Park a response until ``seconds`` pass or ``released`` is set (client gone, release, reset,
        shutdown)."""
        self._hung.add(released)
        try:
            await asyncio.wait_for(released.wait(), seconds)
        except TimeoutError:
            pass
        finally:
            self._hung.discard(released)

    def release_hung(self) -> None:
        for event in list(self._hung):
            event.set()


def _number(value: Any, kind: type[int] | type[float], name: str) -> float:
    # bool is an int subclass; `true` as a rate is a client bug worth reporting.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number")
    if kind is int and value != int(value):
        raise ValueError(f"{name} must be an integer")
    return kind(value)


class _Handler(tornado.web.RequestHandler):
    def initialize(self, state: SimulatorState) -> None:
        self.state = state
        self.entry: LoggedRequest | None = None

    def reply(self, status: int, payload: Any, outcome: str | None = None) -> None:
        if self.entry is not None:
            self.entry.status = status
            if outcome is not None:
                self.entry.outcome = outcome
            self.state.log_changed()
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(payload))

    def json_body(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.request.body or b"{}")
        except (ValueError, UnicodeDecodeError):
            return None
        return data if isinstance(data, dict) else None


class OrdersHandler(_Handler):
    def initialize(self, state: SimulatorState) -> None:
        super().initialize(state)
        self._released = asyncio.Event()

    def on_connection_close(self) -> None:
        # The client gave up (its timeout): stop holding the response it will never read.
        self._released.set()

    async def post(self) -> None:
        state = self.state
        key = self.request.headers.get("Idempotency-Key", "")
        # Logged on arrival, before the latency: "the POS has received the call" is observable at once.
        entry = self.entry = state.log_request("submit", key)
        await state.latency()
        body = self.json_body()
        if body is None:
            self.reply(400, {"error": "bad_request", "reason": "body must be a JSON object"}, "bad_request")
            return
        if not key:
            self.reply(400, {"error": "bad_request", "reason": "missing Idempotency-Key header"}, "bad_request")
            return
        if body.get("order_id", key) != key:
            self.reply(
                400, {"error": "bad_request", "reason": "order_id differs from Idempotency-Key"}, "bad_request"
            )
            return
        state.submissions += 1
        fingerprint = json.dumps(body, sort_keys=True, separators=(",", ":"))

        # From here to the reply there is no await, so two concurrent posts of one key cannot both create.
        existing = state.tickets.get(key)
        if existing is not None or key in state.rejected:
            seen = existing.fingerprint if existing is not None else state.rejected[key]
            if seen != fingerprint:
                self.reply(
                    409,
                    {"error": "mismatch", "reason": "Idempotency-Key reused with a different body"},
                    "mismatch",
                )
                return
            state.duplicates += 1
            if existing is None:
                self.reply(422, {"error": "rejected", "reason": "order was rejected"}, "duplicate")
                return
            self.reply(200, {"ticket_id": existing.ticket_id, "order_id": key, "duplicate": True}, "duplicate")
            return

        fate = state.decide()
        if fate is Fate.ERROR:
            state.errors_injected += 1
            self.reply(503, {"error": "unavailable", "reason": "injected error"}, "error")
            return
        if fate is Fate.REJECT:
            state.rejected_count += 1
            state.rejected[key] = fingerprint
            self.reply(422, {"error": "rejected", "reason": "injected rejection"}, "rejected")
            return
        ticket = state.create_ticket(key, body, fingerprint)
        entry.outcome = "created"
        state.log_changed()
        if fate is Fate.ACCEPT_THEN_HANG:
            state.timeouts_injected += 1
            # Usually the client has timed out and gone by now; tornado drops the late reply quietly.
            await state.hang(state.config.hang_ms / 1000, self._released)
        self.reply(201, {"ticket_id": ticket.ticket_id, "order_id": key, "duplicate": False})


class OrderLookupHandler(_Handler):
    async def get(self, key: str) -> None:
        self.state.lookups += 1
        self.entry = self.state.log_request("lookup", key)
        await self.state.latency()
        ticket = self.state.tickets.get(key)
        if ticket is None:
            self.reply(404, {"error": "not_found", "order_id": key}, "not_found")
            return
        self.reply(200, ticket.public(), "found")


class TicketsHandler(_Handler):
    def get(self) -> None:
        self.reply(200, [t.public() for t in self.state.tickets.values()])


class StatsHandler(_Handler):
    def get(self) -> None:
        self.reply(200, self.state.stats())


class LogHandler(_Handler):
    """``GET /_sim/log``; with any of ``key``, ``kind``, ``outcome``, ``in_flight`` (true/false) it first
    waits (up to ``wait_s``, default 30) for a request matching all of them, and answers 408 if none came."""

    async def get(self) -> None:
        filters = {name: self.get_query_argument(name, None) for name in ("key", "kind", "outcome", "in_flight")}
        wanted = {name: value for name, value in filters.items() if value is not None}
        if wanted:
            try:
                wait_s = float(self.get_query_argument("wait_s", "30"))
            except ValueError:
                self.reply(400, {"error": "bad_request", "reason": "wait_s must be a number"})
                return

            def match(r: LoggedRequest) -> bool:
                seen = {"key": r.key, "kind": r.kind, "outcome": r.outcome, "in_flight": str(r.status is None).lower()}
                return all(seen[name] == value for name, value in wanted.items())

            if not await self.state.wait_for_request(match, wait_s):
                self.reply(408, {"error": "timeout", "waited_for": wanted, **self.state.request_log()})
                return
        self.reply(200, self.state.request_log())


class ControlHandler(_Handler):
    def post(self) -> None:
        body = self.json_body()
        if body is None:
            self.reply(400, {"error": "bad_request", "reason": "body must be a JSON object"})
            return
        try:
            self.state.control(body)
        except ValueError as exc:
            self.reply(400, {"error": "bad_request", "reason": str(exc)})
            return
        self.reply(200, self.state.settings())


class ResetHandler(_Handler):
    def post(self) -> None:
        self.state.reset()
        self.reply(200, {"ok": True, **self.state.stats()})


def _log_request(handler: tornado.web.RequestHandler) -> None:
    # Injected 503s/422s are the simulator doing its job, so only real handler crashes (500) log as errors;
    # tornado's default would log every 5xx at ERROR and bury real problems in tests and benchmarks.
    status = handler.get_status()
    level = logging.ERROR if status == 500 else logging.INFO
    request = handler.request
    access_log.log(
        level,
        "%d %s %s (%s) %.2fms",
        status,
        request.method,
        request.uri,
        request.remote_ip,
        1000.0 * request.request_time(),
    )


def make_app(state: SimulatorState) -> tornado.web.Application:
    args = {"state": state}
    return tornado.web.Application(
        [
            (r"/orders", OrdersHandler, args),
            (r"/orders/([^/]+)", OrderLookupHandler, args),
            (r"/tickets", TicketsHandler, args),
            (r"/stats", StatsHandler, args),
            (r"/_sim/log", LogHandler, args),
            (r"/control", ControlHandler, args),
            (r"/reset", ResetHandler, args),
        ],
        log_function=_log_request,
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tableside pos-sim", description="Run the POS simulator.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8090, help="0 picks a free port (printed on start)")
    p.add_argument("--latency-ms", type=int, default=0)
    p.add_argument("--error-rate", type=float, default=0.0)
    p.add_argument("--reject-rate", type=float, default=0.0)
    p.add_argument("--accept-then-timeout-rate", type=float, default=0.0)
    p.add_argument("--hang-ms", type=int, default=15000)
    p.add_argument("--seed", type=int, default=None)
    return p


async def serve(host: str, port: int, config: SimulatorConfig) -> None:
    """Serve until SIGINT/SIGTERM."""
    state = SimulatorState(config)
    sockets = bind_sockets(port, host)
    server = HTTPServer(make_app(state))
    server.add_sockets(sockets)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # Announce only once the signal handlers are in, so a supervisor that stops us right away gets a clean exit.
    bound = sockets[0].getsockname()[1]
    print(f"pos-sim listening on http://{host}:{bound}", flush=True)
    try:
        await stop.wait()
    finally:
        server.stop()
        state.release_hung()
        await server.close_all_connections()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config = SimulatorConfig(
        latency_ms=args.latency_ms,
        error_rate=args.error_rate,
        reject_rate=args.reject_rate,
        accept_then_timeout_rate=args.accept_then_timeout_rate,
        hang_ms=args.hang_ms,
        seed=args.seed,
    )
    try:
        config.validate()
    except ValueError as exc:
        print(f"pos-sim: {exc}", file=sys.stderr)
        return 2
    asyncio.run(serve(args.host, args.port, config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
