"""Unit tests of the harness parts that need no tableside server: histogram merging across processes,
source-address spreading, the websocket client against both baselines (in-process), broadcast matching, v2
cart deltas (applied, counted by revision, gaps resynchronised by get_snapshot) and the v2 codec plumbing."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import random
import socket
from typing import Any

import pytest
import tornado.httpserver
from aiohttp import web
from tornado.netutil import bind_sockets

from bench import hist, proto
from bench.addrs import (
    NotLoopbackError,
    require_loopback_url,
    source_addresses,
    usable_source_addresses,
)
from bench.baselines import raw_server, socketio_server
from bench.client import Endpoint, Member, Table
from bench.delta import apply_delta
from bench.report import render_block_table
from bench.runner import target_codec
from bench.scenarios.cart import CartScenario
from bench.stats import Stats
from bench.tracking import BroadcastTracker
from bench.wsclient import OP_BINARY, OP_TEXT, encode_frame


def _record(values: list[float]) -> str:
    h = hist.new_histogram()
    for v in values:
        hist.record_seconds(h, v)
    return hist.encode(h)


def test_histograms_merge_across_processes() -> None:
    parts = [[(i % 97 + 1) / 1000 for i in range(k, 5000, 3)] for k in range(3)]
    with mp.get_context("spawn").Pool(3) as pool:
        encoded = pool.map(_record, parts)
    merged = hist.merge_encoded(encoded)
    single = hist.new_histogram()
    for part in parts:
        for v in part:
            hist.record_seconds(single, v)
    assert merged.get_total_count() == 5000
    for p in (50.0, 90.0, 99.0, 99.9, 100.0):
        assert merged.get_value_at_percentile(p) == single.get_value_at_percentile(p)
    stats = Stats.merged(
        [{"counters": {"a": 2}, "hists": {"x": e}, "first": {"s": 3.0}, "last": {"e": 4.0}} for e in encoded]
    )
    assert stats.counters["a"] == 6
    assert stats.hists["x"].get_total_count() == 5000
    assert hist.summary(stats.hists["x"])["count"] == 5000


def test_source_addresses_and_loopback_only() -> None:
    assert source_addresses(3) == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    assert source_addresses(300)[-1] == "127.0.1.45"
    assert usable_source_addresses(2) == ["127.0.0.2", "127.0.0.3"]
    assert require_loopback_url("http://127.0.0.9:8080") == "http://127.0.0.9:8080"
    require_loopback_url("http://localhost:1")
    for bad in ("http://10.0.0.1:80", "http://example.com", "http://[::1]:80", "ftp://127.0.0.1"):
        with pytest.raises(NotLoopbackError):
            require_loopback_url(bad)


def test_client_frames_are_masked_and_sized() -> None:
    for n in (0, 5, 125, 126, 65535, 65536):
        payload = bytes(range(256)) * (n // 256) + bytes(range(n % 256))
        frame = encode_frame(OP_TEXT, payload)
        assert frame[0] == 0x81 and frame[1] & 0x80
        length = frame[1] & 0x7F
        off = 2 if length < 126 else (4 if length == 126 else 10)
        key = frame[off : off + 4]
        body = bytes(b ^ key[i % 4] for i, b in enumerate(frame[off + 4 :]))
        assert body == payload


def test_broadcast_tracker_matches_any_order() -> None:
    got: list[float] = []
    tr = BroadcastTracker(got.append)
    for m in (1, 2):
        tr.baseline(m, 10)
    tr.on_ack(11, 100.0)  # ack first
    tr.on_receipt(1, 11, 100.5)
    tr.on_receipt(2, 12, 100.9)  # broadcast of 12 before its ack; covers 11 and 12 (coalesced)
    tr.on_receipt(1, 12, 101.0)
    assert sorted(round(x, 3) for x in got) == [0.5, 0.9]
    tr.on_ack(12, 100.2)
    assert sorted(round(x, 3) for x in got) == [0.5, 0.7, 0.8, 0.9]
    tr.on_receipt(1, 13, 102.0)  # never acked (server-side change)
    tr.finish()
    assert tr.unmatched == 1 and tr.matched == 4


def test_socketio_frames_decode() -> None:
    assert proto.sio_decode(False, b'0{"sid":"x"}')[0] == "open"
    assert proto.sio_decode(False, b"2")[0] == "ping"
    kind, data = proto.sio_decode(False, b'42["msg",{"type":"cart_updated","cart":{"revision":3}}]')
    assert kind == "event" and data["cart"]["revision"] == 3
    kind, data = proto.sio_decode(False, b'4312[{"type":"ack","id":"a","revision":4}]')
    assert kind == "ack" and data == {"type": "ack", "id": "a", "revision": 4}
    binary, payload = proto.sio_event("msgpack", 7, {"type": "ping", "id": "p"})
    assert binary and isinstance(payload, bytes)
    import msgpack

    assert msgpack.unpackb(payload) == {
        "type": 2,
        "data": ["msg", {"type": "ping", "id": "p"}],
        "nsp": "/",
        "id": 7,
    }


async def _exercise(member: Member) -> dict[str, Any]:
    welcome = await member.connect(timeout=5)
    assert welcome["type"] == "welcome"
    reply, _ = await member.request({"type": "add_item", "menu_item_id": "m-fries", "qty": 2})
    assert reply["type"] == "ack", reply
    await asyncio.wait_for(member.wait_revision(int(reply["revision"])), 5)
    cart = member.cart
    assert (
        cart is not None and cart["items"][0]["qty"] == 2 and cart["items"][0]["added_by"] == member.member_id
    )
    line = cart["items"][0]["line_id"]
    reply, _ = await member.request({"type": "update_item", "line_id": line, "qty": 0})
    assert reply["type"] == "ack"
    reply, _ = await member.request({"type": "update_item", "line_id": line, "qty": 1})
    assert reply == {"type": "error", "id": reply["id"], "code": "unknown_line", "message": "no such line"}
    pong, _ = await member.request({"type": "ping"})
    assert pong["type"] == "pong"
    return welcome


@pytest.mark.parametrize("codec", ["json", "msgpack"])
async def test_raw_baseline_nodelay_and_source_address(codec: proto.Codec) -> None:
    app = raw_server.make_app(nodelay=True)
    server = tornado.httpserver.HTTPServer(app)
    sockets = bind_sockets(0, "127.0.0.1")  # port 0: bound here, never picked and released
    server.add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    try:
        table = Table("t1", None)
        m = Member(table, 0, Endpoint("raw", f"http://127.0.0.1:{port}"), codec, "127.0.0.3", None)
        table.members.append(m)
        await _exercise(m)
        assert m.conn is not None and m.conn.transport is not None
        assert m.conn.transport.get_extra_info("sockname")[0] == "127.0.0.3"
        handler = app.wildcard_router.rules[0].target
        state = app.wildcard_router.rules[0].target_kwargs["state"]
        assert handler is raw_server.FanoutSocket
        socks = state.rooms["t1"]
        assert len(socks) == 1
        for s in socks:
            raw = s.ws_connection.stream.socket
            assert raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            assert raw.getpeername()[0] == "127.0.0.3"
        m.close()
    finally:
        server.stop()


@pytest.mark.parametrize("codec", ["json", "msgpack"])
async def test_socketio_baseline_room_broadcast(codec: proto.Codec) -> None:
    runner = web.AppRunner(socketio_server.make_app(codec), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]  # bound by the server itself
    try:
        table = Table("t9", None)
        ep = Endpoint("socketio", f"http://127.0.0.1:{port}")
        a = Member(table, 0, ep, codec, "127.0.0.2", None)
        b = Member(table, 1, ep, codec, "127.0.0.4", None)
        table.members += [a, b]
        await b.connect(timeout=5)
        await _exercise(a)
        await asyncio.wait_for(b.wait_revision(2), 5)
        assert b.broadcasts == 2 and a.broadcasts == 2
        a.close()
        b.close()
    finally:
        await runner.cleanup()


def test_failover_mechanics_against_two_raw_nodes() -> None:
    """Two raw-Tornado nodes stand in for a cluster: they share no state, so this only checks that the kill,
    the reconnect to the other node, the takeover timing and the final verification all run."""
    from bench import targets as tg
    from bench.runner import RunParams, run_target

    a = tg.start_baseline("raw")
    b = tg.start_baseline("raw")
    try:
        both = tg.Target(
            kind="raw", urls=a.urls + b.urls, server_pids=a.server_pids + b.server_pids, label="raw"
        )
        block = run_target(
            RunParams(scenario="failover", tables=2, members=2, duration=3.0, kill_after=1.0), both
        )
        f = block["figures"]
        assert f["applicable"] is True
        assert f["killed"]["pid"] == a.server_pids[0]
        assert f["affected_members"] >= 1 and f["takeover_s"] is not None and f["takeover_s"] > 0
        assert f["acked_ops"] > 0
        assert isinstance(f["acked_ops_lost"], int)
        assert f["verified_lines"] + f["acked_ops_lost"] + f["unverified"] > 0
    finally:
        a.stop()
        b.stop()


# -- v2 (cart_delta) ------------------------------------------------------------------------------------


def _line(n: int, qty: int = 1, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"line_id": f"L{n}", "menu_item_id": f"m{n % 4}", "name": f"Item {n % 4}",
                           "qty": qty, "unit_price": 100 * (n % 4 + 1), "note": "", "state": "pending",
                           "added_by": "u1"}  # fmt: skip
    out.update(extra)
    return out


def _cart(items: list[dict[str, Any]], revision: int) -> dict[str, Any]:
    return {"items": items, "total": sum(i["qty"] * i["unit_price"] for i in items), "cart_locked": False,
            "pending_order_id": None, "order_processing_status": "idle", "locked_by_member": None,
            "revision": revision, "last_updated": f"2026-01-01T00:00:{revision % 60:02d}Z"}  # fmt: skip


def test_bench_apply_delta_agrees_with_tableside() -> None:
    """bench.delta is the generator's copy of tableside.protocol.delta.apply_delta: same result on random
    histories (and the cart it starts from is left alone)."""
    from tableside.protocol.delta import apply_delta as server_apply
    from tableside.protocol.delta import cart_delta

    rng = random.Random(14)
    for _ in range(200):
        lines = [_line(n, rng.randint(1, 5)) for n in rng.sample(range(30), rng.randint(0, 8))]
        before = _cart(lines, rng.randint(1, 100))
        after_lines = [ln if rng.random() < 0.6 else _line(int(ln["line_id"][1:]), rng.randint(1, 9), unavailable=True)
                       for ln in lines if rng.random() < 0.8]  # fmt: skip
        after_lines += [_line(n) for n in range(30, 30 + rng.randint(0, 3))]
        after = _cart(after_lines, before["revision"] + 1)
        delta = cart_delta(before, after)
        frozen = repr(before)
        assert apply_delta(before, delta) == server_apply(before, delta) == after
        assert repr(before) == frozen


class _FakeConn:
    """Stands in for a WsConn: records what the member sends."""

    def __init__(self) -> None:
        self.closed = False
        self.sent: list[dict[str, Any]] = []

    def send_text(self, payload: str) -> None:
        msg = proto.decode("json", False, payload.encode())
        assert msg is not None
        self.sent.append(msg)

    def send_binary(self, payload: bytes) -> None:
        msg = proto.decode("msgpack", True, payload)
        assert msg is not None
        self.sent.append(msg)


def _feed(m: Member, msg: dict[str, Any]) -> None:
    binary, payload = proto.encode(m.codec, msg)
    m._on_frame(OP_BINARY if binary else OP_TEXT, payload if isinstance(payload, bytes) else payload.encode())


def _delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    from tableside.protocol.delta import cart_delta

    return {"type": "cart_delta", "revision": after["revision"], "base_revision": before["revision"],
            "changes": cart_delta(before, after)}  # fmt: skip


@pytest.mark.parametrize("codec", ["json-v2", "msgpack-v2"])
def test_v2_member_applies_deltas_counts_by_revision_and_resyncs_a_gap(codec: proto.Codec) -> None:
    table = Table("t1", None)
    m = Member(table, 0, Endpoint("tableside", "http://127.0.0.1:1"), codec, "127.0.0.1", None)
    table.members.append(m)
    conn = _FakeConn()
    m.conn = conn  # type: ignore[assignment]
    st = Stats()
    delivered: list[float] = []
    tr = BroadcastTracker(delivered.append, window_start=0.0)
    table.on_cart = CartScenario._on_cart(tr, 0.0, 1e12, st)  # the cart scenario's own hook

    c5 = _cart([_line(1), _line(2)], 5)
    _feed(m, {"type": "welcome", "member_id": "u1", "cart": c5})
    tr.baseline(m.key, m.revision)
    assert m.revision == 5
    for rev in (6, 7, 8, 9, 10):
        tr.on_ack(rev, 0.0)  # every revision below was produced by a bench operation

    c6 = _cart([_line(1, qty=3), _line(2), _line(3)], 6)
    _feed(m, _delta(c5, c6))  # applies
    assert m.cart == c6 and m.revision == 6 and m.deltas == 1 and m.resyncs == 0
    _feed(m, _delta(c5, c6))  # not newer than the cart held: ignored
    assert m.cart == c6 and m.resyncs == 0

    c7 = _cart([_line(2), _line(3)], 7)
    c8 = _cart([_line(2), _line(3), _line(4)], 8)
    _feed(m, _delta(c7, c8))  # 7 was missed: a gap
    assert m.resyncs == 1 and m.revision == 6 and m.cart == c6
    assert conn.sent[-1]["type"] == "get_snapshot"
    rid = conn.sent[-1]["id"]
    c9 = _cart([_line(3), _line(4)], 9)
    _feed(m, _delta(c8, c9))  # ignored while the snapshot is on its way (it will contain it)
    assert m.resyncs == 1 and len(conn.sent) == 1 and m.revision == 6
    _feed(m, {"type": "snapshot", "id": rid, "cart": c9})
    assert m.cart == c9 and m.revision == 9
    c10 = _cart([_line(4, qty=2)], 10)
    _feed(m, _delta(c9, c10))  # applies on top of the snapshot
    assert m.cart == c10 and m.revision == 10

    # deliveries: every revision 6..10 once; frames counted: the deltas 6 and 10 (received while no
    # snapshot was awaited and newer than the cart), the snapshot counted as a resync, not as a frame
    assert tr.matched == 5 and len(delivered) == 5
    assert st.counters["deliveries"] == 2
    assert st.counters["snapshot_resyncs_in_window"] == 1
    assert m.deltas == m.broadcasts == 5 and m.broadcast_bytes > 0


def test_v2_member_asks_again_after_a_refused_snapshot_and_takes_a_full_cart_updated() -> None:
    table = Table("t1", None)
    m = Member(table, 0, Endpoint("tableside", "http://127.0.0.1:1"), "json-v2", "127.0.0.1", None)
    conn = _FakeConn()
    m.conn = conn  # type: ignore[assignment]
    events: list[dict[str, Any]] = []
    table.on_event = lambda _m, msg, _t: events.append(msg)
    c1, c2, c3 = (_cart([_line(i) for i in range(n)], n) for n in (1, 2, 3))
    _feed(m, {"type": "welcome", "member_id": "u1", "cart": c1})
    _feed(m, _delta(c2, c3))  # gap
    assert m.resyncs == 1
    _feed(m, {"type": "error", "id": conn.sent[-1]["id"], "code": "rate_limited", "message": "slow down"})
    assert events and events[-1]["code"] == "rate_limited"
    _feed(m, _delta(c2, c3))  # still a gap: asks again
    assert m.resyncs == 2 and len(conn.sent) == 2
    # the server may send a whole cart_updated to a v2 socket (resynchronising a forwarded stream)
    _feed(m, {"type": "cart_updated", "cart": c3})
    assert m.cart == c3 and m.revision == 3


def test_codecs_v1_unchanged_v2_added() -> None:
    """json / msgpack stay v1: the same subprotocols as before, no deltas expected."""
    assert proto.SUBPROTOCOL["json"] == "tableside.v1.json"
    assert proto.SUBPROTOCOL["msgpack"] == "tableside.v1.msgpack"
    assert proto.SUBPROTOCOL["json-v2"] == "tableside.v2.json"
    assert proto.SUBPROTOCOL["msgpack-v2"] == "tableside.v2.msgpack"
    assert [proto.v1_codec(c) for c in proto.CODECS] == ["json", "msgpack", "json", "msgpack"]
    assert [proto.frame_kind(c) for c in proto.CODECS] == [
        "cart_updated",
        "cart_updated",
        "cart_delta",
        "cart_delta",
    ]
    assert proto.encode("json-v2", {"a": 1}) == proto.encode("json", {"a": 1}) == (False, '{"a":1}')
    assert proto.encode("msgpack-v2", {"a": 1}) == proto.encode("msgpack", {"a": 1})
    # the baselines have no v2: they are driven with the v1 codec of the same encoding
    assert target_codec("json-v2", "raw") == "json" and target_codec("msgpack-v2", "socketio") == "msgpack"
    assert target_codec("json-v2", "tableside") == "json-v2" and target_codec("msgpack", "raw") == "msgpack"


def test_summary_names_the_frame_kind() -> None:
    def block(target: str, codec: str) -> dict[str, Any]:
        return {"target": target, "figures": {"codec": codec, "broadcast_frame_kind": proto.frame_kind(codec),
                                              "broadcast_frames_per_s": 10.0, "broadcast_frame_bytes_avg": 300.0,
                                              "snapshot_resyncs": 4, "snapshot_resyncs_in_window": 0}}  # fmt: skip

    v1 = render_block_table(
        {"scenario": "cart", "targets": [block("tableside", "json"), block("raw", "json")]}
    )
    assert "| cart_updated frames/s |" in v1 and "| cart_updated frame bytes (avg) |" in v1
    assert "codec" not in v1 and "resync" not in v1
    old = render_block_table({"scenario": "cart", "targets": [{"target": "tableside", "figures": {}}]})
    assert "| cart_updated frames/s |" in old  # results written before v2
    mixed = render_block_table(
        {"scenario": "cart", "targets": [block("tableside", "json-v2"), block("raw", "json")]}
    )
    assert "| cart_delta / cart_updated frames/s |" in mixed
    assert "| codec | json-v2 | json |" in mixed
    assert "| snapshot resyncs (v2 gaps) total / in window | 4 / 0 | 4 / 0 |" in mixed
