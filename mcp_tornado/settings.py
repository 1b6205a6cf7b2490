"""Every option of the gateway: its environment variable, its default, and how it is parsed.

`Settings.from_environ(environ, **overrides)` takes the environment as an argument, so tests
need no monkeypatching; flags from the command line arrive as overrides and win. A bad value
raises `SettingsError` naming the variable; only `cli.py` turns that into an exit.
"""

from __future__ import annotations

import dataclasses
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
    dev: bool = False

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
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        for var, field, _ in _ENVIRONMENT:
            value = getattr(self, field)
            if field != "port" and isinstance(value, int | float) and not isinstance(value, bool) and value <= 0:
                raise SettingsError(f"{var}: must be greater than zero, got {value}")
        if not 0 <= self.port < 65536:  # 0: any free port
            raise SettingsError(f"PORT: must be between 0 and 65535, got {self.port}")
        if not self.dev and not self.jwt_secret:
            raise SettingsError("JWT_SECRET: required (or run with --dev for an ephemeral secret)")


def _duration(raw: str) -> float:
    value = float(raw)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError("not a finite number of seconds")
    return value


def _integer(raw: str) -> int:
    return int(raw, 10)


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
)


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def transport_security(settings: Settings) -> TransportSecuritySettings | None:
    """The SDK's DNS-rebinding settings for our listen address (None: no Host/Origin check)."""
    hosts, origins = list(settings.allowed_hosts), list(settings.allowed_origins)
    if not hosts and not origins:
        if settings.host not in LOOPBACK_HOSTS:
            return None
        # What the SDK itself enforces for a server on loopback.
        hosts = ["127.0.0.1:*", "localhost:*", "[::1]:*", "127.0.0.1", "localhost", "[::1]"]
        origins = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins)
