"""The JSON-RPC wire, strictly: bodies -> validated `mcp_types` messages, answers -> bytes.

Strict where JSON-RPC and MCP are: ids are strings or integers (never null, a boolean, a float
or a structure); NaN and Infinity are not JSON, and a number too large for a float is refused
rather than turned into infinity. Every refusal is one of our `BadRequest` errors carrying the
JSON-RPC code the spec names (-32700 for what is not JSON, -32600 for what is not JSON-RPC).
"""

from __future__ import annotations

import math
import re
from typing import Any

import pydantic_core
from mcp_types import jsonrpc_message_adapter
from pydantic import ValidationError

from mcp_tornado.errors import BadRequest, ParseError

# Revisions whose base protocol takes JSON-RPC batches: 2024-11-05 (plain JSON-RPC 2.0) and
# 2025-03-26 (which named them); 2025-06-18 removed them.
BATCH_VERSIONS = frozenset({"2024-11-05", "2025-03-26"})
# A float literal that may overflow: an exponent of three digits or more, or 300+ digits in a row.
_HUGE_NUMBER = re.compile(rb"[0-9][eE][+-]?[0-9]{3}|[0-9]{300}")
# Deeper than any schema we serve; the validators refuse such documents anyway.
_MAX_DEPTH = 256


def dumps(message: Any) -> bytes:
    """JSON for the wire; a NaN or an infinity (not JSON) that reached this far leaves as null."""
    return pydantic_core.to_json(message, inf_nan_mode="null")


def loads(body: bytes) -> Any:
    """Strict JSON. Raises `ParseError` (-32700) or, for an unrepresentable number, `BadRequest`."""
    try:
        value = pydantic_core.from_json(body, allow_inf_nan=False)
    except ValueError as exc:
        raise ParseError(f"Parse error: {exc}") from None
    if _HUGE_NUMBER.search(body) and not _finite(value):
        raise BadRequest("Invalid Request: a number out of range")
    return value


def parse(body: bytes, max_batch: int) -> tuple[list[Any], bool]:
    """A POST body's JSON-RPC messages, validated with `mcp_types`, and whether it was a batch.

    Raises `BadRequest` for an empty batch or one of more than `max_batch` messages.
    """
    raw = loads(body)
    batch = isinstance(raw, list)
    items = raw if batch else [raw]
    if not items:
        raise BadRequest("Invalid Request: empty batch")
    if len(items) > max_batch:
        raise BadRequest(f"Invalid Request: a batch of {len(items)} messages; the limit is {max_batch}")
    check_ids(items)
    try:
        return [jsonrpc_message_adapter.validate_python(item, by_name=False) for item in items], batch
    except ValidationError:
        raise BadRequest("Invalid Request: not a JSON-RPC 2.0 message") from None


def check_ids(items: list[Any]) -> None:
    """JSON-RPC ids are strings or integers (MCP: "MUST be a string or integer", never null);
    only an error answer to a message its sender could not read may carry a null id."""
    for item in items:
        if not isinstance(item, dict) or "id" not in item:
            continue
        request_id = item["id"]
        if isinstance(request_id, str) or (isinstance(request_id, int) and not isinstance(request_id, bool)):
            continue
        if request_id is None and "error" in item and "method" not in item:
            continue
        raise BadRequest("Invalid Request: an id must be a string or an integer")


def _finite(value: Any, depth: int = 0) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if depth > _MAX_DEPTH:
        return True
    if isinstance(value, dict):
        return all(_finite(v, depth + 1) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v, depth + 1) for v in value)
    return True
