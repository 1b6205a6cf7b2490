"""A raw Streamable HTTP client for tests that look at the wire: statuses, headers, SSE frames."""

from __future__ import annotations

import json
from typing import Any

import httpx2

ACCEPT_BOTH = "application/json, text/event-stream"


def init_body(version: str = "2025-11-25", request_id: int | str = 1) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "initialize",
        "params": {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "wire", "version": "0"}},
    }


def headers(
    bearer: str | None = None, session: str | None = None, version: str | None = None, **extra: str
) -> dict[str, str]:
    out = {"Accept": ACCEPT_BOTH, "Content-Type": "application/json"}
    if bearer:
        out["Authorization"] = f"Bearer {bearer}"
    if session:
        out["Mcp-Session-Id"] = session
    if version:
        out["MCP-Protocol-Version"] = version
    out.update(extra)
    return out


def stream_headers(session: str, last_event_id: str | bytes | None = None) -> dict[str, Any]:
    """Headers of a GET for the session's stream (resuming after `last_event_id`)."""
    out: dict[str, Any] = {"Accept": "text/event-stream", "Mcp-Session-Id": session}
    if last_event_id is not None:
        out["Last-Event-ID"] = last_event_id
    return out


async def open_session(http: httpx2.AsyncClient, url: str, bearer: str, version: str = "2025-11-25") -> str:
    response = await http.post(url, json=init_body(version), headers=headers(bearer))
    assert response.status_code == 200, response.text
    session = response.headers["Mcp-Session-Id"]
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    assert (await http.post(url, json=note, headers=headers(session=session, version=version))).status_code == 202
    return session


def sse_events(text: str, *, priming: bool = False) -> list[dict[str, Any]]:
    """Parse a complete SSE body into [{"id": ..., "data": <json>}], skipping comments and, unless
    `priming`, the id-only priming events (as clients do)."""
    events = []
    for block in text.split("\n\n"):
        event: dict[str, Any] = {}
        for line in block.splitlines():
            if line.startswith("id: "):
                event["id"] = line[4:]
            elif line.startswith("data:"):
                raw = line[5:].strip()
                event["data"] = json.loads(raw) if raw else None
        if "data" in event and (event["data"] is not None or priming):
            events.append(event)
    return events


async def read_events(response: httpx2.Response, count: int) -> list[dict[str, Any]]:
    """Read `count` events from a streaming SSE response."""
    events: list[dict[str, Any]] = []
    buffer = ""
    async for chunk in response.aiter_text():
        buffer += chunk
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            events += sse_events(block + "\n\n")
            if len(events) >= count:
                return events
    return events
