"""Where a client learns how to get a token: OAuth discovery (RFC 9728) and the challenges.

`GET /.well-known/oauth-protected-resource/{name}/mcp` (and `/mcp/{name}`, `/{name}/sse` for
the alias and the legacy route) is the route's protected-resource metadata: its URL as the
`resource`, the authorization servers that issue its tokens (`MCP_AUTHORIZATION_SERVERS`), the
scopes it knows. Without authorization servers there is nothing to discover, and the document
is 404, as it is for a public (`auth: none`) or unknown server: the `mcp` SDK's client and
`mcp-remote` both take a 404 as "not published here" and go on down their discovery lists.

Every 401 and 403 of an MCP route goes through `explain`: with authorization servers its
challenge names the route's metadata (`resource_metadata="..."`), so an OAuth client can start
its flow; without, the message says plainly that the token comes from the operator.

`POST /register`: where OAuth clients that found no metadata end up, since they fall back to
registering themselves (RFC 7591) at the resource's own origin. We register no one, and the
answer says why, with the reason the token it carried was refused; that is what `mcp-remote`
prints, rather than a bare "404" that sends it off to try another transport.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mcp_tornado import auth
from mcp_tornado.errors import GatewayError, InsufficientScope, NotFound, Unauthorized, bearer_challenge
from mcp_tornado.handlers.base import BaseHandler
from mcp_tornado.hosting.hosted import HostedServer
from mcp_tornado.hosting.registry import ServerRegistry
from mcp_tornado.settings import Settings

WELL_KNOWN = "/.well-known/oauth-protected-resource"


def base_url(handler: BaseHandler, settings: Settings) -> str:
    """The gateway's URL as clients reach it: `MCP_PUBLIC_URL`, else this request's scheme and Host."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    return f"{handler.request.protocol}://{handler.request.host}"


def operator_hint(name: str) -> str:
    return f"this server needs a bearer token from its operator (mcp-tornado token {name})"


def discoverable(hosted: HostedServer | None, settings: Settings) -> bool:
    """Whether a route has protected-resource metadata: a server that takes tokens, and
    authorization servers that issue them."""
    return hosted is not None and not hosted.spec.public and bool(settings.oauth_authorization_servers)


def explain(
    exc: GatewayError, handler: BaseHandler, hosted: HostedServer | None, settings: Settings, resource_path: str
) -> tuple[str, Mapping[str, str]]:
    """The message and headers of an error on the MCP route `resource_path` (`/{name}/mcp`, ...).

    A 401 or a 403 for a missing scope names the route's metadata when there is some; a 401
    without says that the operator hands out tokens (a public server's says nothing more:
    it takes no token, only a valid one).
    """
    if not isinstance(exc, Unauthorized | InsufficientScope):
        return exc.message, exc.headers
    metadata = f"{base_url(handler, settings)}{WELL_KNOWN}{resource_path}" if discoverable(hosted, settings) else None
    if isinstance(exc, InsufficientScope):
        challenge = bearer_challenge("insufficient_scope", scope=" ".join(exc.scopes), resource_metadata=metadata)
        return exc.message, {**exc.headers, "WWW-Authenticate": challenge}
    headers = {**exc.headers, "WWW-Authenticate": bearer_challenge(exc.error, resource_metadata=metadata)}
    if metadata is not None or hosted is None or hosted.spec.public:
        return exc.message, headers
    return f"{exc.message}: {operator_hint(hosted.name)}", headers


class ProtectedResourceHandler(BaseHandler):
    """`GET /.well-known/oauth-protected-resource{route}`: one MCP route's metadata (RFC 9728)."""

    def initialize(self, registry: ServerRegistry, settings: Settings) -> None:
        self.registry = registry
        self.settings_ = settings

    async def prepare(self) -> None:
        await self.check_host_and_origin()

    def get(self, name: str) -> None:
        hosted = self.registry.get(name)
        if hosted is None:
            raise NotFound(f"unknown server {name!r}")
        if not discoverable(hosted, self.settings_):
            why = "is public: it takes no token" if hosted.spec.public else operator_hint(name)
            raise NotFound(f"no OAuth authorization server issues tokens for {name}: {why}")
        spec = hosted.spec
        document: dict[str, Any] = {
            "resource": base_url(self, self.settings_) + self.request.path.removeprefix(WELL_KNOWN),
            "authorization_servers": list(self.settings_.oauth_authorization_servers),
            "bearer_methods_supported": ["header"],
            "resource_name": spec.title or name,
        }
        # What a token may need here: the server's scopes, and any tool's. Left out when there
        # are none, so clients ask their authorization server for its defaults rather than for "".
        scopes = dict.fromkeys((*spec.scopes, *(s for needed in spec.tool_scopes.values() for s in needed)))
        if scopes:
            document["scopes_supported"] = list(scopes)
        self.write_json(document)


class RegistrationHandler(BaseHandler):
    """`POST /register`: dynamic client registration, refused with the reason (see the module)."""

    def initialize(self, registry: ServerRegistry, settings: Settings) -> None:
        self.registry = registry
        self.settings_ = settings

    async def prepare(self) -> None:
        await self.check_host_and_origin()

    def post(self) -> None:
        servers = self.settings_.oauth_authorization_servers
        where = (
            f"register with its authorization server ({', '.join(servers)})"
            if servers
            else "its MCP servers take a bearer token from their operator (mcp-tornado token SERVER)"
        )
        # mcp-remote reads "404", "405", "Not Found" or "Unauthorized" in this text as a reason to
        # try another transport or a browser sign-in: the description never says those words.
        description = f"mcp-tornado is not an OAuth authorization server and registers no clients: {where}"
        reason = self._refusal_of_token()
        if reason is not None:
            description = f"{reason}; {description}"
        self.set_status(400)  # RFC 7591 section 3.2.2
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": "invalid_client_metadata", "error_description": description}))

    def _refusal_of_token(self) -> str | None:
        """Why the bearer token this request carries (a client passes its configured headers on)
        is refused; None without one, or for a valid one."""
        try:
            token = auth.bearer_token(self.request.headers.get("Authorization"))
            if token is not None:
                self.registry.verify(token)
        except Unauthorized as exc:
            return f"the bearer token sent was refused ({exc.message})"
        return None
