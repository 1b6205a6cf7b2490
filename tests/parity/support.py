"""Helpers of the parity suite: the four kinds, their routes, tokens and clients."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import httpx2
import tornado.netutil

from mcp_tornado.server import Gateway
from mcp_tornado.settings import Settings
from tests.conftest import SECRET, TEST_ENVIRON, mcp_client, token
from tests.e2e.wire import headers, init_body, sse_events

SERVERS = Path(__file__).parent / "servers"
KINDS = ("inprocess", "app", "command", "url")
# The route the others are compared with where "the same server" is all that is asked: `app:`
# drives the SDK's own Server object. Where the SDK's exact answer matters, tests ask the SDK's
# own server itself (the upstream, without the gateway: the `sdk_url` fixture).
REFERENCE = "app"
TOOLS = ["add", "fail", "steps", "ask", "haiku", "wait", "cancellations"]
INSTRUCTIONS = "The same server behind every backend kind."


def kinds() -> list[str]:
    """The four backend kinds, as test parameters."""
    return list(KINDS)


class Upstream:
    """`parity_app.py` served over Streamable HTTP by uvicorn, in a child process.

    The socket is bound and listening before the child starts, so the port is never raced for
    and nobody has to poll for the server to come up: early connections wait in the backlog.
    """

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        fd = self._socket.fileno()
        self._process = subprocess.Popen(
            [sys.executable, str(SERVERS / "parity_app.py"), "--fd", str(fd)], pass_fds=(fd,), cwd=SERVERS
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(10)
        self._socket.close()


class GatewayThread:
    """The real gateway on a real port, on an event loop of its own in a background thread, so it
    can outlive the per-test loops of pytest-tornado and serve a whole package of tests."""

    def __init__(self, servers_dir: Path) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="parity-gateway", daemon=True)
        self._thread.start()
        settings = Settings.from_environ({"JWT_SECRET": SECRET, **TEST_ENVIRON}, servers_dir=servers_dir)
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")

        async def start() -> Gateway:
            gateway = Gateway(settings)  # built on its own loop, where it will run
            await gateway.start(sockets)
            return gateway

        self.gateway = self._run(start())
        self.url = f"http://127.0.0.1:{self.gateway.port}"

    def _run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=60)

    def stop(self) -> None:
        try:
            self._run(self.gateway.stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
            self._loop.close()


def route(base_url: str, kind: str) -> str:
    return f"{base_url}/{kind}/mcp"


def bearer(kind: str) -> str:
    return token(kind, api_key=None)


def client(base_url: str, kind: str, **session_kwargs: Any) -> Any:
    """The official client, initialized, on `kind`'s route."""
    return mcp_client(route(base_url, kind), bearer(kind), **session_kwargs)


def comparable_capabilities(capabilities: dict[str, Any]) -> dict[str, Any]:
    """Capabilities without what each backend legitimately declares for itself.

    - `logging`: in-process servers implement logging/setLevel and say so; the SDK's MCPServer
      has no logging/setLevel handler (it sends log messages without declaring the capability).
    - `listChanged`, `subscribe`: what the backend itself delivers. In-process servers announce
      edits of their YAML; at 2026-07-28 the SDK's MCPServer serves `subscriptions/listen`;
      command: and url: show the upstream's own declaration at the handshake.
    """
    own = ("listChanged", "subscribe")
    return {
        key: {k: v for k, v in value.items() if k not in own} for key, value in capabilities.items() if key != "logging"
    }


def dump(model: Any) -> dict[str, Any]:
    """A client-side model as JSON; `resultType` is the client's own default before 2026-07-28."""
    out = model.model_dump(by_alias=True, mode="json", exclude_none=True)
    return {key: value for key, value in out.items() if key != "resultType"}


def without_id(message: dict[str, Any]) -> dict[str, Any]:
    """A JSON-RPC message as comparable across routes: ids are the client's own numbering."""
    return {key: value for key, value in message.items() if key != "id"}


class Wire:
    """A raw Streamable HTTP session on one route at one protocol revision (see tests/e2e/wire.py).

    Works against the gateway (with a bearer token) and against the SDK's own server, the
    upstream itself, which is how a test learns what the SDK answers for the same request.
    """

    def __init__(self, http: httpx2.AsyncClient, url: str, version: str = "2025-11-25", bearer: str | None = None):
        self.http = http
        self.url = url
        self.version = version
        self.bearer = bearer
        self.session: str | None = None
        self._next_id = 1

    async def open(self) -> dict[str, Any]:
        """initialize + notifications/initialized; returns the initialize result."""
        response = await self.http.post(self.url, json=init_body(self.version), headers=headers(self.bearer))
        assert response.status_code == 200, response.text
        self.session = response.headers.get("Mcp-Session-Id")
        (answer,) = messages_of(response)
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        accepted = await self.http.post(self.url, json=note, headers=self.headers())
        assert accepted.status_code == 202, accepted.text
        return answer["result"]

    def headers(self) -> dict[str, str]:
        return headers(session=self.session, version=self.version)

    def body(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": self._next_id, "method": method}
        if params is not None:
            message["params"] = params
        return message

    async def messages(self, method: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Everything the POST of one request brings back, in order (one JSON answer, or SSE events)."""
        response = await self.http.post(self.url, json=self.body(method, params), headers=self.headers())
        assert response.status_code == 200, response.text
        return messages_of(response)

    async def answer(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """The response to one request, without its id."""
        found = [m for m in await self.messages(method, params) if "result" in m or "error" in m]
        assert len(found) == 1, found
        return without_id(found[0])

    async def close(self) -> None:
        if self.session is not None:
            await self.http.delete(self.url, headers=self.headers())


def messages_of(response: httpx2.Response) -> list[dict[str, Any]]:
    if response.headers.get("Content-Type", "").startswith("text/event-stream"):
        return [event["data"] for event in sse_events(response.text)]
    return [response.json()]
