"""`Curator`: a backend's lists as its definition curates them (`mcp_tornado.curation_rules`),
applied to what clients send and to what the backend answers.

It works on the wire form (method, params dict; result dict), so one object serves both
paths a request can take to a backend: the SDK runner, through `curated(server, curator)`
(a copy of the backend's lowlevel `Server` with one middleware, the SDK's documented way to
wrap every request), and the 2026-07-28 relay, which passes JSON bodies through as they
are. A request for something the curation hides (a tool left out by include/exclude, or
renamed away) is answered as an unknown one: `-32602 Unknown tool: NAME` (what the MCP spec
gives an unknown tool), `Unknown prompt: NAME`, `Resource not found`; a renamed one goes to
the backend under the backend's name. Lists come back filtered, renamed and overridden.

Per call the work is one dict lookup: each name's fate (its backend name, or refused) is
remembered the first time it is asked for (at most `MAX_REMEMBERED_NAMES` names; past it a
name is worked out each time from the patterns, compiled once into one regular expression).
An in-process server needs none of this: its own entries are curated once, at load.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.lowlevel.server import Server
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS
from pydantic import BaseModel

from mcp_tornado.curation_rules import Curation, ListRules

# Names whose fate is remembered per list; a client making up names cannot grow memory past it.
MAX_REMEMBERED_NAMES = 4096
_REFUSED = ""  # remembered for a name that may not be asked for (no backend name is empty)

Refusal = Callable[[str], MCPError]


class _CuratedList:
    """One list's rules, with each name's fate remembered: `inbound` for what clients ask by,
    `shown` for what the backend lists."""

    def __init__(self, rules: ListRules, key: str, refusal: Refusal) -> None:
        self.rules = rules
        self.key = key  # "name", or "uri" / "uriTemplate" for resources
        self.refusal = refusal
        self._inbound: dict[str, str] = {}
        self._shown: dict[str, str] = {}

    def backend_name(self, served: str) -> str:
        """The backend's name for `served`; raises the refusal when it may not be asked for."""
        original = self._inbound.get(served)
        if original is None:
            original = self.rules.backend_name(served) or _REFUSED
            if len(self._inbound) < MAX_REMEMBERED_NAMES:
                self._inbound[served] = original
        if not original:
            raise self.refusal(served)
        return original

    def show(self, entries: list[Any]) -> list[Any]:
        """The entries of a list result that clients may see, as they see them."""
        shown = []
        for entry in entries:
            name = entry.get(self.key) if isinstance(entry, Mapping) else None
            if not isinstance(name, str):
                continue
            served = self._shown.get(name)
            if served is None:
                served = self.rules.served_name(name) or _REFUSED
                if len(self._shown) < MAX_REMEMBERED_NAMES:
                    self._shown[name] = served
            if not served:
                continue
            fields = self.rules.override.get(name)
            if served == name and not fields:
                shown.append(entry)
                continue
            entry = {**entry, self.key: served}
            if fields:
                entry.update({k: v for k, v in fields.items() if k != "annotations"})
                if "annotations" in fields:
                    entry["annotations"] = {**(entry.get("annotations") or {}), **fields["annotations"]}
            shown.append(entry)
        return shown


def _unknown_tool(name: str) -> MCPError:
    return MCPError(code=INVALID_PARAMS, message=f"Unknown tool: {name}")


def _unknown_prompt(name: str) -> MCPError:
    return MCPError(code=INVALID_PARAMS, message=f"Unknown prompt: {name}")


def _unknown_resource(uri: str) -> MCPError:
    return MCPError(code=INVALID_PARAMS, message="Resource not found", data={"uri": uri})


class Curator:
    """The rules of one definition, compiled; see the module docstring."""

    def __init__(self, curation: Curation) -> None:
        self.curation = curation
        self.tools = _CuratedList(curation.tools, "name", _unknown_tool)
        self.prompts = _CuratedList(curation.prompts, "name", _unknown_prompt)
        resources = _CuratedList(curation.resources, "uri", _unknown_resource)
        templates = _CuratedList(curation.resources, "uriTemplate", _unknown_resource)
        # method -> (the params key naming the entry, its list); only the lists that are curated.
        self._requests: dict[str, tuple[str, _CuratedList]] = {}
        # method -> (the result key holding the entries, their list)
        self._results: dict[str, tuple[str, _CuratedList]] = {}
        if curation.tools.active:
            self._requests["tools/call"] = ("name", self.tools)
            self._results["tools/list"] = ("tools", self.tools)
        if curation.prompts.active:
            self._requests["prompts/get"] = ("name", self.prompts)
            self._results["prompts/list"] = ("prompts", self.prompts)
        if curation.resources.active:
            for method in ("resources/read", "resources/subscribe", "resources/unsubscribe"):
                self._requests[method] = ("uri", resources)
            self._results["resources/list"] = ("resources", resources)
            self._results["resources/templates/list"] = ("resourceTemplates", templates)
        self._templates = templates

    def request(self, method: str, params: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        """`params` as the backend must get them (a renamed entry under its backend name).
        Raises `MCPError` (the unknown-entry error) for what the curation hides."""
        curated = self._requests.get(method)
        if curated is None:
            return self._completion(params) if method == "completion/complete" else params
        key, entries = curated
        asked = params.get(key) if params is not None else None
        if not isinstance(asked, str):
            return params  # malformed: the backend refuses it as it would anyway
        original = entries.backend_name(asked)
        return params if original == asked else {**params, key: original}  # type: ignore[dict-item]

    def _completion(self, params: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        ref = params.get("ref") if params is not None else None
        if not isinstance(ref, Mapping):
            return params
        if ref.get("type") == "ref/prompt" and self.curation.prompts.active and isinstance(ref.get("name"), str):
            original = self.prompts.backend_name(ref["name"])
            return params if original == ref["name"] else {**params, "ref": {**ref, "name": original}}  # type: ignore[dict-item]
        if ref.get("type") == "ref/resource" and self.curation.resources.active and isinstance(ref.get("uri"), str):
            self._templates.backend_name(ref["uri"])
        return params

    def result(self, method: str, result: Any) -> Any:
        """A list result as clients may see it (any other result unchanged)."""
        curated = self._results.get(method)
        if curated is None:
            return result
        if isinstance(result, BaseModel):  # a handler's own answer, when driven outside the SDK runner
            result = result.model_dump(by_alias=True, mode="json", exclude_none=True)
        if not isinstance(result, Mapping):
            return result
        key, entries = curated
        listed = result.get(key)
        if not isinstance(listed, list):
            return result
        return {**result, key: entries.show(listed)}

    def input_schema(
        self, inner: Callable[[str], Mapping[str, Any] | None]
    ) -> Callable[[str], Mapping[str, Any] | None]:
        """`Server.get_tool_input_schema` by the names clients call (None for a hidden tool)."""

        def schema_of(name: str) -> Mapping[str, Any] | None:
            try:
                original = self.tools.backend_name(name)
            except MCPError:
                return None
            return inner(original)

        return schema_of

    async def middleware(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """The SDK middleware: requests rewritten (or refused) on the way in, lists on the way out."""
        params = ctx.params if isinstance(ctx.params, Mapping) else None
        curated = self.request(ctx.method, params)
        if curated is not params:
            ctx = dataclasses.replace(ctx, params=curated)
        return self.result(ctx.method, await call_next(ctx))


def curated(server: Server[Any], curation: Curation) -> Server[Any]:
    """`server` with `curation` applied: itself when there is nothing to curate, else a
    shallow copy (the original, perhaps a user's `app:` object, is left as it was) with the
    curation's middleware innermost."""
    if not curation.active:
        return server
    curator = Curator(curation)
    copied = copy.copy(server)
    copied.middleware = [*server.middleware, curator.middleware]
    if server.get_tool_input_schema is not None and curation.tools.active:
        copied.get_tool_input_schema = curator.input_schema(server.get_tool_input_schema)
    return copied
