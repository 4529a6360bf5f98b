"""Configuration: ``config.yaml`` < ``TABLESIDE_*`` environment (nested with ``__``) < CLI flags."""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)


class DemoSettings(BaseModel):
    tables: int = Field(12, ge=1, le=100_000)
    restaurant_id: int = 1
    restaurant_name: str = "Tableside Demo Bistro"


class LimitSettings(BaseModel):
    messages_per_second: float = Field(20.0, gt=0)
    burst: int = Field(50, ge=1)
    max_frame_bytes: int = Field(65536, ge=1024, le=1 << 20)
    max_cart_lines: int = Field(100, ge=1)
    max_members_per_group: int = Field(50, ge=1)
    max_connections: int = Field(50_000, ge=1)
    join_per_minute_per_ip: int = Field(600, ge=1)
    # Joins (new members) per table and QR secret; a guest re-opening the link it joined with is not counted.
    join_per_minute_per_table: int = Field(120, ge=1)
    # Customer account registrations (POST /api/users/register) per client IP.
    register_per_minute_per_ip: int = Field(10, ge=1)


class GuestSettings(BaseModel):
    """Guest sessions (seed 001); env names are ``TABLESIDE_GUEST__<FIELD>``."""

    session_ttl_hours: float = Field(24.0, gt=0)  # sliding: every access (at most once a minute) renews it
    sessions_per_minute_per_ip: int = Field(30, ge=1)  # POST /api/guest/session per client IP
    max_cart_lines: int = Field(100, ge=1, le=100)


class HttpSettings(BaseModel):
    """Connection-level limits against slow and abusive clients (slowloris, descriptor exhaustion).

    See docs/architecture.md, "Connection limits". Env names are ``TABLESIDE_HTTP__<FIELD>``."""

    # A new connection must deliver its complete request head within this (then it is closed).
    header_timeout_s: float = Field(10.0, gt=0)
    # A keep-alive connection may wait this long for its next request (head included).
    idle_timeout_s: float = Field(60.0, gt=0)
    # Longest pause while a request body is read.
    body_timeout_s: float = Field(30.0, gt=0)
    # Open connections (HTTP and websockets) per client IP (IPv6: per /64), counted at accept; over it:
    # closed at once.
    max_connections_per_ip: int = Field(1000, ge=1)
    # Open guest websockets per guest token (one phone, a few tabs); over it: HTTP 429 too_many_connections.
    max_websockets_per_token: int = Field(5, ge=1)
    # Descriptors kept free below RLIMIT_NOFILE: untrusted clients are refused at (limit - reserve_fds)
    # open connections, so the database pool, files and trusted clients still find descriptors.
    reserve_fds: int = Field(128, ge=16)
    # Clients in these networks (health checks, staff, a local reverse proxy) skip the per-IP cap and may
    # use the reserve. A proxy's clients all share its address: put the proxy here and cap at the proxy.
    trusted_networks: list[str] = Field(default_factory=lambda: ["127.0.0.1/32", "::1/128"])
    # When accept fails for lack of descriptors (EMFILE/ENFILE): stop accepting this long, then retry.
    accept_backoff_s: float = Field(0.5, gt=0)

    @field_validator("trusted_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for net in value:
            ipaddress.ip_network(net, strict=False)  # ValueError names the bad entry
        return value


class PosSettings(BaseModel):
    adapter: Literal["dummy", "http"] = "dummy"
    url: str | None = None
    latency_ms: int = Field(3000, ge=0)
    success_rate: float = Field(0.9, ge=0.0, le=1.0)
    timeout_s: float = Field(10.0, gt=0)
    max_retries: int = Field(3, ge=0)
    backoff_s: float = Field(2.0, ge=0)


class TokenSettings(BaseModel):
    ttl_hours: float = Field(12.0, gt=0)
    staff_ttl_hours: float = Field(12.0, gt=0)
    # A customer account's login session (TABLESIDE_TOKENS__USER_TTL_HOURS; default 30 days).
    user_ttl_hours: float = Field(720.0, gt=0)
    # An open kitchen screen's staff session is checked this often: a session ended elsewhere (the CLI's
    # `staff passwd`/`remove`, another node) closes the screen within this interval.
    staff_recheck_s: float = Field(30.0, gt=0)


class TillSettings(BaseModel):
    """Till order sessions (docs/till.md); env names are ``TABLESIDE_TILL__<FIELD>``."""

    # An ``active`` session with no change for this long is parked (``pending_logout``) by the cleanup loop.
    stale_minutes: float = Field(120, gt=0)


class PaymentSettings(BaseModel):
    """The payment adapter of reservations (docs/reservations.md); env ``TABLESIDE_PAYMENTS__<FIELD>``."""

    adapter: Literal["dummy"] = "dummy"
    latency_ms: int = Field(1500, ge=0)
    success_rate: float = Field(0.9, ge=0.0, le=1.0)
    # A charge that has not answered after this long is looked up (the payment id is the idempotency key).
    timeout_s: float = Field(10.0, gt=0)
    # How often an unknown outcome is looked up until it is known.
    lookup_interval_s: float = Field(2.0, gt=0)


class ReservationSettings(BaseModel):
    """Reservations (docs/reservations.md); env ``TABLESIDE_RESERVATIONS__<FIELD>``."""

    # A pending (unpaid) reservation holds its slot this long, then the cleanup cancels it.
    hold_minutes: float = Field(10, gt=0)
    # A waitlist offer holds the freed slot for the offered customer this long.
    offer_minutes: float = Field(10, gt=0)
    slot_step_minutes: int = Field(30, ge=1, le=1440)
    max_days_ahead: int = Field(180, ge=0)
    # How often the cleanup loop expires holds and offers.
    sweep_interval_s: float = Field(15, gt=0)
    # How long a day's cached slots live in Redis (also invalidated on every change).
    slot_cache_ttl_s: int = Field(600, ge=1)


class ClusterSettings(BaseModel):
    """Several nodes through Redis (docs/cluster.md). Env names are ``TABLESIDE_CLUSTER__<FIELD>``."""

    # The routing lease of a table group's owner lives this long in Redis unless renewed. A dead owner's
    # groups move after at most this (sooner when its Redis connection is seen gone).
    lease_ttl_s: float = Field(5.0, gt=0)
    # How often an owner renews its leases (and a forwarding node re-checks who owns its groups).
    renew_interval_s: float = Field(1.0, gt=0)
    # A request forwarded to another node (HTTP cart read, leave, board row) waits this long for its answer.
    forward_timeout_s: float = Field(2.0, gt=0)
    # One Redis command waits this long; past it Redis counts as down for that request.
    redis_timeout_s: float = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _renew_before_expiry(self) -> ClusterSettings:
        if self.renew_interval_s * 2 > self.lease_ttl_s:
            raise ValueError("renew_interval_s must be at most half of lease_ttl_s")
        return self


def default_node_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TABLESIDE_",
        env_nested_delimiter="__",
        extra="ignore",
    )

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    public_url: str | None = None  # what join URLs start with; default http://{host}:{port}
    database_url: str | None = None  # None: embedded Postgres under data_dir
    data_dir: Path = Path("./var")
    admin_password: str | None = None
    allowed_origins: list[str] = Field(default_factory=list)  # extra Origins for the websocket check
    cookie_secure: bool = False  # True behind HTTPS; SameSite/HttpOnly are always set
    idle_actor_seconds: float = Field(300.0, gt=0)
    # A table group's cart batches are stored as op records; every this many changes a full snapshot.
    snapshot_every: int = Field(64, ge=1)
    group_idle_hours: float = Field(6.0, gt=0)  # fail-safe: close sittings idle this long
    cleanup_interval_s: float = Field(300.0, gt=0)
    log_level: str = "info"
    demo: DemoSettings = Field(default_factory=DemoSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    guest: GuestSettings = Field(default_factory=GuestSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    pos: PosSettings = Field(default_factory=PosSettings)
    tokens: TokenSettings = Field(default_factory=TokenSettings)
    # This process's name in a cluster (TABLESIDE_NODE_ID; default hostname-pid).
    node_id: str = Field(default_factory=default_node_id, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    # Redis for leases, routing and pub/sub (TABLESIDE_REDIS_URL); None: one node on its own, no Redis.
    redis_url: str | None = None
    # Bind the listen port with SO_REUSEPORT (set for the node processes of `serve --workers N`).
    reuse_port: bool = False
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)
    till: TillSettings = Field(default_factory=TillSettings)
    payments: PaymentSettings = Field(default_factory=PaymentSettings)
    reservations: ReservationSettings = Field(default_factory=ReservationSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_file = os.environ.get("TABLESIDE_CONFIG_FILE", "config.yaml")
        return (
            init_settings,
            env_settings,
            YamlConfigSettingsSource(settings_cls, yaml_file=yaml_file),
        )

    def model_post_init(self, context: Any) -> None:
        # Resolve once, outside the event loop: the embedded Postgres needs an absolute data path.
        self.data_dir = self.data_dir.absolute()

    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        return f"http://{self.host}:{self.port}"


class ConfigError(Exception):
    """A configuration the user must fix (bad value, missing config file). The message is one line,
    meant for stderr without a traceback."""


class StartupError(Exception):
    """The server cannot start for a reason outside the program (database unreachable, port taken).
    The message is one line, meant for stderr without a traceback."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type when it has none), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _env_name(loc: tuple[int | str, ...]) -> str:
    return "TABLESIDE_" + "__".join(str(part) for part in loc).upper()


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming each bad setting, its environment variable and what is wrong with it."""
    parts = []
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        name = ".".join(str(p) for p in loc) or "settings"
        got = err.get("input")
        shown = f" (got {got!r})" if isinstance(got, (str, int, float)) else ""
        parts.append(f"{name} ({_env_name(loc)}): {err.get('msg', 'invalid')}{shown}")
    return "invalid setting " + "; ".join(parts)


def load_settings(config_file: str | None = None, **overrides: Any) -> Settings:
    """Build settings; ``overrides`` are CLI flags (None values mean 'not given').

    Raises ConfigError for an explicit ``config_file`` that does not exist or cannot be read, and for
    invalid values from any source. (The default ./config.yaml, or TABLESIDE_CONFIG_FILE, may be absent.)"""
    if config_file:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"config file {config_file} not found")
        os.environ["TABLESIDE_CONFIG_FILE"] = config_file
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from exc
    except (OSError, yaml.YAMLError) as exc:  # an unreadable or malformed YAML file
        raise ConfigError(f"cannot read the configuration file: {first_line(exc)}") from exc
