"""Handlers of the gateway's benchmark servers (copied into the throwaway servers folder)."""

from __future__ import annotations

from typing import Any


async def add(arguments: dict[str, Any], context: Any) -> str:
    return str(arguments["a"] + arguments["b"])


async def add_progress(arguments: dict[str, Any], context: Any) -> str:
    """Reports progress once, so the call is answered as an SSE stream."""
    await context.progress(1, 1, "adding")
    return str(arguments["a"] + arguments["b"])
