"""What the transport needs from the server behind a route, declared here so the transport
never imports a backend: hosting hands a session any object with these attributes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from mcp.server.lowlevel.server import Server
from mcp.server.models import InitializationOptions

FastPath = Callable[[Any, Mapping[str, Any] | None], Awaitable[dict[str, Any]]]
"""`(ctx, params) -> wire result` for one method, served without the SDK runner's per-call
surface validation, middleware and result re-validation: for static, already-valid data."""


class ServedBackend(Protocol):
    """The server a session (or a stateless request) is served by."""

    @property
    def server(self) -> Server[Any]:
        """The lowlevel SDK server whose handlers answer; the SDK runner drives it."""
        ...

    @property
    def lifespan_state(self) -> Any: ...

    @property
    def init_options(self) -> InitializationOptions:
        """What `initialize` answers: name, version, capabilities, instructions."""
        ...

    @property
    def fast_paths(self) -> Mapping[str, FastPath]:
        """Methods answered without the SDK runner (the hot path); may be empty."""
        ...

    @property
    def request_timeout(self) -> float | None:
        """Seconds the transport allows any one request (None: the server bounds its own)."""
        ...
