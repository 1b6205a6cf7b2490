"""What an in-process handler returns, as the MCP results the wire carries.

A tool handler may return a string, a dict (structured content), a list of content blocks, a
number, None or a `CallToolResult` (README, "Server definitions"); resource and prompt
handlers have their own shapes. Anything that is not strict JSON (NaN, Infinity) is refused
here, so it never reaches a client.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import mcp_types as types
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS
from mcp_types.methods import serialize_server_result
from mcp_types.version import LATEST_HANDSHAKE_VERSION
from pydantic import TypeAdapter, ValidationError

from mcp_tornado.definitions import PromptSpec, ResourceSpec

logger = logging.getLogger(__name__)

PAGE_SIZE = 100
_CURSOR = re.compile(r"[0-9]{1,9}")  # our cursors are offsets; anything else is a client's invention
_CONTENT = TypeAdapter(types.ContentBlock)
_PROMPT_MESSAGES = TypeAdapter(list[types.PromptMessage])


def start_of(cursor: str | None, total: int) -> int:
    """The offset a cursor stands for; an unknown cursor is INVALID_PARAMS, as the spec says."""
    if cursor is None:
        return 0
    if not _CURSOR.fullmatch(cursor) or int(cursor) % PAGE_SIZE or int(cursor) >= max(total, 1):
        raise MCPError(code=INVALID_PARAMS, message="Invalid cursor")
    return int(cursor)


def page(items: list[Any], params: types.PaginatedRequestParams | None) -> tuple[list[Any], str | None]:
    start = start_of(params.cursor if params is not None else None, len(items))
    end = start + PAGE_SIZE
    return items[start:end], (str(end) if end < len(items) else None)


def page_result(key: str, items: list[Any], start: int) -> dict[str, Any]:
    end = start + PAGE_SIZE
    result: dict[str, Any] = {key: items[start:end]}
    if end < len(items):
        result["nextCursor"] = str(end)
    return result


def text(text: str) -> dict[str, Any]:
    return {"text": text, "type": "text"}  # the SDK's own key order, so answers match it byte for byte


def error_result(message: str) -> dict[str, Any]:
    return {"content": [text(message)], "isError": True}


class NotJSON(ValueError):
    """A handler's value holds NaN or Infinity, which JSON has no way to write."""


def dumps(value: Any) -> str:
    """Strict JSON text of `value`; raises `_NotJSON` for NaN or Infinity anywhere in it."""
    try:
        return json.dumps(value, ensure_ascii=False, default=str, allow_nan=False)
    except ValueError:
        json.dumps(value, ensure_ascii=False, default=str)  # raises again if the problem is another one (a cycle)
        raise NotJSON from None


def to_result(value: Any) -> dict[str, Any]:
    """A handler's return value as the wire form of a `CallToolResult` (see PRODUCT.md section 3)."""
    if isinstance(value, str):
        return {"content": [text(value)], "isError": False}
    if isinstance(value, dict):
        # Checked here, where the text is made anyway: structuredContent goes out as it is.
        return {"content": [text(dumps(value))], "structuredContent": value, "isError": False}
    if isinstance(value, types.InputRequiredResult):  # "ask the client first" (see rounds.py)
        return value.model_dump(by_alias=True, mode="json", exclude_none=True)
    if isinstance(value, types.CallToolResult):
        # Through the SDK's own sieve: the model carries fields of later revisions (`resultType`).
        return serialize_server_result(
            "tools/call", LATEST_HANDSHAKE_VERSION, value.model_dump(by_alias=True, mode="json", exclude_none=True)
        )
    if value is None:
        return {"content": [], "isError": False}
    if isinstance(value, list | tuple):
        return {"content": [content(item) for item in value], "isError": False}
    if isinstance(value, int | float | bool):
        return {"content": [text(dumps(value))], "isError": False}
    raise TypeError(f"cannot turn a {type(value).__name__} into a tool result")


def content(item: Any) -> dict[str, Any]:
    if isinstance(item, str):
        return text(item)
    block = _CONTENT.validate_python(item, by_name=False) if isinstance(item, dict) else _CONTENT.validate_python(item)
    return block.model_dump(by_alias=True, mode="json", exclude_none=True)


def resource_contents(spec: ResourceSpec, value: Any) -> list[Any]:
    mime = spec.mime_type or "text/plain"
    if isinstance(value, str):
        return [types.TextResourceContents(uri=spec.uri, mime_type=mime, text=value)]
    if isinstance(value, bytes):
        import base64

        blob = base64.b64encode(value).decode()
        return [
            types.BlobResourceContents(uri=spec.uri, mime_type=spec.mime_type or "application/octet-stream", blob=blob)
        ]
    if isinstance(value, dict):
        return [
            types.TextResourceContents(uri=spec.uri, mime_type=spec.mime_type or "application/json", text=dumps(value))
        ]
    raise TypeError(f"resource handler returned {type(value).__name__}; expected str, bytes or dict")


def prompt_result(spec: PromptSpec, value: Any) -> Any:
    """A prompt handler's value as a `GetPromptResult`, or the wire form of an `InputRequiredResult`."""
    if isinstance(value, types.InputRequiredResult):
        return value.model_dump(by_alias=True, mode="json", exclude_none=True)
    if isinstance(value, types.GetPromptResult):
        return value
    if isinstance(value, str):
        value = [{"role": "user", "content": {"type": "text", "text": value}}]
    try:
        messages = _PROMPT_MESSAGES.validate_python(value, by_name=False)
    except ValidationError:
        # Our handler's fault, not the client's: the SDK would call a ValidationError -32602.
        logger.warning("prompt %s returned an unusable value", spec.name, exc_info=True)
        raise MCPError(code=INTERNAL_ERROR, message=f"Prompt {spec.name} returned an unusable value") from None
    return types.GetPromptResult(description=spec.description, messages=messages)
