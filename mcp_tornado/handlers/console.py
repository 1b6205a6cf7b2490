"""The console at `/`: every hosted server, live, for people; details for admins.

Routes (`console_routes`):

- `GET /`: the page (Tornado templates in `mcp_tornado/templates/`, a little plain JavaScript
  and CSS served from the same folder, no build step). It renders the current state at once and
  then follows `GET /console/events`. Without JavaScript it is the plain table it always was.
- `GET /console/events`: an SSE stream (`ConsoleFeed`): a `snapshot` event, then `diff` events
  as the state changes (at most every 250 ms), keepalive comments, and the end of the stream after
  `MAX_STREAM_SECONDS` (or when the admin token runs out), when EventSource reconnects and the
  cookie is checked again. Bounded like every SSE stream of the gateway (`MCP_SSE_MAX_BUFFER_BYTES`,
  `MCP_SSE_MAX_LAG`) and in number (`MAX_STREAMS` per view: 503 past it).
- `GET|POST /console/login`, `POST /console/logout`: the admin view needs the admin token the
  management API takes. The login form posts it; once it has been verified exactly as the
  management API verifies a Bearer token (signature, expiry, revocation, `"admin": true`) it is
  kept in an `httponly`, `SameSite=Strict` cookie (`secure` when the console is served over
  https: the request's, or `MCP_PUBLIC_URL`'s) that lives no longer than the token, and it is
  verified again on every request. Both forms carry Tornado's XSRF token
  (`check_xsrf_cookie()` here; the application-wide `xsrf_cookies` setting stays off, as it
  would refuse every JSON POST of the MCP and management routes), and a POST from another
  origin is refused.

Everything a console route answers is for the page itself: no CORS, a strict
Content-Security-Policy (scripts and styles from the gateway only), no framing.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import tornado.escape
import tornado.ioloop
import tornado.web

from mcp_tornado import auth
from mcp_tornado.auth import Principal
from mcp_tornado.errors import BadRequest, Forbidden, GatewayError, Unauthorized
from mcp_tornado.handlers.base import BaseHandler
from mcp_tornado.handlers.console_feed import ConsoleFeed, frame, snapshot
from mcp_tornado.handlers.health import status
from mcp_tornado.handlers.sse_response import SseResponse
from mcp_tornado.hosting.registry import ServerRegistry
from mcp_tornado.settings import Settings

logger = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
COOKIE = "mcp_console"
XSRF_COOKIE = "_xsrf"  # Tornado's default name (the `xsrf_cookie_name` setting is not set)
# Browsers drop a cookie past 4096 bytes (name and attributes included): a longer token could
# never be kept, so the login refuses it (the body itself is capped by MCP_MAX_BODY_BYTES).
MAX_TOKEN_CHARS = 3800
# Seconds a console stream lives before the browser reconnects (and its cookie is checked again).
MAX_STREAM_SECONDS = 600.0
# How often an admin stream checks that its token is still good.
ADMIN_RECHECK_SECONDS = 2.0
# Milliseconds EventSource waits before reconnecting to a stream that ended.
RETRY_MS = 2000
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def console_routes(registry: ServerRegistry, settings: Settings) -> list[tuple[Any, ...]]:
    """The console's routes, sharing one feed."""
    args = {"registry": registry, "settings": settings, "feed": ConsoleFeed(registry)}
    return [
        (r"/", ConsolePageHandler, args),
        (r"/console/events", ConsoleEventsHandler, args),
        (r"/console/login", ConsoleLoginHandler, args),
        (r"/console/logout", ConsoleLogoutHandler, args),
        (r"/console/(console\.(?:js|css))", tornado.web.StaticFileHandler, {"path": str(TEMPLATES)}),
    ]


class ConsoleHandler(BaseHandler):
    cors = False  # the console is for its own page; no other origin reads it

    def initialize(self, registry: ServerRegistry, settings: Settings, feed: ConsoleFeed) -> None:
        self.registry = registry
        self.settings_ = settings
        self.feed = feed

    def get_template_path(self) -> str:
        return str(TEMPLATES)

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "same-origin")  # "no-referrer" would make a form's Origin "null"

    async def prepare(self) -> None:
        """The Host check every route makes (DNS rebinding); an Origin is the page's own, or, on
        a GET, one `MCP_ALLOWED_ORIGINS` allows. A form is only ever posted from the console."""
        origin = self.request.headers.get("Origin")
        same_origin = origin is not None and urlsplit(origin).netloc == self.request.headers.get("Host")
        if origin is not None and not same_origin and self.request.method == "POST":
            raise Forbidden("the console's forms are posted from the console only")
        guard = self.application.settings.get("host_guard")
        if guard is not None:
            await guard.check(self.request.headers.get("Host"), None if same_origin else origin)

    @property
    def https(self) -> bool:
        """Served over https: the connection's own TLS, or the public URL the operator set."""
        return self.request.protocol == "https" or (self.settings_.public_url or "").startswith("https://")

    def base_url(self) -> str:
        """The gateway's URL as this browser reaches it, for the client snippets."""
        if self.settings_.public_url:
            return self.settings_.public_url.rstrip("/")
        return f"{self.request.protocol}://{self.request.host}"

    def set_cookie(self, name: str, value: str | bytes, *args: Any, **kwargs: Any) -> None:
        if name == XSRF_COOKIE:  # Tornado's own, set when a form asks for `xsrf_form_html()`
            kwargs.update(httponly=True, samesite="Strict", secure=self.https)
        super().set_cookie(name, value, *args, **kwargs)

    def admin(self) -> Principal | None:
        """The admin the cookie speaks for, verified now; None (and the cookie cleared) without one."""
        token = self.get_cookie(COOKIE)
        if not token:
            return None
        try:
            principal = self.registry.verify(token)
            auth.require_admin(principal)
        except GatewayError:
            self.forget_admin()
            return None
        return principal

    def remember_admin(self, principal: Principal) -> None:
        max_age = None if principal.expires_at is None else max(1, int(principal.expires_at - time.time()))
        self.set_cookie(
            COOKIE, principal.token, path="/", max_age=max_age, httponly=True, secure=self.https, samesite="Strict"
        )

    def forget_admin(self) -> None:
        self.clear_cookie(COOKIE, path="/", httponly=True, secure=self.https, samesite="Strict")

    def page(self, template: str, status_code: int = 200, **values: Any) -> None:
        self.set_status(status_code)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.render(template, **values)


class ConsolePageHandler(ConsoleHandler):
    def get(self) -> None:
        principal = self.admin()
        state = snapshot(self.registry, admin=principal is not None)
        health = status(self.registry)
        initial = {**state, "uptime_seconds": health["uptime_seconds"], "base_url": self.base_url()}
        self.page(
            "console.html",
            state=state,
            uptime=health["uptime_seconds"],
            who=(principal.subject or "admin") if principal is not None else None,
            initial=_script_json(initial),
        )


class ConsoleLoginHandler(ConsoleHandler):
    def get(self) -> None:
        self.page("login.html", message=None, who=self._who())

    def post(self) -> None:
        try:
            self.check_xsrf_cookie()
        except tornado.web.HTTPError:
            self.page("login.html", 403, message="The form expired; please try again.", who=None)
            return
        token = self.get_body_argument("token", "").strip()
        try:
            if not token:
                raise Unauthorized("no token")
            if len(token) > MAX_TOKEN_CHARS:
                raise BadRequest(f"over {MAX_TOKEN_CHARS} characters: too long to keep in a browser's cookie")
            principal = self.registry.verify(token)
            auth.require_admin(principal)
        except GatewayError as exc:
            logger.warning("console: refused a login from %s (%s)", self.request.remote_ip, exc.message)
            if isinstance(exc, Forbidden):
                message = "That is not an admin token."
            elif isinstance(exc, BadRequest):
                message = f"That token is not valid here: {exc.message}."
            else:
                message = "That token is not valid."
            self.page("login.html", exc.status, message=message, who=None)
            return
        self.remember_admin(principal)
        logger.info("console: %s logged in from %s", principal.subject or "admin", self.request.remote_ip)
        self.redirect("/", status=303)

    def _who(self) -> str | None:
        principal = self.admin()
        return None if principal is None else principal.subject or "admin"


class ConsoleLogoutHandler(ConsoleHandler):
    def post(self) -> None:
        self.check_xsrf_cookie()  # 403 otherwise: a page elsewhere cannot log the admin out
        self.forget_admin()
        self.redirect("/", status=303)


class ConsoleEventsHandler(ConsoleHandler):
    _sse: SseResponse | None = None

    async def get(self) -> None:
        principal = self.admin()
        admin = principal is not None
        sse = self._sse = SseResponse(
            self,
            keepalive_interval=self.settings_.sse_keepalive_interval,
            max_buffer_bytes=self.settings_.sse_max_buffer_bytes,
            max_lag=self.settings_.sse_max_lag,
            on_drop=lambda: None,  # `done` resolves; the feed lets go of the stream below
            label="console",
        )
        first = self.feed.subscribe(sse.write_frame, admin=admin)  # 503 at the cap, before anything is sent
        lifetime = MAX_STREAM_SECONDS
        if principal is not None and principal.expires_at is not None:
            lifetime = max(0.0, min(lifetime, principal.expires_at - time.time()))
        ending = tornado.ioloop.IOLoop.current().call_later(lifetime, sse.end)
        # An admin stream ends soon after its token stops being good (revoked, keys rotated away).
        recheck = None
        if principal is not None:
            recheck = tornado.ioloop.PeriodicCallback(
                lambda: None if self._still_admin(principal.token) else sse.end(), ADMIN_RECHECK_SECONDS * 1000
            )
            recheck.start()
        try:
            sse.begin()
            initial = {**first, "uptime_seconds": status(self.registry)["uptime_seconds"], "base_url": self.base_url()}
            sse.write_frame(frame("snapshot", initial, retry_ms=RETRY_MS))
            await sse.done
        finally:
            tornado.ioloop.IOLoop.current().remove_timeout(ending)
            if recheck is not None:
                recheck.stop()
            self.feed.unsubscribe(sse.write_frame)

    def _still_admin(self, token: str) -> bool:
        try:
            auth.require_admin(self.registry.verify(token))
        except GatewayError:
            return False
        return True

    def on_connection_close(self) -> None:
        super().on_connection_close()
        if self._sse is not None:
            self._sse.lost()


def _script_json(value: Any) -> str:
    """JSON to embed in a `<script type="application/json">`: nothing in it can end the element."""
    return tornado.escape.json_encode(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
