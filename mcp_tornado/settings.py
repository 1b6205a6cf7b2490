"""Every option of the gateway: its environment variable, its default, and how it is parsed.

`Settings.from_environ(environ, **overrides)` takes the environment as an argument, so tests
need no monkeypatching; flags from the command line arrive as overrides and win. A bad value
raises `SettingsError` naming the variable; only `cli.py` turns that into an exit.
"""

from __future__ import annotations

import dataclasses
import resource
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mcp.server.transport_security import TransportSecuritySettings


class SettingsError(ValueError):
    """A setting that cannot be used; the message names the variable."""


@dataclasses.dataclass(frozen=True)
class Settings:
    jwt_secret: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    servers_dir: Path = Path("servers.d")
    # Seconds of inactivity before a session is reaped, and how often the reaper looks.
    session_idle_timeout: float = 1800.0
    session_cleanup_interval: float = 300.0
    # A comment line on every idle SSE stream this often, so proxies never cut it.
    sse_keepalive_interval: float = 15.0
    # Live sessions per hosted server; past it the longest-idle session is evicted.
    max_sessions_per_server: int = 10_000
    # Live sessions of one user (token userId, else apiKey) per server: one caller cannot crowd out the rest.
    max_sessions_per_user: int = 1_000
    # Events kept per session for replay after Last-Event-ID.
    event_buffer_size: int = 1_000
    max_body_bytes: int = 4 * 1024 * 1024
    # Threads per hosted server for sync tool handlers: a blocking server only starves itself.
    handler_threads: int = 8
    # DNS-rebinding protection: Host and Origin values accepted ("name:*" allows any port).
    # Empty means: the loopback names when listening on loopback, no check otherwise.
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    # -- what one client can make us hold (issue: hostile clients) --------------------------
    # Seconds to receive a request's headers; also how long a kept-alive connection may sit
    # idle between requests (Tornado uses one timer for both). Slowloris gets no more.
    header_timeout: float = 30.0
    # Seconds to receive a whole request body once its headers are in.
    body_timeout: float = 30.0
    # Open client connections; past it the longest-idle one (no request in progress) is closed
    # to make room, and when none is idle the new one is closed at once. None: from the
    # process's descriptor limit (see `max_connections_for`).
    max_connections: int | None = None
    # The reconnection delay SSE streams suggest (`retry:` on their priming event): how soon a
    # client comes back for a stream the server closed (SSE polling) or lost.
    sse_retry: float = 1.0
    # Unsent bytes an SSE reader may fall behind by, and seconds a write may wait unsent, before
    # that reader is dropped; its events stay buffered for a Last-Event-ID resume.
    sse_max_buffer_bytes: int = 1024 * 1024
    sse_max_lag: float = 30.0
    # Bytes of events kept per session for replay (beside the count, `event_buffer_size`).
    event_buffer_bytes: int = 4 * 1024 * 1024
    # JSON-RPC requests in flight at once, per session and per hosted server: past it, 429.
    max_in_flight_per_session: int = 64
    max_in_flight_per_server: int = 1024
    # Requests in one JSON-RPC batch (2024-11-05 and 2025-03-26 only): past it, 400.
    max_batch: int = 64
    # Threads written off per server (sync handlers still running past their timeout); past it
    # the server's sync calls fail at once until some of them return.
    max_abandoned_threads: int = 32
    # Seconds SIGTERM waits for in-flight calls before ending sessions and exiting anyway.
    shutdown_grace: float = 10.0
    # -- tokens (issue: who gets in) ----------------------------------------------------------
    # Earlier HS256 secrets still accepted while tokens signed with them live out (rotation).
    jwt_previous_secrets: tuple[str, ...] = ()
    # Asymmetric verification keys: a PEM public key file, and/or a JWKS (file path or URL).
    jwt_public_key_file: Path | None = None
    jwt_jwks: str | None = None
    # Claims checked when set: `iss` must equal the issuer, `aud` must contain the audience.
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    # Clock skew tolerated between the issuer and us, seconds.
    jwt_leeway: float = 5.0
    # Longest lifetime a token may claim (exp - iat, or exp - now without iat); `exp` is required.
    jwt_max_lifetime: float = 7 * 86400.0
    # A file of revoked `jti` values, one per line; re-read when it changes.
    jwt_revoked_file: Path | None = None
    # -- OAuth 2.1 resource-server discovery (RFC 9728) ---------------------------------------
    # Authorization servers that issue tokens for this gateway; empty: tokens come from the operator.
    oauth_authorization_servers: tuple[str, ...] = ()
    # The gateway's public base URL (as clients reach it), for the resource metadata.
    public_url: str | None = None
    # -- rate limits (token bucket: requests per second, and the burst) ------------------------
    rate_limit_per_identity: float | None = None
    rate_limit_per_address: float | None = None
    rate_limit_burst: int = 20
    # -- the management API ---------------------------------------------------------------------
    # Let REST register `command:`, `app:` and handlers from outside servers.d/: an admin token
    # can then run code on this host.
    admin_allow_code: bool = False
    # Environment variables `${VAR}` in definitions may name; none by default.
    expand_vars: tuple[str, ...] = ()
    # The longest TTL `POST /tokens` mints, seconds.
    token_max_ttl: float = 86400.0
    # -- past one process (issue 9) -----------------------------------------------------------
    # Worker processes sharing the port (`serve --workers N`, mcp_tornado/workers.py). More than
    # one needs `redis_url`: without it each session lives in one worker's memory.
    workers: int = 1
    # The shared session store, `redis://`, `rediss://` or `unix://`.
    redis_url: str | None = None
    # Which worker this process is (0 to workers - 1), set by the supervisor, never from the
    # environment: `/health` and `/metrics` say it, so a client can tell who answered.
    worker_id: int = 0
    # -- observability (issue 10) -----------------------------------------------------------------
    # The log's form: "text" lines, or "json", one object a line (`serve --log-format`).
    log_format: str = "text"
    dev: bool = False
    # The environment `${VAR}` in definitions is expanded from (a child's env, an upstream's
    # headers): the one `from_environ` was given, so tests and embedders pass their own.
    environ: Mapping[str, str] = dataclasses.field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], **overrides: Any) -> Settings:
        values: dict[str, Any] = {}
        for var, field, parse in _ENVIRONMENT:
            raw = environ.get(var)
            if raw is None or raw == "":
                continue
            try:
                values[field] = parse(raw)
            except ValueError as exc:
                raise SettingsError(f"{var}={raw!r}: {exc}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        values.setdefault("environ", dict(environ))
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        for var, field, _ in _ENVIRONMENT:
            value = getattr(self, field)
            if field in _MAY_BE_ZERO:
                if isinstance(value, int | float) and value < 0:
                    raise SettingsError(f"{var}: must not be negative, got {value}")
                continue
            if field != "port" and isinstance(value, int | float) and not isinstance(value, bool) and value <= 0:
                raise SettingsError(f"{var}: must be greater than zero, got {value}")
        if not 0 <= self.port < 65536:  # 0: any free port
            raise SettingsError(f"PORT: must be between 0 and 65535, got {self.port}")
        if self.allowed_origins and not self.allowed_hosts and self.host not in LOOPBACK_HOSTS:
            # The SDK's check covers Host and Origin together; which Hosts are ours only the operator knows.
            raise SettingsError("MCP_ALLOWED_HOSTS: required with MCP_ALLOWED_ORIGINS on a non-loopback address")
        if self.workers > 1 and not self.redis_url:
            raise SettingsError(
                f"MCP_WORKERS={self.workers} needs MCP_REDIS_URL: without a shared store each session lives in"
                " one worker's memory, so sessions would not be shared across workers"
            )
        if self.redis_url is not None and not self.redis_url.startswith(REDIS_SCHEMES):
            raise SettingsError(f"MCP_REDIS_URL: must start with {', '.join(REDIS_SCHEMES)}")
        if not self.dev and not self.jwt_secret and not (self.jwt_public_key_file or self.jwt_jwks):
            raise SettingsError(
                "JWT_SECRET: required (or JWT_PUBLIC_KEY_FILE / JWT_JWKS for an identity provider's keys, "
                "or --dev for a development secret)"
            )


def _duration(raw: str) -> float:
    value = float(raw)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError("not a finite number of seconds")
    return value


def _integer(raw: str) -> int:
    return int(raw, 10)


def _boolean(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _log_format(raw: str) -> str:
    value = raw.strip().lower()
    if value not in ("text", "json"):
        raise ValueError("expected text or json")
    return value


def _names(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


_ENVIRONMENT: tuple[tuple[str, str, Any], ...] = (
    ("JWT_SECRET", "jwt_secret", str),
    ("HOST", "host", str),
    ("PORT", "port", _integer),
    ("MCP_SERVERS_DIR", "servers_dir", Path),
    ("MCP_SESSION_IDLE_TIMEOUT", "session_idle_timeout", _duration),
    ("MCP_SESSION_CLEANUP_INTERVAL", "session_cleanup_interval", _duration),
    ("MCP_SSE_KEEPALIVE", "sse_keepalive_interval", _duration),
    ("MCP_MAX_SESSIONS", "max_sessions_per_server", _integer),
    ("MCP_MAX_SESSIONS_PER_USER", "max_sessions_per_user", _integer),
    ("MCP_EVENT_BUFFER", "event_buffer_size", _integer),
    ("MCP_MAX_BODY_BYTES", "max_body_bytes", _integer),
    ("MCP_HANDLER_THREADS", "handler_threads", _integer),
    ("MCP_ALLOWED_HOSTS", "allowed_hosts", _names),
    ("MCP_ALLOWED_ORIGINS", "allowed_origins", _names),
    ("MCP_HEADER_TIMEOUT", "header_timeout", _duration),
    ("MCP_BODY_TIMEOUT", "body_timeout", _duration),
    ("MCP_MAX_CONNECTIONS", "max_connections", _integer),
    ("MCP_SSE_RETRY", "sse_retry", _duration),
    ("MCP_SSE_MAX_BUFFER_BYTES", "sse_max_buffer_bytes", _integer),
    ("MCP_SSE_MAX_LAG", "sse_max_lag", _duration),
    ("MCP_EVENT_BUFFER_BYTES", "event_buffer_bytes", _integer),
    ("MCP_MAX_IN_FLIGHT_PER_SESSION", "max_in_flight_per_session", _integer),
    ("MCP_MAX_IN_FLIGHT_PER_SERVER", "max_in_flight_per_server", _integer),
    ("MCP_MAX_BATCH", "max_batch", _integer),
    ("MCP_MAX_ABANDONED_THREADS", "max_abandoned_threads", _integer),
    ("MCP_SHUTDOWN_GRACE", "shutdown_grace", _duration),
    ("JWT_PREVIOUS_SECRETS", "jwt_previous_secrets", _names),
    ("JWT_PUBLIC_KEY_FILE", "jwt_public_key_file", Path),
    ("JWT_JWKS", "jwt_jwks", str),
    ("JWT_ISSUER", "jwt_issuer", str),
    ("JWT_AUDIENCE", "jwt_audience", str),
    ("JWT_LEEWAY", "jwt_leeway", _duration),
    ("JWT_MAX_LIFETIME", "jwt_max_lifetime", _duration),
    ("JWT_REVOKED_FILE", "jwt_revoked_file", Path),
    ("MCP_AUTHORIZATION_SERVERS", "oauth_authorization_servers", _names),
    ("MCP_PUBLIC_URL", "public_url", str),
    ("MCP_RATE_LIMIT", "rate_limit_per_identity", _duration),
    ("MCP_RATE_LIMIT_PER_ADDRESS", "rate_limit_per_address", _duration),
    ("MCP_RATE_LIMIT_BURST", "rate_limit_burst", _integer),
    ("MCP_ADMIN_ALLOW_CODE", "admin_allow_code", _boolean),
    ("MCP_EXPAND_VARS", "expand_vars", _names),
    ("MCP_TOKEN_MAX_TTL", "token_max_ttl", _duration),
    ("MCP_WORKERS", "workers", _integer),
    ("MCP_REDIS_URL", "redis_url", str),
    ("MCP_LOG_FORMAT", "log_format", _log_format),
)


# Settings for which zero is a sensible value (no clock skew allowed).
_MAY_BE_ZERO = frozenset({"jwt_leeway"})

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
# What the `redis` client's `from_url` understands.
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
# Descriptors kept back from client connections: children's pipes, upstream sockets, files.
RESERVED_DESCRIPTORS_SHARE = 4  # a quarter of the limit
MAX_CONNECTIONS_CEILING = 100_000


def max_connections_for(settings: Settings) -> int:
    """The connection cap: the setting, or three quarters of the process's descriptor limit."""
    if settings.max_connections is not None:
        return settings.max_connections
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS_CEILING
    return max(1, min(MAX_CONNECTIONS_CEILING, soft - soft // RESERVED_DESCRIPTORS_SHARE))


def transport_security(settings: Settings) -> TransportSecuritySettings | None:
    """The SDK's DNS-rebinding settings for our listen address (None: no Host/Origin check).

    On loopback both are checked by default (what the SDK itself enforces there); elsewhere
    nothing is checked unless `MCP_ALLOWED_HOSTS` (and, for browsers, `MCP_ALLOWED_ORIGINS`)
    name what to accept. An empty origin list accepts requests without `Origin` only.
    """
    hosts, origins = list(settings.allowed_hosts), list(settings.allowed_origins)
    if settings.host in LOOPBACK_HOSTS:
        hosts = hosts or ["127.0.0.1:*", "localhost:*", "[::1]:*", "127.0.0.1", "localhost", "[::1]"]
        if not settings.allowed_hosts and not origins:
            origins = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
    elif not hosts:
        return None  # Settings.check refuses origins without hosts here
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins)
