"""`StatelessRelay`: 2026-07-28 requests passed through to a remote upstream that speaks it.

A stateless request carries everything about its client (envelope, capabilities, log level,
`Mcp-Param-*` headers, `inputResponses` and `requestState` of a multi-round call), so the
most faithful proxy forwards it as it is and hands back what the upstream answered: its own
errors and HTTP status, caching hints, `InputRequiredResult`s, progress and logs. Only our
own credentials change: the client's token is for the gateway; the upstream gets the
definition's `headers`.

A curated server (`tools: {include, exclude, rename, ...}`) is curated here too: a request for
what the curation hides is answered as an unknown one without reaching the upstream, a renamed
entry is asked for under the upstream's name (body and `Mcp-Name`), and lists come back
curated (`backends/curation.py`).

Whether the upstream speaks 2026-07-28 is asked once, with `server/discover`; one that does
not is served by translation onto the handshake-era link instead (see upstream.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import httpx2
from httpx2 import EventSource
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import ERROR_CODE_HTTP_STATUS
from mcp_types import CLIENT_CAPABILITIES_META_KEY, CLIENT_INFO_META_KEY, PROTOCOL_VERSION_META_KEY
from mcp_types.version import LATEST_MODERN_VERSION

from mcp_tornado import __version__, tracing
from mcp_tornado.backends.curation import Curator

logger = logging.getLogger(__name__)

# The client's headers an upstream needs to route and check a stateless request.
_PASSED_HEADERS = frozenset({"accept", "content-type", "mcp-protocol-version", "mcp-method", "mcp-name"})
_PARAM_HEADER_PREFIX = "mcp-param-"
# How long the one-time `server/discover` probe may take.
PROBE_TIMEOUT = 10.0


@dataclasses.dataclass
class Relayed:
    """What the upstream answered: a complete JSON body, or the data of each SSE message."""

    status: int
    body: bytes | None = None
    events: AsyncIterator[bytes] | None = None


class StatelessRelay:
    def __init__(self, name: str, url: str, headers: Mapping[str, str], timeout: float) -> None:
        self._name = name
        self._url = url
        self._headers = dict(headers)
        self._timeout = timeout
        self._modern: bool | None = None  # unknown until probed

    async def speaks_modern(self) -> bool:
        """Whether the upstream serves 2026-07-28 itself (asked once; a failed probe says no, for now)."""
        if self._modern is None:
            self._modern = await self._probe()
        return self._modern

    async def _probe(self) -> bool:
        meta = {
            PROTOCOL_VERSION_META_KEY: LATEST_MODERN_VERSION,
            CLIENT_INFO_META_KEY: {"name": "mcp-tornado", "version": __version__},
            CLIENT_CAPABILITIES_META_KEY: {},
        }
        body = {"jsonrpc": "2.0", "id": "mcpt-probe", "method": "server/discover", "params": {"_meta": meta}}
        headers = {
            **self._headers,
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": LATEST_MODERN_VERSION,
            "Mcp-Method": "server/discover",
        }
        try:
            async with httpx2.AsyncClient(timeout=PROBE_TIMEOUT) as http:
                response = await http.post(self._url, json=body, headers=headers)
            if response.headers.get("content-type", "").startswith("text/event-stream"):
                data = [line[5:].strip() for line in response.text.splitlines() if line.startswith("data:")]
                answer = json.loads(data[-1]) if data else {}
            else:
                answer = response.json()
        except (httpx2.HTTPError, ValueError) as exc:
            logger.info("%s: the upstream did not answer server/discover (%s); translating", self._name, exc)
            return False
        versions = (answer.get("result") or {}).get("supportedVersions") or []
        speaks = LATEST_MODERN_VERSION in versions
        logger.info("%s: the upstream %s 2026-07-28", self._name, "speaks" if speaks else "does not speak")
        return speaks

    @contextlib.asynccontextmanager
    async def forward(
        self, body: bytes, header_lines: Iterable[tuple[str, str]], curator: Curator | None = None
    ) -> AsyncIterator[Relayed]:
        """POST `body` upstream with the client's routing headers; the answer, streamed.
        With a `curator`, the request and its answer are curated (see the module docstring)."""
        headers = {
            name: value
            for name, value in header_lines
            if name.lower() in _PASSED_HEADERS or name.lower().startswith(_PARAM_HEADER_PREFIX)
        }
        method = None
        if curator is not None:
            try:
                body, method = _curated_request(curator, body, headers)
            except _Refused as refused:
                yield Relayed(refused.status, body=refused.body)
                return
        headers.update(self._headers)
        tracing.inject(headers)  # the request's trace context, when traced
        async with httpx2.AsyncClient(timeout=httpx2.Timeout(self._timeout)) as http:
            async with http.stream("POST", self._url, content=body, headers=headers) as response:
                if response.headers.get("content-type", "").startswith("text/event-stream"):
                    events = _messages(response)
                    if curator is not None and method is not None:
                        events = _curated_events(curator, method, events)
                    yield Relayed(response.status_code, events=events)
                else:
                    answer = await response.aread()
                    if curator is not None and method is not None:
                        answer = _curated_answer(curator, method, answer)
                    yield Relayed(response.status_code, body=answer)


class _Refused(Exception):
    def __init__(self, status: int, body: bytes) -> None:
        self.status, self.body = status, body


def _curated_request(curator: Curator, body: bytes, headers: dict[str, str]) -> tuple[bytes, str | None]:
    """The body to send (a renamed entry under the upstream's name, `Mcp-Name` with it) and
    the request's method. Raises `_Refused` with the answer for what the curation hides."""
    try:
        message = json.loads(body)
    except ValueError:
        return body, None  # the upstream refuses it as it would anyway
    if not isinstance(message, dict) or not isinstance(message.get("method"), str):
        return body, None
    method, params = message["method"], message.get("params")
    try:
        curated = curator.request(method, params if isinstance(params, dict) else None)
    except MCPError as exc:
        error = exc.error.model_dump(mode="json", exclude_none=True)
        answer = {"jsonrpc": "2.0", "id": message.get("id"), "error": error}
        raise _Refused(ERROR_CODE_HTTP_STATUS.get(exc.error.code, 200), json.dumps(answer).encode()) from None
    if curated is params or not isinstance(curated, dict):
        return body, method
    for header in [h for h in headers if h.lower() == "mcp-name"]:
        headers[header] = str(curated.get("name", headers[header]))
    return json.dumps({**message, "params": curated}).encode(), method


def _curated_answer(curator: Curator, method: str, data: bytes) -> bytes:
    try:
        message = json.loads(data)
    except ValueError:
        return data
    if not isinstance(message, dict) or "result" not in message:
        return data
    curated = curator.result(method, message["result"])
    return data if curated is message["result"] else json.dumps({**message, "result": curated}).encode()


async def _curated_events(curator: Curator, method: str, events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    async for data in events:
        yield _curated_answer(curator, method, data)


async def _messages(response: Any) -> AsyncIterator[bytes]:
    async for event in EventSource(response):
        if event.event == "message" and event.data:
            yield event.data.encode()
