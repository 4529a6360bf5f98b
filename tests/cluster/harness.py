"""A real cluster for tests: node processes (``python -m tableside serve``) against one throwaway Postgres
database and a ``redis-server`` child this harness owns on a free port (so tests may kill and restart it),
plus the POS simulator. Phones are websocket clients that reconnect to any node, as the guest page does."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any

import tornado.websocket

from tests.client import WsClient, kitchen_screen, t
from tests.procs import Proc, start_tableside

ADMIN = "cluster-test-admin-pw"
CLOSE_RELOCATED = 4002


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisChild:
    """``redis-server`` on a free port, nothing on disk; ``kill`` / ``start`` again on the same port."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed (Debian package redis-server)"
        self.binary = binary
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="tableside-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir, "--logfile", os.path.join(self.dir, "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + t(10)
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"redis-server did not start on port {self.port}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(t(10))

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class Node:
    name: str
    proc: Proc | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def live(self) -> Proc:
        assert self.proc is not None, f"node {self.name} is not running"
        return self.proc

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.proc.poll() is None


class Cluster:
    def __init__(self, db: str, redis: RedisChild, pos_url: str, names: tuple[str, ...] = ("a", "b", "c"),
                 **env: str) -> None:
        self.db = db
        self.redis = redis
        self.pos_url = pos_url
        self.env = env
        self.nodes = {n: Node(n) for n in names}
        self._staff_token: str | None = None
        self._qr: dict[str, str] = {}

    # -- processes ------------------------------------------------------------------------------------
    def start(self, name: str, *, module: str = "tableside", demo: bool = False, **env: str) -> Proc:
        node = self.nodes[name]
        if node.proc is not None:
            node.proc.stop()
        node.proc = start_tableside(
            self.db,
            module=module,
            demo=demo,
            TABLESIDE_NODE_ID=name,
            TABLESIDE_REDIS_URL=self.redis.url,
            TABLESIDE_ADMIN_PASSWORD=ADMIN,
            TABLESIDE_DEMO__TABLES="6",
            TABLESIDE_POS__ADAPTER="http",
            TABLESIDE_POS__URL=self.pos_url,
            TABLESIDE_POS__TIMEOUT_S="60",
            TABLESIDE_POS__BACKOFF_S="0.2",
            TABLESIDE_LIMITS__MESSAGES_PER_SECOND="1000",
            TABLESIDE_LIMITS__BURST="1000",
            TABLESIDE_CLUSTER__LEASE_TTL_S="2",
            TABLESIDE_CLUSTER__RENEW_INTERVAL_S="0.5",
            **{**self.env, **env},
        )
        return node.proc

    def start_all(self) -> None:
        first = True
        for name in self.nodes:
            self.start(name, demo=first)  # one node seeds the demo restaurant; the others find it
            first = False

    def kill9(self, name: str) -> None:
        self.nodes[name].live.kill9()

    def sigstop(self, name: str) -> None:
        self.nodes[name].live.proc.send_signal(signal.SIGSTOP)

    def sigcont(self, name: str) -> None:
        self.nodes[name].live.proc.send_signal(signal.SIGCONT)

    def stop_all(self) -> None:
        for node in self.nodes.values():
            if node.proc is not None:
                if node.proc.proc.poll() is None:
                    node.proc.proc.send_signal(signal.SIGCONT)
                node.proc.stop()

    def running(self) -> list[str]:
        return [n for n, node in self.nodes.items() if node.running]

    def any_node(self, not_: str | None = None) -> str:
        for name in self.running():
            if name != not_:
                return name
        raise AssertionError("no node running")

    # -- HTTP -----------------------------------------------------------------------------------------
    def call(self, name: str, path: str, body: Any = None, token: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.nodes[name].live.base + path, data=data, headers=headers)
        with urllib.request.urlopen(req, timeout=t(10)) as resp:
            return json.loads(resp.read())

    def staff_token(self, name: str | None = None) -> str:
        node = name or self.any_node()
        return str(self.call(node, "/api/staff/login", {"username": "admin", "password": ADMIN})["token"])

    def qr(self, table_id: str) -> str:
        if table_id not in self._qr:
            rows = self.call(self.any_node(), "/api/staff/tables", token=self.staff_token())
            for row in rows:
                self._qr[row["table_id"]] = row["join_url"].rsplit("/", 1)[1]
        return self._qr[table_id]

    def join(self, table_id: str = "T001", name: str | None = None) -> dict[str, Any]:
        node = name or self.any_node()
        return dict(self.call(node, "/api/join", {"table_id": table_id, "qr": self.qr(table_id)}))

    def health(self, name: str) -> dict[str, Any]:
        return dict(self.call(name, "/healthz"))

    def board(self, name: str) -> list[dict[str, Any]]:
        return list(self.call(name, "/api/staff/board", token=self.staff_token(name)))

    async def kitchen(self, name: str, since: int | None = None) -> WsClient:
        return await kitchen_screen(self.nodes[name].live.ws, self.staff_token(name), since)

    def owner(self, group_id: str) -> str | None:
        """Who holds the group's lease, read straight from Redis."""
        with socket.create_connection(("127.0.0.1", self.redis.port), timeout=2) as s:
            key = f"ts:lease:{group_id}"
            s.sendall(f"*2\r\n$3\r\nGET\r\n${len(key)}\r\n{key}\r\n".encode())
            reply = s.recv(256)
        if reply.startswith(b"$-1"):
            return None
        return reply.split(b"\r\n")[1].decode()


class Phone:
    """One guest: a token and a websocket to some node; ``ensure`` reconnects (to any running node) after
    the server closed it (relocation) or its node died, and waits for the welcome."""

    def __init__(self, cluster: Cluster, joined: dict[str, Any], node: str) -> None:
        self.cluster = cluster
        self.token = str(joined["token"])
        self.member_id = str(joined["member_id"])
        self.group_id = str(joined["group_id"])
        self.node = node
        self.ws: WsClient | None = None
        self.reconnects = 0
        # Request ids unique for the member across reconnects: ``WsClient.next_id`` starts again on every
        # new socket (and its ``id(self) % 10000`` prefix repeats), and the owner answers a request id it
        # has acked before from memory without applying the op again (the resend rule).
        self._rid_prefix = uuid.uuid4().hex[:10]
        self._rids = itertools.count(1)

    def next_id(self) -> str:
        return f"{self._rid_prefix}-{next(self._rids)}"

    async def connect(self, node: str | None = None, timeout: float = 15.0) -> WsClient:
        if node is not None:
            self.node = node
        deadline = asyncio.get_running_loop().time() + t(timeout)
        last: Exception | None = None
        while asyncio.get_running_loop().time() < deadline:
            if not self.cluster.nodes[self.node].running:
                self.node = self.cluster.any_node()
            try:
                ws = await WsClient.connect(self.cluster.nodes[self.node].live.ws, self.token)
                await ws.wait_type("welcome", timeout=5)
                self.ws = ws
                return ws
            except (AssertionError, OSError, tornado.websocket.WebSocketClosedError,
                    tornado.httpclient.HTTPClientError) as exc:
                last = exc
                await asyncio.sleep(0.1)
                running = self.cluster.running()
                self.node = running[(running.index(self.node) + 1) % len(running)] if self.node in running else running[0]
        raise AssertionError(f"phone could not reconnect: {last!r}")

    async def ensure(self) -> WsClient:
        if self.ws is None or self.ws.closed.is_set():
            if self.ws is not None:
                self.reconnects += 1
            return await self.connect()
        return self.ws

    async def request(self, message: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        """Send with a request id; resend the same id after a reconnect until it is answered (the
        protocol's resend rule), so at-most-once forwarding never loses an op the client cares about."""
        rid = self.next_id()
        deadline = asyncio.get_running_loop().time() + t(timeout)
        while True:
            ws = await self.ensure()
            start = len(ws.messages)
            try:
                await ws.send({**message, "id": rid})
                return await ws.wait_for(lambda m: m.get("id") == rid, timeout=3, start=start)
            except (AssertionError, tornado.websocket.WebSocketClosedError):
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.05)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


def sim_log(pos_base: str, query: str = "") -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"{pos_base}/_sim/log{query}", timeout=t(40)) as resp:
            return dict(json.loads(resp.read()))
    except urllib.error.HTTPError as err:
        raise AssertionError(f"POS simulator: {err.read()[-2000:]!r}") from None
