"""In-process servers: tools, resources and prompts from YAML, handlers from `servers.d/*.py`.

Everything fallible (imports, schema compilation) happens once in `InProcessBackend(...)`,
so a definition that loads is a definition that runs, and a call does no re-validation of
static data. Sync handlers run on this server's own `HandlerPool`: a handler that blocks can
only ever starve its own server, and never keeps the process from exiting. Every handler (tool,
resource, prompt) runs under the server's `timeout`. A tool's exception, timeout or non-JSON
value (NaN, Infinity) becomes a result with `isError: true`; a resource's or prompt's, a
JSON-RPC error. Tracebacks go to the log, never to the client.

Long because it is one backend's whole surface (tools, resources, prompts, completion) with the
hot path's shortcuts beside the SDK handlers they stand in for.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import Server
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS, REQUEST_TIMEOUT
from mcp_types.methods import is_input_required
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from mcp_tornado.backends import results, rounds
from mcp_tornado.backends.arguments import OFF_LOOP_ELEMENTS, SchemaCheck, larger_than, problem_with, validator_for
from mcp_tornado.backends.base import Backend, spec_server
from mcp_tornado.backends.context import LOG_LEVELS, SyncToolContext, ToolContext
from mcp_tornado.backends.handler_pool import HandlerPool, PoolExhausted
from mcp_tornado.backends.resources import ResourceShelf
from mcp_tornado.deadlines import Deadlines
from mcp_tornado.definitions import ServerSpec
from mcp_tornado.errors import DefinitionError
from mcp_tornado.importer import ImportFromStringError, import_from_string
from mcp_tornado.request_info import RequestInfo

logger = logging.getLogger(__name__)


# A `tools/call`'s params with only these keys need no model to check them (`_fast_call_tool`).
_PLAIN_CALL = frozenset({"name", "arguments"})


@dataclasses.dataclass(frozen=True, slots=True)
class _Tool:
    fn: Callable[..., Any]
    is_async: bool
    validator: SchemaCheck
    output_validator: SchemaCheck | None


class InProcessBackend(Backend):
    kind = "inprocess"

    def __init__(self, spec: ServerSpec, *, search_path: Path | None, threads: int, max_abandoned: int) -> None:
        self.spec = spec
        self._handlers = HandlerPool(spec.name, size=threads, max_abandoned=max_abandoned)
        self._deadlines = Deadlines(spec.timeout)  # one timer for every async handler's timeout
        self._tools: dict[str, _Tool] = {}
        listed: list[types.Tool] = []
        for i, tool in enumerate(spec.tools):
            fn = _load(tool.handler, spec.source, tool.line, search_path, f"tools.{i}.handler")
            self._tools[tool.name] = _Tool(
                fn=fn,
                is_async=_is_async(fn),
                validator=validator_for(tool.input_schema),
                output_validator=validator_for(tool.output_schema) if tool.output_schema else None,
            )
            listed.append(
                types.Tool(
                    name=tool.name,
                    title=tool.title,
                    description=tool.description,
                    input_schema=dict(tool.input_schema),
                    output_schema=dict(tool.output_schema) if tool.output_schema else None,
                    annotations=types.ToolAnnotations.model_validate(tool.annotations) if tool.annotations else None,
                )
            )
        self._listed_tools = listed
        # Wire form of every tools/list page, keyed by its cursor offset: static data, dumped once.
        self._tool_pages = {
            start: results.page_result(
                "tools", [t.model_dump(by_alias=True, mode="json", exclude_none=True) for t in listed], start
            )
            for start in range(0, max(len(listed), 1), results.PAGE_SIZE)
        }
        self._resources = ResourceShelf(
            spec, lambda reference, line, field: _load(reference, spec.source, line, search_path, field)
        )
        self._prompts = {
            p.name: (
                p,
                _load(p.handler, spec.source, p.line, search_path, f"prompts.{i}.handler") if p.handler else None,
            )
            for i, p in enumerate(spec.prompts)
        }
        super().__init__(self._build_server(), list_changed=True)
        self._state_boundary = rounds.state_boundary(spec.name)
        references = (
            [t.handler for t in spec.tools]
            + [r.handler for r in spec.resources]
            + [t.handler for t in spec.resource_templates]
            + [p.handler for p in spec.prompts]
        )
        self.modules = frozenset(ref.partition(":")[0] for ref in references if ref)
        if spec.tools:
            self.fast_paths = {"tools/call": self._fast_call_tool, "tools/list": self._fast_list_tools}

    def _build_server(self) -> Server[Any]:
        spec = self.spec
        schemas = {tool.name: tool.input_schema for tool in spec.tools}
        handlers: dict[str, Any] = {
            "on_set_logging_level": self._set_level,
            "on_completion": self._complete,
            # Lets 2026-07-28 requests check Mcp-Param-* headers without running tools/list.
            "get_tool_input_schema": schemas.get,
            # Even with no tools: `tools/list` answers an empty list rather than "Method not
            # found", which multi-server clients (langchain-mcp-adapters' get_tools()) ask every server.
            "on_list_tools": self._list_tools,
            "on_call_tool": self._call_tool,
        }
        if spec.resources or spec.resource_templates:
            handlers.update(
                on_list_resources=self._list_resources,
                on_read_resource=self._read_resource,
                on_list_resource_templates=self._list_resource_templates,
                on_subscribe_resource=self._subscribe,
                on_unsubscribe_resource=self._unsubscribe,
            )
        if spec.prompts:
            handlers.update(on_list_prompts=self._list_prompts, on_get_prompt=self._get_prompt)
        return spec_server(spec, **handlers)

    async def catalog(self) -> dict[str, Any]:
        resources = (self.spec.resources, self.spec.resource_templates)
        return {"tools": self.spec.tools, "resources": resources, "prompts": self.spec.prompts}

    async def stop(self) -> None:
        self._handlers.shutdown()  # never blocks; queued calls still finish: their clients get answers
        await super().stop()

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "abandoned_threads": self._handlers.abandoned,
            "abandoned_threads_total": self._handlers.abandoned_total,
            "max_abandoned_threads": self._handlers.max_abandoned,
        }

    # -- tools ----------------------------------------------------------------------------

    async def _list_tools(self, ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        """The SDK handler for `tools/list`."""
        page, cursor = results.page(self._listed_tools, params)
        return types.ListToolsResult(tools=page, next_cursor=cursor)

    async def _fast_list_tools(self, ctx: Any, params: Any) -> dict[str, Any]:
        """`tools/list` on the fast path: pages dumped once at load time."""
        checked = types.PaginatedRequestParams.model_validate({} if params is None else params, by_name=False)
        return self._tool_pages[results.start_of(checked.cursor, len(self._listed_tools))]

    async def _call_tool(self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams) -> Any:
        """The SDK handler for `tools/call` (a model, so each revision's defaults apply)."""
        result = await self._tool(ctx, params.name, params.arguments or {})
        return result if is_input_required(result) else types.CallToolResult.model_validate(result)

    async def _fast_call_tool(self, ctx: ServerRequestContext[Any, Any], params: Any) -> dict[str, Any]:
        """`tools/call` on the fast path: the same call, validated by the same params model."""
        if type(params) is dict and params.keys() <= _PLAIN_CALL and type(params.get("name")) is str:
            arguments = params.get("arguments")
            if arguments is None or type(arguments) is dict:  # what the model would accept as it is
                return await self._tool(ctx, params["name"], arguments or {})
        checked = types.CallToolRequestParams.model_validate({} if params is None else params, by_name=False)
        return await self._tool(ctx, checked.name, checked.arguments or {})

    async def _tool(self, ctx: ServerRequestContext[Any, Any], name: str, arguments: dict[str, Any]) -> Any:
        """One tool call, over as many input rounds as its handler asks for (`rounds`)."""

        async def run(c: ServerRequestContext[Any, Any], responses: Any, state: str | None) -> Any:
            return await self._call(c, name, arguments, rounds.Asked(responses, state))

        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return await rounds.answer(self._state_boundary, ctx, run)
        first = await self._call(ctx, name, arguments, rounds.NOTHING_ASKED)  # the hot path: one round
        return first if not is_input_required(first) else await rounds.answer(self._state_boundary, ctx, run, first)

    async def _call(
        self, ctx: ServerRequestContext[Any, Any], name: str, arguments: dict[str, Any], asked: rounds.Asked
    ) -> dict[str, Any]:
        """Run one tool; returns the wire form of its `CallToolResult`."""
        tool = self._tools.get(name)
        if tool is None:
            raise MCPError(code=INVALID_PARAMS, message=f"Unknown tool: {name}")
        if larger_than(arguments, OFF_LOOP_ELEMENTS):
            # Checking a million-item argument takes seconds: on the pool, the loop keeps serving.
            try:
                problem = await self._handlers.run(problem_with, tool.validator, arguments, timeout=self.spec.timeout)
            except (TimeoutError, PoolExhausted) as exc:
                return results.error_result(
                    f"Tool {name} was not run: its arguments could not be checked ({exc or 'timeout'})"
                )
        else:
            problem = problem_with(tool.validator, arguments)
        if problem is not None:
            return results.error_result(problem)
        try:
            value = await self._invoke(tool.fn, tool.is_async, arguments, ctx, asked)
        except TimeoutError:
            return results.error_result(f"Tool {name} timed out after {self.spec.timeout:g} s")
        except PoolExhausted as exc:
            logger.warning("%s: tool %s refused: %s", self.spec.name, name, exc)
            return results.error_result(f"Tool {name} was not run: {exc}; try again later")
        except MCPError:
            raise
        except Exception as exc:
            logger.warning("%s: tool %s raised", self.spec.name, name, exc_info=True)
            return results.error_result(f"Tool {name} failed: {type(exc).__name__}: {exc}")
        try:
            result = results.to_result(value)
        except results.NotJSON:
            return results.error_result(f"Tool {name} returned a value that is not valid JSON (NaN or Infinity)")
        except (TypeError, ValueError, ValidationError) as exc:
            logger.warning("%s: tool %s returned an unusable value: %s", self.spec.name, name, exc)
            return results.error_result(f"Tool {name} returned an unusable value")
        if tool.output_validator is not None and not result.get("isError"):
            problem = tool.output_validator.problem(result.get("structuredContent"))
            if problem is not None:
                problem_text = f"Tool {name} returned output that does not match its outputSchema: {problem[1]}"
                return results.error_result(problem_text)
        return result

    # -- resources ------------------------------------------------------------------------

    async def _list_resource_templates(
        self, ctx: Any, params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        return self._resources.list_templates(params)

    async def _list_resources(self, ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListResourcesResult:
        return self._resources.list(params)

    async def _read_resource(
        self, ctx: ServerRequestContext[Any, Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        async def invoke(what: str, fn: Callable[..., Any], argument: Any) -> Any:
            return await self._invoke_or_raise(what, fn, argument, ctx)

        return await self._resources.read(str(params.uri), invoke)

    async def _subscribe(self, ctx: ServerRequestContext[Any, Any], params: types.SubscribeRequestParams) -> Any:
        self._resources.subscribe(_session_of(ctx), str(params.uri))
        return types.EmptyResult()

    async def _unsubscribe(self, ctx: ServerRequestContext[Any, Any], params: types.UnsubscribeRequestParams) -> Any:
        self._resources.unsubscribe(_session_of(ctx), str(params.uri))
        return types.EmptyResult()

    async def resource_updated(self, uri: str) -> None:
        """Tell the sessions subscribed to `uri` that it changed (`context.resource_updated`)."""
        if self.publish is not None:
            await self.publish("notifications/resources/updated", {"uri": uri}, self._resources.subscribers(uri))

    async def session_closed(self, session_id: str) -> None:
        self._resources.forget(session_id)

    # -- prompts --------------------------------------------------------------------------

    async def _list_prompts(self, ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListPromptsResult:
        listed = [
            types.Prompt(
                name=p.name,
                title=p.title,
                description=p.description,
                arguments=[
                    types.PromptArgument(name=a.name, description=a.description, required=a.required)
                    for a in p.arguments
                ],
            )
            for p, _ in self._prompts.values()
        ]
        page, cursor = results.page(listed, params)
        return types.ListPromptsResult(prompts=page, next_cursor=cursor)

    async def _get_prompt(self, ctx: ServerRequestContext[Any, Any], params: types.GetPromptRequestParams) -> Any:
        entry = self._prompts.get(params.name)
        if entry is None:
            raise MCPError(code=INVALID_PARAMS, message=f"Unknown prompt: {params.name}")
        spec, fn = entry
        arguments = dict(params.arguments or {})
        missing = [a.name for a in spec.arguments if a.required and a.name not in arguments]
        if missing:
            raise MCPError(code=INVALID_PARAMS, message=f"Missing required argument(s): {', '.join(missing)}")
        if fn is not None:
            handler = fn

            async def run(c: ServerRequestContext[Any, Any], responses: Any, state: str | None) -> Any:
                asked = rounds.Asked(responses, state)
                value = await self._invoke_or_raise(f"Prompt {spec.name}", handler, arguments, c, asked)
                return results.prompt_result(spec, value)

            return await rounds.answer(self._state_boundary, ctx, run)
        values = _Blank({a.name: "" for a in spec.arguments}) | arguments
        messages = [
            types.PromptMessage(role=role, content=types.TextContent(type="text", text=text.format_map(_Blank(values))))  # type: ignore[arg-type]
            for role, text in spec.messages
        ]
        return types.GetPromptResult(description=spec.description, messages=messages)

    async def _complete(self, ctx: Any, params: types.CompleteRequestParams) -> types.CompleteResult:
        """Static `values` from the YAML: no handler code runs here, so there is nothing to time out."""
        values: Sequence[str] = ()
        if isinstance(params.ref, types.PromptReference) and (entry := self._prompts.get(params.ref.name)):
            values = next((a.values for a in entry[0].arguments if a.name == params.argument.name), ())
        matches = [v for v in values if v.startswith(params.argument.value)]
        return types.CompleteResult(
            completion=types.Completion(values=matches[:100], total=len(matches), has_more=len(matches) > 100)
        )

    async def _set_level(
        self, ctx: ServerRequestContext[Any, Any], params: types.SetLevelRequestParams
    ) -> types.EmptyResult:
        if isinstance(ctx.request, RequestInfo) and params.level in LOG_LEVELS:
            ctx.request.log_level = params.level
        return types.EmptyResult()

    async def _invoke(
        self,
        fn: Callable[..., Any],
        is_async: bool,
        argument: Any,
        ctx: ServerRequestContext[Any, Any],
        asked: rounds.Asked = rounds.NOTHING_ASKED,
    ) -> Any:
        """`fn(argument, context)` under the server's timeout, sync handlers on its `HandlerPool`.

        Raises `TimeoutError`, `PoolExhausted`, or whatever the handler raised.
        """
        if is_async:
            with self._deadlines.start():
                return await fn(argument, ToolContext(ctx, self.spec.name, asked, self.resource_updated))
        context = SyncToolContext(ctx, self.spec.name, asyncio.get_running_loop(), asked, self.resource_updated)
        return await self._handlers.run(fn, argument, context, timeout=self.spec.timeout)

    async def _invoke_or_raise(
        self,
        what: str,
        fn: Callable[..., Any],
        argument: Any,
        ctx: ServerRequestContext[Any, Any],
        asked: rounds.Asked = rounds.NOTHING_ASKED,
    ) -> Any:
        """`_invoke` for resources and prompts, whose failures are JSON-RPC errors."""
        try:
            return await self._invoke(fn, _is_async(fn), argument, ctx, asked)
        except TimeoutError:
            raise MCPError(code=REQUEST_TIMEOUT, message=f"{what} timed out after {self.spec.timeout:g} s") from None
        except PoolExhausted as exc:
            logger.warning("%s: %s refused: %s", self.spec.name, what, exc)
            raise MCPError(code=INTERNAL_ERROR, message=f"{what} was not run: {exc}; try again later") from None


def _session_of(ctx: ServerRequestContext[Any, Any]) -> str | None:
    return ctx.request.session_id if isinstance(ctx.request, RequestInfo) else None


class _Blank(dict[str, Any]):
    """Placeholders with no value render empty instead of raising."""

    def __missing__(self, key: str) -> str:
        return ""


def _load(
    reference: str | None, source: str, line: int | None, search_path: Path | None, field: str
) -> Callable[..., Any]:
    assert reference is not None
    try:
        fn = import_from_string(reference, search_path=search_path)
    except ImportFromStringError as exc:
        raise DefinitionError(source, line, f"{field}: {reference}: {exc}", field=field) from None
    if not callable(fn):
        raise DefinitionError(source, line, f"{field}: {reference} is not callable", field=field)
    return fn


def _is_async(fn: Callable[..., Any]) -> bool:
    """Whether calling `fn` gives a coroutine (a plain async function, or an object with an async `__call__`)."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)
