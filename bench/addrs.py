"""Loopback-only targets and source-address spreading.

Every client socket binds to one of 127.0.0.2, 127.0.0.3, … before connecting. Linux routes the whole
127.0.0.0/8 to ``lo`` without any configuration, and each source address has its own ephemeral-port range,
so K addresses allow about K × 28 000 concurrent connections to one server port instead of 28 000.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


class NotLoopbackError(ValueError):
    pass


def require_loopback_url(url: str) -> str:
    """Return ``url`` unchanged if its host is a literal 127.0.0.0/8 address or ``localhost``.

    The harness never generates load against anything but this machine."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https", "ws", "wss"):
        raise NotLoopbackError(f"unsupported URL scheme in {url!r}")
    if host == "localhost":
        return url
    try:
        addr = ipaddress.ip_address(host)
    except ValueError as exc:
        raise NotLoopbackError(f"{url!r}: host must be a literal 127.x.y.z address or localhost") from exc
    if addr not in LOOPBACK:
        raise NotLoopbackError(f"{url!r} is not on the loopback network 127.0.0.0/8; refusing to load it")
    return url


def source_addresses(count: int, first: int = 2) -> list[str]:
    """``count`` addresses 127.0.0.<first>, … (wrapping into the next octets when needed)."""
    if count < 1:
        raise ValueError("count must be >= 1")
    if count > 60_000:
        raise ValueError("at most 60000 source addresses")
    base = int(ipaddress.ip_address("127.0.0.0")) + first
    out: list[str] = []
    for i in range(count):
        addr = ipaddress.ip_address(base + i)
        if addr not in LOOPBACK:  # pragma: no cover - guarded by the count bound
            raise ValueError("source address range leaves 127.0.0.0/8")
        out.append(str(addr))
    return out


def bindable(addr: str) -> bool:
    """True if a TCP socket can bind to ``addr`` (port chosen by the kernel)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((addr, 0))
        return True
    except OSError:
        return False


def usable_source_addresses(count: int) -> list[str]:
    """The first ``count`` spreading addresses that can be bound; falls back to 127.0.0.1 alone."""
    addrs = [a for a in source_addresses(count) if bindable(a)]
    return addrs or ["127.0.0.1"]


PER_ADDRESS = 500


def addresses_needed(connections: int, per_address: int = PER_ADDRESS) -> int:
    """Source addresses for a run: at least 4, one per ``per_address`` connections, at most 250.

    The ephemeral-port range alone would allow ~28,000 connections per address; 500 keeps each address
    below typical per-IP join limits too (tableside allows bursts of 600 joins per IP), as guests' phones
    come from many addresses in real life."""
    return min(250, max(4, -(-connections // per_address)))


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
