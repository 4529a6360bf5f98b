"""Unit tests of the harness parts that need no tableside server: histogram merging across processes,
source-address spreading, the websocket client against both baselines (in-process), broadcast matching."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
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
from bench.stats import Stats
from bench.tracking import BroadcastTracker
from bench.wsclient import OP_TEXT, encode_frame


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
