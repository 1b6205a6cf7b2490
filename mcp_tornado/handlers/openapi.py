"""`GET /openapi.json`: the management API described as an OpenAPI 3.1 document (no auth to read it).

The request body of `POST`/`PUT /servers/{name}` is the definition JSON Schema itself
(`mcp_tornado/schema/server.schema.json`), its `$defs` moved into `components/schemas`, so the
document and the validator can never disagree about what a definition is.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from mcp_tornado import __version__
from mcp_tornado import definitions as specs
from mcp_tornado.backends.state import BackendState
from mcp_tornado.handlers.base import BaseHandler


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _definition_schemas() -> dict[str, Any]:
    """The definition schema and its parts, as components: `#/$defs/x` becomes `Definition_x`."""
    text = json.dumps(specs.SCHEMA).replace('"#/$defs/', '"#/components/schemas/Definition_')
    schema: dict[str, Any] = json.loads(text)
    parts = schema.pop("$defs")
    for key in ("$schema", "$id"):  # the document's dialect is OpenAPI 3.1's (JSON Schema 2020-12)
        schema.pop(key, None)
    return {"ServerDefinition": schema, **{f"Definition_{name}": part for name, part in parts.items()}}


_NULLABLE_STRING = {"type": ["string", "null"]}
_STRINGS = {"type": "array", "items": {"type": "string"}}

# The body of every error answer (the management API's and the tools-over-HTTP routes').
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "integer", "description": "the HTTP status"},
                "message": {"type": "string"},
                "field": {"type": "string", "description": "the request field at fault (dotted path)"},
            },
        }
    },
}
SCHEMAS: dict[str, Any] = {
    **_definition_schemas(),
    "Server": {
        "type": "object",
        "description": "A hosted server as the admin sees it: no API key or hash is ever shown",
        "required": ["name", "kind", "state", "last_error", "sessions", "source", "tools", "resources", "prompts"],
        "properties": {
            "name": _ref("Definition_serverName"),
            "title": _NULLABLE_STRING,
            "version": {"type": "string"},
            "description": _NULLABLE_STRING,
            "kind": {"enum": ["inprocess", "app", "command", "url", "compose"]},
            "state": {"enum": [state.value for state in BackendState]},
            "last_error": {**_NULLABLE_STRING, "description": "the definition's problem, or the backend's last error"},
            "restarts": {"type": "integer", "minimum": 0},
            "processes": {"type": ["integer", "null"], "minimum": 0},
            "sessions": {"type": "integer", "minimum": 0},
            "source": {"type": "string", "description": "the definition file"},
            "tools": _STRINGS,
            "resources": _STRINGS,
            "prompts": _STRINGS,
            "routes": _STRINGS,
            "upstream": {
                "type": ["object", "null"],
                "description": "a command: or url: server's own name, title and version, once connected",
                "properties": {"name": {"type": "string"}, "title": _NULLABLE_STRING, "version": {"type": "string"}},
            },
            "abandoned_threads": {"type": "integer", "minimum": 0},
            "abandoned_threads_total": {"type": "integer", "minimum": 0},
            "max_abandoned_threads": {"type": "integer", "minimum": 1},
        },
    },
    "ServerList": {
        "type": "object",
        "required": ["servers", "failing"],
        "properties": {
            "servers": {"type": "array", "items": _ref("Server")},
            "failing": {
                "type": "array",
                "description": "definition files that serve nothing, with their problem",
                "items": {
                    "type": "object",
                    "required": ["source", "last_error"],
                    "properties": {"source": {"type": "string"}, "last_error": {"type": "string"}},
                },
            },
        },
    },
    "TokenRequest": {
        "type": "object",
        "additionalProperties": False,
        "required": ["server"],
        "properties": {
            "server": _ref("Definition_serverName"),
            "apiKey": {"type": "string", "minLength": 1},
            "userId": {"type": "string", "minLength": 1},
            "ttl": {"type": "number", "minimum": 1, "description": "seconds; capped by MCP_TOKEN_MAX_TTL"},
        },
    },
    "TokenResponse": {
        "type": "object",
        "required": ["token", "expires_at"],
        "properties": {
            "token": {"type": "string"},
            "expires_at": {"type": "integer", "description": "the token's exp, seconds since the epoch"},
        },
    },
    "Error": ERROR_SCHEMA,
}

_REASONS = {
    400: "the request is malformed; `field` names what is wrong",
    401: "no token, or one that is malformed, badly signed or expired",
    403: "not an admin token; or a body the management API may not register (`field` names it)",
    404: "no such server",
    405: "method not allowed",
    409: "the server exists (POST); or the URL's name and the body's, or the file it would touch, disagree",
    413: "body too large",
}


def _errors(*statuses: int) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status in statuses:
        response: dict[str, Any] = {
            "description": _REASONS[status],
            "content": {"application/json": {"schema": _ref("Error")}},
        }
        if status == 401:
            response["headers"] = {"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}}
        responses[str(status)] = response
    return responses


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


# What can be done with a server once it exists (OpenAPI links: clients and fuzzers follow them).
_LINKS = {
    "getServer": {"operationId": "getServer", "parameters": {"name": "$response.body#/name"}},
    "deleteServer": {"operationId": "deleteServer", "parameters": {"name": "$response.body#/name"}},
    "mintToken": {"operationId": "mintToken", "requestBody": {"server": "$response.body#/name"}},
}
_CREATED = {
    **_json("created", _ref("Server")),
    "headers": {"Location": {"required": True, "schema": {"type": "string"}}},
    "links": _LINKS,
}
_BODY = {"required": True, "content": {"application/json": {"schema": _ref("ServerDefinition")}}}
_NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "description": "the route name: the server is served at /{name}/mcp",
    "schema": _ref("Definition_serverName"),
}


DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "mcp-tornado management API",
        "version": __version__,
        "description": (
            "Register, replace and remove hosted MCP servers, and mint their tokens. Every operation "
            "needs an admin JWT (`mcp-tornado token --admin`). By default a body may register `url:` "
            "upstreams and in-process servers whose handlers live under servers.d/; `command:`, `app:` "
            "and other handlers need MCP_ADMIN_ALLOW_CODE=true (an admin token can then run code on "
            "the host)."
        ),
    },
    "security": [{"bearer": []}],
    "paths": {
        "/servers": {
            "get": {
                "operationId": "listServers",
                "summary": "every hosted server, and the definition files that serve nothing",
                "responses": {"200": _json("the servers", _ref("ServerList")), **_errors(401, 403)},
            }
        },
        "/servers/{name}": {
            "parameters": [_NAME],
            "get": {
                "operationId": "getServer",
                "summary": "one server: state, backend kind, tools, sessions, last error",
                "responses": {"200": _json("the server", _ref("Server")), **_errors(400, 401, 403, 404)},
            },
            "post": {
                "operationId": "createServer",
                "summary": "register a new server (written to servers.d/{name}.yaml)",
                "requestBody": _BODY,
                "responses": {"201": _CREATED, **_errors(400, 401, 403, 409, 413)},
            },
            "put": {
                "operationId": "putServer",
                "summary": "create or replace a server, in the file that defines it",
                "requestBody": _BODY,
                "responses": {
                    "200": {**_json("replaced", _ref("Server")), "links": _LINKS},
                    "201": _CREATED,
                    **_errors(400, 401, 403, 409, 413),
                },
            },
            "delete": {
                "operationId": "deleteServer",
                "summary": "remove a server: its file is deleted and its sessions end",
                "responses": {"204": {"description": "removed"}, **_errors(400, 401, 403, 404, 409)},
            },
        },
        "/tokens": {
            "post": {
                "operationId": "mintToken",
                "summary": "a token for one server; its lifetime is capped by MCP_TOKEN_MAX_TTL",
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("TokenRequest")}}},
                "responses": {"200": _json("the token", _ref("TokenResponse")), **_errors(400, 401, 403, 404, 413)},
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "getOpenApi",
                "summary": "this document",
                "security": [],
                "responses": {"200": _json("the OpenAPI document", {"type": "object"})},
            }
        },
    },
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": 'an admin token (claim "admin": true)',
            }
        },
    },
}


def document() -> dict[str, Any]:
    """A copy of the document, for callers that may change it."""
    return copy.deepcopy(DOCUMENT)


class OpenApiHandler(BaseHandler):
    def set_default_headers(self) -> None:
        super().set_default_headers()
        if self.request.method != "GET":  # the 405 Tornado answers says what is allowed
            self.set_header("Allow", "GET")

    def get(self) -> None:
        self.write_json(DOCUMENT)
