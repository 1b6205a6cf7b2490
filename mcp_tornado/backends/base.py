"""What every backend gives the transport: an `mcp` SDK `Server` to drive, and a lifecycle.

Whatever a hosted server really is (Python handlers from YAML, an SDK app object, a child
process or a remote URL), the transport only ever sees `Backend.server`, a lowlevel SDK
`Server`, so handshake, validation and every protocol rule stay the SDK's. A `Backend`
satisfies the transport's `ServedBackend` protocol without knowing it.
"""

from __future__ import annotations

import warnings
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from mcp.server.lowlevel.server import NotificationOptions, Server
from mcp.server.models import InitializationOptions
from mcp.shared.exceptions import MCPDeprecationWarning
from opentelemetry import trace

from mcp_tornado.backends.relay import StatelessRelay
from mcp_tornado.backends.state import BackendState
from mcp_tornado.definitions import ServerSpec

Publish = Callable[[str, Mapping[str, Any] | None, set[str] | None], Awaitable[None]]

FastPath = Callable[[Any, Mapping[str, Any] | None], Awaitable[dict[str, Any]]]
"""`(ctx, params) -> wire result` for one method, served without the SDK runner's per-call
surface validation, middleware and result re-validation: for static, already-valid data."""


class Backend:
    # False for backends that can be down (children, remote upstreams): they implement `ready()`.
    always_ready = True

    kind: str = "abstract"

    def __init__(self, server: Server[Any], *, list_changed: bool = False) -> None:
        self.server = server
        # Methods this backend answers on the hot path; everything else goes through the SDK.
        self.fast_paths: Mapping[str, FastPath] = {}
        # Python modules its handlers come from: editing one reloads this server.
        self.modules: frozenset[str] = frozenset()
        # Set by the hosting server: `publish(method, params, session_ids)` notifies its sessions
        # (all of them when `session_ids` is None) on their GET streams.
        self.publish: Publish | None = None
        self.lifespan_state: Any = {}
        # Seconds the transport gives any one request to this backend (None: the backend bounds
        # its own handlers). For servers whose handlers we cannot reach into, such as `app:`.
        self.request_timeout: float | None = None
        # Set by backends whose upstream may take 2026-07-28 requests as they are (`url:`).
        self.relay: StatelessRelay | None = None
        self.state = BackendState.STOPPED
        self.last_error: str | None = None
        changed = NotificationOptions(
            prompts_changed=list_changed, resources_changed=list_changed, tools_changed=list_changed
        )
        # Built once: every session's initialize answers with the same capabilities.
        self.default_init_options: InitializationOptions = server.create_initialization_options(changed)

    @property
    def init_options(self) -> InitializationOptions:
        """What `initialize` answers (an upstream's own, once it is known)."""
        return self.default_init_options

    async def start(self) -> None:
        self.state = BackendState.RUNNING

    async def stop(self) -> None:
        self.state = BackendState.STOPPED

    async def catalog(self) -> dict[str, Any] | None:
        """What the server lists, by kind ("tools", "resources", "prompts"), comparable across a
        reload so sessions hear exactly which lists changed; None when it cannot be known."""
        return None

    async def ready(self) -> None:
        """Return once requests can be served; raise `Unavailable` (503) while they cannot."""
        return None

    async def session_opened(self, session_id: str) -> None:
        """A session starts (may raise `Unavailable`); backends with per-session state set it up."""
        return None

    async def session_ready(self, session_id: str) -> None:
        """Like `ready()`, for what this session alone depends on (its own child)."""
        return None

    async def session_closed(self, session_id: str) -> None:
        return None

    def describe(self) -> dict[str, Any]:
        """What `/health` and the management API may show: never a secret."""
        return {"kind": self.kind, "state": self.state.value, "last_error": self.last_error}


def own_server(server: Server[Any]) -> Server[Any]:
    """A lowlevel `Server` this project built (never a user's): without the SDK's default
    OpenTelemetry middleware while no tracer provider is installed.

    `Server.middleware` documents dropping that entry as the way to opt out. With no provider
    every span is a no-op, yet building it costs a noticeable share of a `tools/call`, and any
    middleware sends requests down the SDK path instead of the fast one. Install a provider
    (e.g. `opentelemetry-instrument`) before servers load to keep tracing.
    """
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        server.middleware.clear()  # ours carry only the SDK's default OpenTelemetry entry
    return server


def quiet_server(name: str, **options: Any) -> Server[Any]:
    """`Server(name, **options)` as `own_server` leaves it. `logging/setLevel` is deprecated only
    from 2026-07-28; the handshake revisions we serve still use it, so its handler does not warn."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        return own_server(Server(name, **options))


def spec_server(spec: ServerSpec, **handlers: Any) -> Server[Any]:
    """The lowlevel `Server` of a definition (its name, version, title, description and
    instructions) with `handlers` (`on_call_tool=...`): see `quiet_server`."""
    return quiet_server(
        spec.name,
        version=spec.version,
        title=spec.title,
        description=spec.description,
        instructions=spec.instructions,
        **handlers,
    )
