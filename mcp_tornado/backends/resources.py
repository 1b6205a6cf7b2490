"""`ResourceShelf`: an in-process server's resources: fixed ones, templated ones, subscriptions.

A `resources:` entry has one URI and a `text` or a `handler(uri, context)`; a
`resource_templates:` entry names many by an RFC 6570 template (the SDK's `UriTemplate`
matches them) and its `handler(variables, context)` reads the one asked for. Clients may
subscribe to any URI; a handler announces a change with `await context.resource_updated(uri)`
and the subscribed sessions hear `notifications/resources/updated`.
"""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable
from typing import Any

import mcp_types as types
from mcp.shared.exceptions import MCPError
from mcp.shared.uri_template import UriTemplate
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS

from mcp_tornado.backends import results
from mcp_tornado.definitions import ResourceSpec, ServerSpec

Load = Callable[[str | None, int | None, str], Callable[..., Any]]
"""`load(reference, line, field)`: a handler imported, or a `DefinitionError`."""
Invoke = Callable[[str, Callable[..., Any], Any], Awaitable[Any]]
"""`invoke(what, fn, argument)`: a handler run under the server's timeout."""


class ResourceShelf:
    def __init__(self, spec: ServerSpec, load: Load) -> None:
        self._fixed = {
            r.uri: (r, load(r.handler, r.line, f"resources.{i}.handler") if r.handler else None)
            for i, r in enumerate(spec.resources)
        }
        self._templates = [
            (t, UriTemplate.parse(t.uri_template), load(t.handler, t.line, f"resource_templates.{i}.handler"))
            for i, t in enumerate(spec.resource_templates)
        ]
        self._listed = [
            types.Resource(uri=r.uri, name=r.name, title=r.title, description=r.description, mime_type=r.mime_type)
            for r in spec.resources
        ]
        self._listed_templates = [
            types.ResourceTemplate(
                uri_template=t.uri_template,
                name=t.name,
                title=t.title,
                description=t.description,
                mime_type=t.mime_type,
            )
            for t in spec.resource_templates
        ]
        self._subscribers: collections.defaultdict[str, set[str]] = collections.defaultdict(set)

    def __bool__(self) -> bool:
        return bool(self._fixed or self._templates)

    def list(self, params: types.PaginatedRequestParams | None) -> types.ListResourcesResult:
        page, cursor = results.page(self._listed, params)
        return types.ListResourcesResult(resources=page, next_cursor=cursor)

    def list_templates(self, params: types.PaginatedRequestParams | None) -> types.ListResourceTemplatesResult:
        page, cursor = results.page(self._listed_templates, params)
        return types.ListResourceTemplatesResult(resource_templates=page, next_cursor=cursor)

    async def read(self, uri: str, invoke: Invoke) -> types.ReadResourceResult:
        """The contents at `uri`: a fixed resource, else the first template that matches."""
        entry = self._fixed.get(uri)
        if entry is not None:
            spec, fn = entry
            value = spec.text if fn is None else await invoke(f"Resource {uri}", fn, uri)
            return _contents(spec, value)
        for template, parsed, fn in self._templates:
            variables = parsed.match(uri)
            if variables is not None:
                value = await invoke(f"Resource {uri}", fn, dict(variables))
                shaped = ResourceSpec(uri=uri, name=template.name, mime_type=template.mime_type)
                return _contents(shaped, value)
        # INVALID_PARAMS, as the SDK's MCPServer answers it (SEP-2164; -32002 is retired).
        raise MCPError(code=INVALID_PARAMS, message="Resource not found", data={"uri": uri})

    def subscribe(self, session_id: str | None, uri: str) -> None:
        if session_id is not None:
            self._subscribers[uri].add(session_id)

    def unsubscribe(self, session_id: str | None, uri: str) -> None:
        subscribers = self._subscribers.get(uri)
        if subscribers is not None:
            subscribers.discard(session_id or "")
            if not subscribers:
                del self._subscribers[uri]

    def forget(self, session_id: str) -> None:
        """A session ended: it subscribes to nothing any more."""
        for uri in [uri for uri, ids in self._subscribers.items() if session_id in ids]:
            self.unsubscribe(session_id, uri)

    def subscribers(self, uri: str) -> set[str]:
        return set(self._subscribers.get(uri, ()))


def _contents(spec: ResourceSpec, value: Any) -> types.ReadResourceResult:
    try:
        return types.ReadResourceResult(contents=results.resource_contents(spec, value))
    except results.NotJSON:
        message = f"Resource {spec.uri} returned a value that is not valid JSON (NaN or Infinity)"
        raise MCPError(code=INTERNAL_ERROR, message=message) from None
