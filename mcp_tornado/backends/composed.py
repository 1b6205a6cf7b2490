"""`compose:` one route serving what other hosted servers (its members) serve, under namespaced names.

Naming: a member's tool or prompt `t` is `{prefix}{separator}{t}` on the composed route (the
prefix is the member's route name unless the definition gives one, the separator `_` unless
given); `prefix: ""` keeps a member's names as they are. Resources and resource templates keep
their URIs. A definition whose prefixes could ever meet is refused at load
(`definitions._members`); what can only meet at runtime goes to the member listed first: a
URI two members list, a template two members list, and an unprefixed member's name that starts
with another member's prefix (that one's name wins). The loser is left out of the lists, and
named once in the log and under `conflicts` in `GET /servers/{name}`.

Members are looked up by name on every request through `resolve` (the registry's live table),
so a member defined later, reloaded or removed is followed without reloading this server. A
request is handed to the member's own lowlevel `Server` (its handlers and middleware: the
member's curated view, its timeout, its handler pool, its supervised child or upstream) with the
composed session's context, so the member's progress, logs and requests to the client
(sampling, elicitation, roots) reach the composed session.

Who sees a member: a member down (a crashed or restarting child, an unreachable upstream, no
such server) is left out of every list and its calls answer an error naming it; a member with
`api_keys` is seen only by tokens whose `apiKey` it accepts. A member that needs scopes the
composed server does not ask of every caller, a private member of a public composed server,
and a composed member (no nesting) are left out for everyone (and refused at load when they
are known then). A member's tool with `tool_scopes` is shown only when the composed server's
`scopes` (or its own `tool_scopes` for the namespaced name) ask for at least as much.

A watcher (`WATCH_INTERVAL`, or at once when the registry says members changed) notices a
member going down, coming back, restarting or being replaced, and tells the composed sessions
(`notifications/{tools,resources,prompts}/list_changed`); a member's own list_changed and
resource updates are relayed as they come (`follow`).

Long because routing one route onto many servers is one thing: the names, who sees what, the
member's session state and the notifications all need each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import anyio
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp.shared.uri_template import InvalidUriTemplate, UriTemplate
from mcp_types import CONNECTION_CLOSED, INTERNAL_ERROR, INVALID_PARAMS, METHOD_NOT_FOUND, REQUEST_TIMEOUT
from pydantic import BaseModel

from mcp_tornado.auth import ApiKeys
from mcp_tornado.backends import results
from mcp_tornado.backends.base import Backend, spec_server
from mcp_tornado.backends.context import LOG_LEVELS
from mcp_tornado.backends.curation import curated
from mcp_tornado.backends.state import BackendState
from mcp_tornado.definitions import MemberSpec, ServerSpec
from mcp_tornado.errors import DefinitionError, Unavailable
from mcp_tornado.request_info import RequestInfo

logger = logging.getLogger(__name__)

# Seconds between looks at the members' states (a crash is noticed within this).
WATCH_INTERVAL = 0.25
# Pages of one member's list followed for one composed list (a member's list is bounded too).
MAX_MEMBER_PAGES = 100
# Runtime name collisions remembered for the admin view (each is logged once).
MAX_CONFLICTS = 100

Follower = Callable[[str, str, Mapping[str, Any] | None, set[str] | None], Awaitable[None]]
"""`follower(member, method, params, session_ids)`: a member's notification to its sessions."""


class Member(Protocol):
    """A hosted server as a composed server uses it (hosting's `HostedServer` is one)."""

    spec: ServerSpec
    backend: Backend
    api_keys: ApiKeys
    followers: set[Follower]


Resolve = Callable[[str], Member | None]
"""The member hosted under a route name now, or None."""


class MemberDown(Exception):
    """A member cannot serve now; the message names it."""


class ComposedBackend(Backend):
    kind = "compose"

    def __init__(self, spec: ServerSpec, *, resolve: Resolve) -> None:
        self.spec = spec
        self._resolve = resolve
        self._members = spec.compose
        self._heads = [(m.prefix + spec.separator, m) for m in spec.compose if m.prefix]
        self._unprefixed = next((m for m in spec.compose if not m.prefix), None)
        self._scopes = frozenset(spec.scopes)
        # Sessions each member backend was told about (`session_opened`), to tell it of their end.
        self._opened: weakref.WeakKeyDictionary[Backend, set[str]] = weakref.WeakKeyDictionary()
        self._uri_owner: dict[str, str] = {}  # from the last resources/list: URI -> member
        self._templates: list[tuple[str, UriTemplate, str]] = []  # from the last templates/list
        self.conflicts: dict[str, str] = {}
        self._wake = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None
        for member in spec.compose:  # what is known now is checked now: file:line
            found = resolve(member.server)
            why = self._excluded(found) if found is not None else None
            if why is not None:
                raise DefinitionError(spec.source, member.line, f"compose: {member.server!r} {why}", field="compose")
        server = spec_server(
            spec,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
            on_list_prompts=self._list_prompts,
            on_get_prompt=self._get_prompt,
            on_list_resources=self._list_resources,
            on_list_resource_templates=self._list_templates,
            on_read_resource=self._read_resource,
            on_subscribe_resource=self._subscribe,
            on_unsubscribe_resource=self._unsubscribe,
            on_completion=self._complete,
            on_set_logging_level=self._set_level,
        )
        # The composed server's own `tools: {include, exclude, rename, ...}` apply to the namespaced names.
        super().__init__(curated(server, spec.curation), list_changed=True)

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        await super().start()
        if self._watcher is None:
            self._watcher = asyncio.ensure_future(self._watch())

    async def stop(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)  # our own cancellation still reaches us
        for member in self._members:
            found = self._resolve(member.server)
            if found is not None:
                found.followers.discard(self.follow)
        for backend, sessions in list(self._opened.items()):
            for session_id in list(sessions):
                await _quietly(backend.session_closed(session_id))
        self._opened.clear()
        await super().stop()

    def members_changed(self) -> None:
        """The registry added, replaced or removed a server: look at the members now."""
        self._wake.set()

    async def session_closed(self, session_id: str) -> None:
        for backend, sessions in list(self._opened.items()):
            if session_id in sessions:
                sessions.discard(session_id)
                await _quietly(backend.session_closed(session_id))

    def describe(self) -> dict[str, Any]:
        members = []
        for member in self._members:
            found = self._resolve(member.server)
            entry: dict[str, Any] = {"server": member.server, "prefix": member.prefix}
            if found is None:
                entry["state"] = "missing"
            else:
                entry["state"] = found.backend.describe().get("state")
                why = self._excluded(found)
                if why is not None:
                    entry["excluded"] = why
            members.append(entry)
        return {**super().describe(), "members": members, "conflicts": sorted(self.conflicts.values())}

    # -- who serves what ------------------------------------------------------------------------

    def _excluded(self, member: Member) -> str | None:
        """Why `member` is left out for every caller; None when it is not."""
        if member.spec.backend == "compose":
            return "is a composed server itself (composed servers do not nest)"
        if self.spec.public and not member.spec.public:
            return "needs a token, and this composed server is public (auth: none)"
        missing = [s for s in member.spec.scopes if s not in self._scopes]
        if missing:
            return f"needs scope {' '.join(missing)}, which this composed server does not ask of its callers"
        return None

    def _usable(self, member: MemberSpec) -> Member:
        """The member, if it can serve now; raises `MemberDown` naming it otherwise."""
        found = self._resolve(member.server)
        if found is None:
            raise MemberDown(f"member server {member.server!r} is not defined")
        if self._excluded(found) is not None:
            raise MemberDown(f"member server {member.server!r} is not available on this route")
        state = _state_of(found.backend)
        if state.down:
            raise MemberDown(f"member server {member.server!r} is {state.value}")
        return found

    def _visible(self, ctx: ServerRequestContext[Any, Any]) -> list[tuple[MemberSpec, Member]]:
        """The members this caller sees now, in order."""
        api_key = ctx.request.api_key if isinstance(ctx.request, RequestInfo) else None
        seen = []
        for member in self._members:
            try:
                found = self._usable(member)
            except MemberDown:
                continue
            if found.api_keys and not found.api_keys.accepts(api_key):
                continue
            seen.append((member, found))
        return seen

    def _for_caller(self, ctx: ServerRequestContext[Any, Any], member: MemberSpec, what: str) -> Member:
        """The member `what` belongs to, for this caller: `MemberDown` when it cannot serve, an
        unknown `what` when the caller's key does not open it (as if it were not there)."""
        found = self._usable(member)
        api_key = ctx.request.api_key if isinstance(ctx.request, RequestInfo) else None
        if found.api_keys and not found.api_keys.accepts(api_key):
            raise MCPError(code=INVALID_PARAMS, message=f"Unknown {what}")
        return found

    def _route(self, name: str) -> tuple[MemberSpec, str] | None:
        """The member a namespaced tool or prompt name belongs to, and its own name there."""
        for head, member in self._heads:
            if name.startswith(head) and len(name) > len(head):
                return member, name[len(head) :]
        if self._unprefixed is not None:
            return self._unprefixed, name
        return None

    def _exposed(self, member: MemberSpec, name: str, kind: str) -> str | None:
        """`name` of `member` as this route shows it; None when another member's prefix takes it."""
        if member.prefix:
            return member.prefix + self.spec.separator + name
        routed = self._route(name)
        if routed is not None and routed[0] is not member:
            self._conflict(
                f"{kind} {name!r} of {member.server!r} is hidden: the prefix of {routed[0].server!r} takes it"
            )
            return None
        return name

    def _tool_shown(self, member: Member, name: str, exposed: str) -> bool:
        needed = member.spec.tool_scopes.get(name)
        if not needed:
            return True
        asked = self._scopes | frozenset(self.spec.tool_scopes.get(exposed, ()))
        return asked.issuperset(needed)

    def _conflict(self, text: str) -> None:
        if text not in self.conflicts and len(self.conflicts) < MAX_CONFLICTS:
            self.conflicts[text] = text
            logger.warning("%s: %s", self.spec.name, text)

    # -- handing a request to a member ------------------------------------------------------------

    async def _dispatch(
        self,
        member: Member,
        ctx: ServerRequestContext[Any, Any],
        method: str,
        params: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        """`method` served by the member's own server, in the composed request's context."""
        backend = member.backend
        await self._enter(backend, ctx, member.spec.name)
        server = backend.server
        entry = server.get_request_handler(method)
        if entry is None:
            raise MCPError(code=METHOD_NOT_FOUND, message=f"{member.spec.name} does not serve {method}")
        inner_ctx = dataclasses.replace(ctx, method=method, params=params, lifespan_context=backend.lifespan_state)
        fast = None if server.middleware else backend.fast_paths.get(method)

        async def handle(c: ServerRequestContext[Any, Any]) -> Any:
            if fast is not None:
                return await fast(c, c.params)
            typed = entry.params_type.model_validate({} if c.params is None else c.params, by_name=False)
            result = await entry.handler(c, typed)
            if isinstance(result, types.ErrorData):
                raise MCPError.from_error_data(result)
            return result

        call: Callable[[ServerRequestContext[Any, Any]], Awaitable[Any]] = handle
        for middleware in reversed(server.middleware):  # the member's own chain, outermost first
            call = _bind(middleware, call)
        if backend.request_timeout is None:
            return _wire(await call(inner_ctx))
        try:
            with anyio.fail_after(backend.request_timeout):
                return _wire(await call(inner_ctx))
        except TimeoutError:
            message = f"member server {member.spec.name!r} did not answer within {backend.request_timeout:g} s"
            raise MCPError(code=REQUEST_TIMEOUT, message=message) from None

    async def _enter(self, backend: Backend, ctx: ServerRequestContext[Any, Any], name: str) -> None:
        """Make sure `backend` can serve this session (its own child, for `per_session` members)."""
        session_id = ctx.request.session_id if isinstance(ctx.request, RequestInfo) else None
        try:
            if not backend.always_ready:
                await backend.ready()
            if session_id is None:
                return
            opened = self._opened.setdefault(backend, set())
            if session_id not in opened:
                await backend.session_opened(session_id)
                opened.add(session_id)
            if not backend.always_ready:
                await backend.session_ready(session_id)
        except Unavailable as exc:
            raise MemberDown(f"member server {name!r}: {exc.message}") from None

    async def _collect(
        self, ctx: ServerRequestContext[Any, Any], method: str, key: str
    ) -> list[tuple[MemberSpec, Member, list[Any]]]:
        """Every visible member's whole `method` list (all pages), side by side; a member that
        fails to answer is left out of this one (and logged)."""
        visible = self._visible(ctx)

        async def one(member: Member) -> list[Any]:
            items: list[Any] = []
            cursor: str | None = None
            for _ in range(MAX_MEMBER_PAGES):
                page = await self._dispatch(member, ctx, method, {"cursor": cursor} if cursor else None)
                items.extend(page.get(key) or [])
                cursor = page.get("nextCursor")
                if not cursor:
                    break
            return items

        answers = await asyncio.gather(*(one(found) for _, found in visible), return_exceptions=True)
        collected = []
        for (member, found), answer in zip(visible, answers, strict=True):
            if isinstance(answer, BaseException):
                if not isinstance(answer, Exception):
                    raise answer
                logger.info("%s: %s of member %s failed: %s", self.spec.name, method, member.server, answer)
                continue
            collected.append((member, found, answer))
        return collected

    # -- tools ------------------------------------------------------------------------------------

    async def _list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> Any:
        tools = []
        for member, found, listed in await self._collect(ctx, "tools/list", "tools"):
            for tool in listed:
                exposed = self._exposed(member, tool["name"], "tool")
                if exposed is not None and self._tool_shown(found, tool["name"], exposed):
                    tools.append({**tool, "name": exposed})
        page, cursor = results.page(tools, params)
        return {"tools": page, **({"nextCursor": cursor} if cursor else {})}

    async def _call_tool(self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams) -> Any:
        routed = self._route(params.name)
        if routed is None:
            raise MCPError(code=INVALID_PARAMS, message=f"Unknown tool: {params.name}")
        member, name = routed
        try:
            found = self._for_caller(ctx, member, f"tool: {params.name}")
        except MemberDown as down:
            return results.error_result(f"Tool {params.name} is unavailable: {down}")
        if self._exposed(member, name, "tool") is None or not self._tool_shown(found, name, params.name):
            raise MCPError(code=INVALID_PARAMS, message=f"Unknown tool: {params.name}")
        try:
            return await self._dispatch(found, ctx, "tools/call", {**(ctx.params or {}), "name": name})
        except MemberDown as down:
            return results.error_result(f"Tool {params.name} is unavailable: {down}")
        except MCPError as exc:
            if found.backend.always_ready or exc.error.code not in (INTERNAL_ERROR, CONNECTION_CLOSED):
                raise
            # The member's child or upstream went away under the call: say which member.
            cause = exc.error.message
            return results.error_result(f"Tool {params.name} failed: member server {member.server!r}: {cause}")

    # -- prompts ----------------------------------------------------------------------------------

    async def _list_prompts(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> Any:
        prompts = []
        for member, _, listed in await self._collect(ctx, "prompts/list", "prompts"):
            for prompt in listed:
                exposed = self._exposed(member, prompt["name"], "prompt")
                if exposed is not None:
                    prompts.append({**prompt, "name": exposed})
        page, cursor = results.page(prompts, params)
        return {"prompts": page, **({"nextCursor": cursor} if cursor else {})}

    async def _get_prompt(self, ctx: ServerRequestContext[Any, Any], params: types.GetPromptRequestParams) -> Any:
        routed = self._route(params.name)
        if routed is None or self._exposed(*routed, "prompt") is None:
            raise MCPError(code=INVALID_PARAMS, message=f"Unknown prompt: {params.name}")
        member, name = routed
        found = self._member_or_error(ctx, member, f"prompt: {params.name}")
        return await self._guarded(found, ctx, "prompts/get", {**(ctx.params or {}), "name": name})

    # -- resources --------------------------------------------------------------------------------

    async def _list_resources(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> Any:
        merged = await self._merged_resources(ctx)
        page, cursor = results.page(merged, params)
        return {"resources": page, **({"nextCursor": cursor} if cursor else {})}

    async def _merged_resources(self, ctx: ServerRequestContext[Any, Any]) -> list[Any]:
        merged: list[Any] = []
        owners: dict[str, str] = {}
        for member, _, listed in await self._collect(ctx, "resources/list", "resources"):
            for resource in listed:
                uri = resource.get("uri")
                if uri in owners:
                    if owners[uri] != member.server:
                        self._conflict(
                            f"resource {uri!r} of {member.server!r} is hidden: {owners[uri]!r} lists it first"
                        )
                    continue
                owners[uri] = member.server
                merged.append(resource)
        self._uri_owner = owners  # a whole listing: URIs no member lists any more are forgotten
        return merged

    async def _list_templates(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> Any:
        merged = await self._merged_templates(ctx)
        page, cursor = results.page(merged, params)
        return {"resourceTemplates": page, **({"nextCursor": cursor} if cursor else {})}

    async def _merged_templates(self, ctx: ServerRequestContext[Any, Any]) -> list[Any]:
        merged: list[Any] = []
        owners: dict[str, str] = {}
        parsed: list[tuple[str, UriTemplate, str]] = []
        for member, _, listed in await self._collect(ctx, "resources/templates/list", "resourceTemplates"):
            for template in listed:
                text = template.get("uriTemplate")
                if text in owners:
                    if owners[text] != member.server:
                        self._conflict(
                            f"template {text!r} of {member.server!r} is hidden: {owners[text]!r} lists it first"
                        )
                    continue
                owners[text] = member.server
                merged.append(template)
                with contextlib.suppress(InvalidUriTemplate, TypeError):
                    parsed.append((text, UriTemplate.parse(text), member.server))
        self._templates = parsed
        return merged

    async def _owner_of(self, ctx: ServerRequestContext[Any, Any], uri: str) -> MemberSpec | None:
        """The member a URI belongs to: the one listing it first, else the first whose template matches."""
        by_name = {m.server: m for m in self._members}
        owner = self._uri_owner.get(uri)
        if owner is None:
            await self._merged_resources(ctx)
            owner = self._uri_owner.get(uri)
        if owner is None:
            if not any(template.match(uri) is not None for _, template, _ in self._templates):
                await self._merged_templates(ctx)
            owner = next((server for _, template, server in self._templates if template.match(uri) is not None), None)
        return by_name.get(owner) if owner is not None else None

    async def _read_resource(self, ctx: ServerRequestContext[Any, Any], params: types.ReadResourceRequestParams) -> Any:
        uri = str(params.uri)
        member = await self._owner_of(ctx, uri)
        if member is None:
            raise MCPError(code=INVALID_PARAMS, message=f"Unknown resource: {uri}")
        found = self._member_or_error(ctx, member, f"resource: {uri}")
        return await self._guarded(found, ctx, "resources/read", ctx.params)

    async def _subscribe(self, ctx: ServerRequestContext[Any, Any], params: types.SubscribeRequestParams) -> Any:
        return await self._to_owner(ctx, str(params.uri), "resources/subscribe")

    async def _unsubscribe(self, ctx: ServerRequestContext[Any, Any], params: types.UnsubscribeRequestParams) -> Any:
        return await self._to_owner(ctx, str(params.uri), "resources/unsubscribe")

    async def _to_owner(self, ctx: ServerRequestContext[Any, Any], uri: str, method: str) -> Any:
        member = await self._owner_of(ctx, uri)
        if member is None:
            raise MCPError(code=INVALID_PARAMS, message=f"Unknown resource: {uri}")
        found = self._member_or_error(ctx, member, f"resource: {uri}")
        if found.backend.server.get_request_handler(method) is None:
            return types.EmptyResult()  # the member sends no updates: nothing to subscribe to
        return await self._guarded(found, ctx, method, ctx.params)

    # -- completion, logging ----------------------------------------------------------------------

    async def _complete(self, ctx: ServerRequestContext[Any, Any], params: types.CompleteRequestParams) -> Any:
        raw = dict(ctx.params or {})
        ref = dict(raw.get("ref") or {})
        member: MemberSpec | None = None
        if isinstance(params.ref, types.PromptReference):
            routed = self._route(params.ref.name)
            if routed is not None and self._exposed(*routed, "prompt") is not None:
                member, ref["name"] = routed
        else:
            uri = params.ref.uri
            owner = next((server for text, _, server in self._templates if text == uri), None)
            if owner is None:
                await self._merged_templates(ctx)
                owner = next((server for text, _, server in self._templates if text == uri), None)
            member = next((m for m in self._members if m.server == owner), None) or await self._owner_of(ctx, uri)
        if member is None:
            return types.CompleteResult(completion=types.Completion(values=[]))
        try:
            found = self._for_caller(ctx, member, "reference")
            if found.backend.server.get_request_handler("completion/complete") is None:
                return types.CompleteResult(completion=types.Completion(values=[]))
            return await self._dispatch(found, ctx, "completion/complete", {**raw, "ref": ref})
        except (MemberDown, MCPError):
            return types.CompleteResult(completion=types.Completion(values=[]))

    async def _set_level(self, ctx: ServerRequestContext[Any, Any], params: types.SetLevelRequestParams) -> Any:
        """The session's log level, which every member's logs to this session are held to."""
        if isinstance(ctx.request, RequestInfo) and params.level in LOG_LEVELS:
            ctx.request.log_level = params.level
        return types.EmptyResult()

    def _member_or_error(self, ctx: ServerRequestContext[Any, Any], member: MemberSpec, what: str) -> Member:
        try:
            return self._for_caller(ctx, member, what)
        except MemberDown as down:
            kind, _, name = what.partition(": ")
            raise MCPError(code=INTERNAL_ERROR, message=f"{kind.capitalize()} {name} is unavailable: {down}") from None

    async def _guarded(
        self, member: Member, ctx: ServerRequestContext[Any, Any], method: str, params: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        try:
            return await self._dispatch(member, ctx, method, params)
        except MemberDown as down:
            raise MCPError(code=INTERNAL_ERROR, message=str(down)) from None

    # -- what members tell, and what changes ------------------------------------------------------

    async def follow(
        self, member: str, method: str, params: Mapping[str, Any] | None, session_ids: set[str] | None
    ) -> None:
        """A member's notification to its sessions: list changes and resource updates go on to ours."""
        if self.publish is None or not any(m.server == member for m in self._members):
            return
        if method.endswith("/list_changed"):
            await self.publish(method, None, None)
        elif method == "notifications/resources/updated" and session_ids:
            await self.publish(method, params, session_ids)  # only sessions of ours that subscribed

    def _snapshot(self) -> tuple[Any, ...]:
        """What the lists depend on besides the members' own lists; follows each member found."""
        seen: list[tuple[int, bool, Any] | None] = []
        for member in self._members:
            found = self._resolve(member.server)
            if found is None:
                seen.append(None)
                continue
            found.followers.add(self.follow)
            described = found.backend.describe()
            seen.append((id(found.backend), _state_of(found.backend).down, described.get("restarts")))
        return tuple(seen)

    async def _watch(self) -> None:
        seen = self._snapshot()
        while True:
            # Not `wait_for`: on Python 3.11 it can swallow a cancel that meets a wake-up (gh-86296).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(WATCH_INTERVAL):
                    await self._wake.wait()
            self._wake.clear()
            now = self._snapshot()
            if now == seen:
                continue
            seen = now
            self._uri_owner.clear()
            self._templates = []
            if self.publish is not None:
                for kind in ("tools", "resources", "prompts"):
                    await _quietly(self.publish(f"notifications/{kind}/list_changed", None, None))


def _state_of(backend: Backend) -> BackendState:
    try:
        return BackendState(str(backend.describe().get("state")))
    except ValueError:
        return BackendState.RUNNING


def _wire(result: Any) -> dict[str, Any]:
    if isinstance(result, BaseModel):
        return result.model_dump(by_alias=True, mode="json", exclude_none=True)
    if isinstance(result, dict):
        return result
    return {}


def _bind(middleware: Any, call_next: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def call(ctx: ServerRequestContext[Any, Any]) -> Any:
        return await middleware(ctx, call_next)

    return call


async def _quietly(awaitable: Awaitable[Any]) -> None:
    """A notification or clean-up that must not stop the rest."""
    try:
        await awaitable
    except Exception:
        logger.debug("composed server: ignored failure", exc_info=True)
