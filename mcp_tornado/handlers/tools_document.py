"""The OpenAPI 3.1 document of a server's tools (`GET /{name}/openapi.json`, handlers/tools_http.py).

One `POST /{name}/tools/{tool}` operation per tool: its body is the tool's `inputSchema`, its
200 answer the tool's `outputSchema` when it declares one (else any JSON: see tools_http.py for
what a call answers), its summary and description the tool's title and description; errors
are `Error` (`{"error": {"code", "message", "field"?}}`), a tool's own failure `ToolError`
(422). Each schema becomes a component, its own `#...` references pointed into it, so a
schema with `$defs` stays valid inside the document.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

from mcp_tornado.handlers.openapi import ERROR_SCHEMA
from mcp_tornado.hosting.hosted import HostedServer

_COMPONENT_CHARS = re.compile(r"[^A-Za-z0-9._-]")


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _component(schema: Any, name: str) -> Any:
    """A tool's schema as a component: its own `#...` references pointed into the component
    (inside the document `#` is the document's root), `$schema` dropped (the document's
    dialect is OpenAPI 3.1's, JSON Schema 2020-12)."""
    prefix = f"#/components/schemas/{name}"

    def rewrite(value: Any) -> Any:
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                if key in ("$ref", "$dynamicRef") and isinstance(item, str) and item.startswith("#"):
                    out[key] = prefix + item[1:]
                else:
                    out[key] = rewrite(item)
            return out
        if isinstance(value, list):
            return [rewrite(item) for item in value]
        return value

    if not isinstance(schema, dict):
        return {"type": "object"}
    return {key: value for key, value in rewrite(schema).items() if key != "$schema"}


_ERRORS = {
    400: "the body is not a JSON object, or not what the tool's input schema asks (`field` names it)",
    401: "no token, or one that is malformed, badly signed or expired",
    403: "a token for another server, a wrong API key, or without a scope the server or tool needs",
    404: "no such server or tool",
    413: "body too large (MCP_MAX_BODY_BYTES)",
    415: "Content-Type is not application/json",
    422: "the tool reported an error (`isError`), or asked for input plain HTTP cannot give",
    429: "too many requests in flight, or past a rate limit",
    502: "the server failed to answer",
    503: "the server is down (crashed, restarting, unreachable)",
    504: "the server did not answer in time",
}
_CALL_ERRORS = (400, 401, 403, 404, 413, 415, 422, 429, 502, 503, 504)
_DOCUMENT_ERRORS = (401, 403, 404, 429, 502, 503, 504)


def _errors(statuses: tuple[int, ...], public: bool) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status in statuses:
        if public and status in (401, 403):
            continue
        schema = _ref("ToolError") if status == 422 else _ref("Error")
        response: dict[str, Any] = {"description": _ERRORS[status], "content": {"application/json": {"schema": schema}}}
        if status == 401:
            response["headers"] = {"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}}
        if status in (429, 503):
            response["headers"] = {"Retry-After": {"required": True, "schema": {"type": "string"}}}
        responses[str(status)] = response
    return responses


_TOOL_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "content"],
            "properties": {
                "code": {"const": 422},
                "message": {"type": "string", "description": "the result's text"},
                "content": {"type": "array", "description": "the result's MCP content blocks"},
            },
        }
    },
}
_UNTYPED_RESULT = (
    "the tool's result: its structuredContent when it has one; else its text content joined with "
    "newlines (a JSON string) when every block is text; else its MCP content blocks"
)


def _component_names(names: list[str]) -> dict[str, str]:
    """A component-name-safe, unique key for each tool name."""
    keys: dict[str, str] = {}
    taken: set[str] = set()
    for name in names:
        base = _COMPONENT_CHARS.sub("_", name) or "tool"
        key, n = base, 1
        while key in taken:
            n += 1
            key = f"{base}_{n}"
        taken.add(key)
        keys[name] = key
    return keys


def document(hosted: HostedServer, tools: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `tools` on `hosted`."""
    spec, info = hosted.spec, hosted.backend.init_options
    public = spec.public
    name = hosted.name
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA, "ToolError": _TOOL_ERROR_SCHEMA}
    paths: dict[str, Any] = {
        f"/{name}/openapi.json": {
            "get": {
                "operationId": "getOpenApi",
                "summary": "this document: the tools this token may call",
                "responses": {
                    "200": {
                        "description": "the OpenAPI document",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    **_errors(_DOCUMENT_ERRORS, public),
                },
            }
        }
    }
    keys = _component_names(list(tools))
    for tool_name, tool in tools.items():
        key = keys[tool_name]
        schemas[f"{key}.input"] = _component(tool.get("inputSchema"), f"{key}.input")
        ok: dict[str, Any] = {"description": _UNTYPED_RESULT}
        output = tool.get("outputSchema")
        if isinstance(output, dict):
            schemas[f"{key}.output"] = _component(output, f"{key}.output")
            ok = {"description": "the tool's structuredContent", "schema": _ref(f"{key}.output")}
        response = {"description": ok["description"], "content": {"application/json": {"schema": ok.get("schema", {})}}}
        annotations = tool.get("annotations")
        title = tool.get("title") or (annotations.get("title") if isinstance(annotations, dict) else None) or tool_name
        operation: dict[str, Any] = {
            "operationId": f"call_{key}",
            "summary": str(title),
            "requestBody": {
                "required": False,
                "description": "the tool's arguments (an empty body is {})",
                "content": {"application/json": {"schema": _ref(f"{key}.input")}},
            },
            "responses": {"200": response, **_errors(_CALL_ERRORS, public)},
        }
        if isinstance(tool.get("description"), str):
            operation["description"] = tool["description"]
        paths[f"/{name}/tools/{urllib.parse.quote(tool_name, safe='')}"] = {"post": operation}
    description = spec.description or getattr(info, "instructions", None) or f"The tools of {name}"
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": spec.title or info.title or info.server_name or name,
            "version": info.server_version or spec.version,
            "description": description,
        },
        "security": [] if public else [{"bearer": []}],
        "paths": paths,
        "components": {"schemas": schemas},
    }
    if not public:
        document["components"]["securitySchemes"] = {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": f"a token for this server (mcp-tornado token {name})",
            }
        }
    return document
