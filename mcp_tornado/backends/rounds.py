"""Multi-round results (SEP-2322, 2026-07-28) for in-process handlers, at every revision.

A handler may answer "I need input first": it returns an `InputRequiredResult` naming
requests (elicitation, sampling, roots) and, optionally, a `request_state` to get back; the
client answers them and calls again with `input_responses` and that state.

- A 2026-07-28 client does the rounds itself. The state crosses the wire sealed by the SDK's
  `RequestStateBoundary` (authenticated encryption, bound to the request and its expiry), so
  a handler only ever sees state it minted, and a tampered one is refused (-32602).
- A client of a handshake revision cannot receive such a result, so the gateway does the
  rounds for it: it sends each request to the client as a server-to-client request, then
  calls the handler again with the answers, up to `MAX_ROUNDS` times.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.request_state import RequestStateBoundary, RequestStateSecurity
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata
from mcp_types import INTERNAL_ERROR
from mcp_types.methods import is_input_required
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import TypeAdapter

# Rounds the gateway runs for a handshake-era client before it gives up on a handler.
MAX_ROUNDS = 8
_RESPONSES = TypeAdapter(types.InputResponses)
# What each kind of input request is, and what answers it.
_KINDS: dict[str, tuple[type[Any], type[Any]]] = {
    "elicitation/create": (types.ElicitRequest, types.ElicitResult),
    "sampling/createMessage": (types.CreateMessageRequest, types.CreateMessageResult),
    "roots/list": (types.ListRootsRequest, types.ListRootsResult),
}


@dataclasses.dataclass(frozen=True, slots=True)
class Asked:
    """What a handler gets back from its last round: the answers and the state it left."""

    input_responses: types.InputResponses | None = None
    request_state: str | None = None


NOTHING_ASKED = Asked()

Round = Callable[[ServerRequestContext[Any, Any], types.InputResponses | None, str | None], Awaitable[Any]]
"""Run the handler once: `(ctx, input_responses, request_state) -> wire result`."""


def state_boundary(server_name: str) -> RequestStateBoundary:
    """The sealing of `request_state` for one server: a key held by this process only."""
    return RequestStateBoundary(RequestStateSecurity.ephemeral(), default_audience=server_name)


async def answer(
    boundary: RequestStateBoundary, ctx: ServerRequestContext[Any, Any], run: Round, first: Any = None
) -> Any:
    """Run a handler that may ask for input, as the client's revision needs it; `first` is its
    first round's result when the caller already ran it (a handshake-era client)."""
    if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:

        async def once(sealed: ServerRequestContext[Any, Any]) -> Any:
            params: Mapping[str, Any] = sealed.params or {}
            raw = params.get("inputResponses")
            responses = _RESPONSES.validate_python(raw, by_name=False) if raw is not None else None
            return await run(sealed, responses, params.get("requestState"))

        return await boundary(ctx, once)
    result = first if first is not None else await run(ctx, None, None)
    for _ in range(MAX_ROUNDS):
        if not is_input_required(result):
            return result
        wire: Mapping[str, Any] = result if isinstance(result, Mapping) else result.model_dump(by_alias=True)
        requests = wire.get("inputRequests") or {}
        responses = {key: await _ask(ctx, request) for key, request in requests.items()}
        result = await run(ctx, responses or None, wire.get("requestState"))
    if is_input_required(result):
        raise MCPError(code=INTERNAL_ERROR, message=f"still asking for input after {MAX_ROUNDS} rounds")
    return result


async def _ask(ctx: ServerRequestContext[Any, Any], request: Mapping[str, Any]) -> Any:
    """One input request, sent to a handshake-era client as a server-to-client request."""
    kind = _KINDS.get(str(request.get("method")))
    if kind is None:
        raise MCPError(code=INTERNAL_ERROR, message=f"cannot ask a client for {request.get('method')!r}")
    request_type, result_type = kind
    typed = request_type.model_validate(request, by_name=False)
    metadata = ServerMessageMetadata(related_request_id=ctx.request_id)
    return await ctx.session.send_request(typed, result_type, metadata=metadata)
