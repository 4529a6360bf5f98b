"""Broadcast delivery latency: from the moment a member sends a cart operation to the moment each member of
the table (the sender included) receives the ``cart_updated`` (v1) or ``cart_delta`` (v2) that contains it.

Matching rule (robust to either order of ack and broadcast, and to coalesced broadcasts): the ``ack`` of an
operation carries the cart ``revision`` the operation produced. All members of a table live in the same
worker process, so the tracker keeps ``revision -> send time`` as acks arrive. A member receiving a cart with
revision R has received every revision in (its previous revision, R]; each of those counts as delivered to
that member at the receive time. A receipt that arrives before its operation's ack (the server broadcast
first) is parked and matched when the ack arrives. Revisions that no bench operation produced (server-side
changes) are never acked and are dropped from the park after a bound; they are reported as unmatched.

v2 (``cart_delta``): the same rule with the delta's ``revision`` (a delta the member applied means it holds
the cart at that revision, so every revision up to it was received, as with a coalesced ``cart_updated``).
A delta the member could not apply (a gap) is no receipt: it asks ``get_snapshot``, and the snapshot's
revision is the receipt, at the time the answer arrived (``bench.client``)."""

from __future__ import annotations

from collections.abc import Callable

MAX_PARKED = 512
MAX_GAP = 10_000


class BroadcastTracker:
    def __init__(self, record: Callable[[float], None], window_start: float = 0.0) -> None:
        self._record = record
        self.window_start = window_start  # operations sent before this are not recorded (warm-up)
        self.sent: dict[int, float] = {}
        self.parked: dict[int, list[float]] = {}
        self.seen: dict[int, int] = {}
        self.matched = 0
        self.unmatched = 0

    def baseline(self, member: int, revision: int) -> None:
        """The revision a member starts from (from its welcome / snapshot)."""
        self.seen[member] = max(revision, self.seen.get(member, revision))

    def on_ack(self, revision: int, sent_at: float) -> None:
        self.sent[revision] = sent_at
        parked = self.parked.pop(revision, None)
        if parked:
            for t in parked:
                self._deliver(sent_at, t)

    def on_receipt(self, member: int, revision: int, t: float) -> None:
        last = self.seen.get(member)
        if last is None:
            last = revision - 1
        if revision <= last:
            return
        start = max(last + 1, revision - MAX_GAP)
        for rev in range(start, revision + 1):
            s = self.sent.get(rev)
            if s is None:
                self.parked.setdefault(rev, []).append(t)
            else:
                self._deliver(s, t)
        self.seen[member] = revision
        if len(self.sent) > 64:
            self._prune()
        if len(self.parked) > MAX_PARKED:
            for rev in sorted(self.parked)[: len(self.parked) - MAX_PARKED // 2]:
                self.unmatched += len(self.parked.pop(rev))

    def _deliver(self, sent_at: float, t: float) -> None:
        self.matched += 1
        if sent_at >= self.window_start:
            self._record(t - sent_at)

    def _prune(self) -> None:
        if not self.seen:
            return
        floor = min(self.seen.values())
        for rev in [r for r in self.sent if r <= floor]:
            del self.sent[rev]
        if len(self.sent) > 4096:  # a member stopped receiving: forget the oldest half
            for rev in sorted(self.sent)[:2048]:
                del self.sent[rev]

    def finish(self) -> None:
        self.unmatched += sum(len(v) for v in self.parked.values())
        self.parked.clear()
