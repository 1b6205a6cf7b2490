"""Generated input at every route of the real app on a real port: whatever arrives, the answer is
a 2xx or a 4xx without a stack trace, nothing logs a traceback, and the gateway stays healthy.

Hypothesis builds each request (method, path, headers, body); the gateway is started once per
test (the `gateway` fixture) and each example is sent with `io_loop.run_sync`, so the app runs
on the same loop as in every other test. The run is derandomized and keeps no database, so CI
sees the same examples every time.
"""

from __future__ import annotations

import base64
import dataclasses
import hmac
import json
import logging
import time
from typing import Any
from urllib.parse import quote

import httpx2
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from mcp_types import CLIENT_CAPABILITIES_META_KEY, CLIENT_INFO_META_KEY, PROTOCOL_VERSION_META_KEY

from mcp_tornado import auth
from tests.conftest import SECRET, token
from tests.e2e.wire import headers, init_body

# Enough to cover every route and header a few times over, small enough for ~15 s.
MAX_EXAMPLES = 1200
# No request here needs long: a slower answer is a hang, and a failure.
REQUEST_TIMEOUT = 10.0
SERVERS = ["everything", "other", "sdkapp", "child"]
# The tools of tests/servers/everything.yaml that answer at once (no elicitation, sampling or waiting).
TOOLS = ["echo", "whoami", "boom", "overflow", "not_a_number", "cancellations", "announce", "sync_progress", "slow"]
MCP_METHODS = [
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
]
VERSIONS = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"]
# JSON-ish literals json.dumps never writes, spliced into raw bodies and raw token payloads.
LITERALS = [
    "NaN",
    "Infinity",
    "-Infinity",
    "1e400",
    "-1e400",
    "1e-400",
    "9" * 400,
    "-0",
    "0.0",
    "1E2",
    "true",
    "null",
    '"\\ud800"',
    '"\\u0000"',
    "[]",
    "{}",
    '"2025-11-25"',
    "[" * 600 + "]" * 600,
]
BODY_TEMPLATES = [
    '{"jsonrpc":"2.0","id":X,"method":"ping"}',
    '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":X}}}',
    '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"overflow","arguments":{"a":X,"b":10}}}',
    '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow","arguments":{"steps":X}}}',
    '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"message":"m"},'
    '"_meta":{"progressToken":X}}}',
    '[{"jsonrpc":"2.0","id":X,"method":"ping"},{"jsonrpc":"2.0","id":3,"method":"ping"}]',
    '{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":X}}',
    '{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":X}}',
    '{"jsonrpc":"2.0","id":X,"result":{}}',
    '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":X,"capabilities":{},'
    '"clientInfo":{"name":"fuzz","version":"0"}}}',
    '{"jsonrpc":"2.0","id":1,"id":X,"method":"ping"}',
    '{"jsonrpc":X,"id":1,"method":"ping"}',
    '{"tools":[{"name":"t","handler":"everything_tools:echo","inputSchema":X}]}',
    "X",
]
TOKEN_PAYLOADS = [
    '{"serverName":"everything","apiKey":"plain-key","exp":X}',
    '{"serverName":"everything","apiKey":"plain-key","nbf":X}',
    '{"serverName":"everything","apiKey":"plain-key","iat":X}',
    '{"serverName":X,"apiKey":"plain-key"}',
    '{"serverName":"everything","apiKey":X}',
    '{"serverName":"everything","apiKey":"plain-key","userId":X}',
    '{"admin":X}',
    "X",
]


@dataclasses.dataclass
class Request:
    method: str
    path: str
    headers: list[tuple[str, bytes]]
    body: bytes | None
    chunked: bool = False


# -- strategies ------------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
good_ids = st.integers(min_value=-(2**53), max_value=2**53) | st.text(max_size=12)
any_ids = good_ids | st.integers() | st.integers(min_value=2**63 - 2, max_value=2**70) | values
numbers = st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from([1e308, -1e308, 5e-324])


def params_for(method: str) -> st.SearchStrategy[Any]:
    tool_arguments = (
        st.fixed_dictionaries({"message": st.text(max_size=20) | values})
        | st.fixed_dictionaries({"a": numbers, "b": numbers})
        | st.fixed_dictionaries({"steps": st.integers(min_value=-2, max_value=3)})
        | values
    )
    meta = st.fixed_dictionaries({}, optional={"progressToken": any_ids, "extra": values})
    by_method: dict[str, st.SearchStrategy[Any]] = {
        "initialize": st.fixed_dictionaries(
            {"protocolVersion": st.sampled_from(VERSIONS) | st.text(max_size=12)},
            optional={"capabilities": values, "clientInfo": st.fixed_dictionaries({"name": values, "version": values})},
        ),
        "tools/call": st.fixed_dictionaries(
            {"name": st.sampled_from(TOOLS) | st.text(max_size=10)},
            optional={"arguments": tool_arguments, "_meta": meta},
        ),
        "resources/read": st.fixed_dictionaries({"uri": st.sampled_from(["memo://readme", "memo://clock"]) | values}),
        "resources/subscribe": st.fixed_dictionaries({"uri": st.sampled_from(["memo://readme"]) | values}),
        "prompts/get": st.fixed_dictionaries(
            {"name": st.sampled_from(["greet"]) | values},
            optional={"arguments": st.dictionaries(st.sampled_from(["who", "mood"]) | st.text(max_size=4), values)},
        ),
        "completion/complete": st.fixed_dictionaries(
            {
                "ref": st.fixed_dictionaries({"type": st.sampled_from(["ref/prompt", "ref/resource"]) | values})
                | values,
                "argument": st.fixed_dictionaries({"name": values, "value": values}) | values,
            }
        ),
        "logging/setLevel": st.fixed_dictionaries({"level": st.sampled_from(["debug", "error", "emergency"]) | values}),
        "notifications/cancelled": st.fixed_dictionaries({"requestId": any_ids}, optional={"reason": values}),
        "notifications/progress": st.fixed_dictionaries({"progressToken": any_ids, "progress": numbers | values}),
    }
    fitting = by_method.get(method, st.dictionaries(st.text(max_size=8), values, max_size=3))
    return st.sampled_from([True] * 4 + [False]).flatmap(lambda fits: fitting if fits else values)


@st.composite
def messages(draw: st.DrawFn, stateless: bool = False) -> dict[str, Any]:
    """A JSON-RPC message of one of the four shapes, then perhaps broken by a field or two.

    `stateless`: mostly a request carrying the 2026-07-28 envelope in `params._meta`."""
    kinds = ["request"] * 6 + ["notification"] if stateless else ["request"] * 2 + ["notification", "response", "error"]
    shape = draw(st.sampled_from(kinds))
    message: dict[str, Any] = {"jsonrpc": "2.0"}
    if shape != "notification":
        message["id"] = draw(good_ids)
    if shape in ("request", "notification"):
        method = draw(st.sampled_from(MCP_METHODS) | st.text(max_size=16))
        message["method"] = method
        if stateless or draw(st.booleans()):
            message["params"] = draw(params_for(method))
        if stateless and isinstance(message["params"], dict):
            message["params"]["_meta"] = draw(envelopes)
    elif shape == "response":
        message["result"] = draw(st.dictionaries(st.text(max_size=6), values, max_size=3) | values)
    else:
        message["error"] = draw(
            st.fixed_dictionaries({"code": st.integers(), "message": st.text(max_size=10)}) | values
        )
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        key = draw(st.sampled_from(["jsonrpc", "id", "method", "params", "result", "error"]) | st.text(max_size=6))
        if draw(st.booleans()):
            message.pop(key, None)
        else:
            message[key] = draw(any_ids if key == "id" else values)
    return message


# The 2026-07-28 revision's per-request envelope, right or subtly not.
envelopes = st.fixed_dictionaries(
    {
        PROTOCOL_VERSION_META_KEY: st.sampled_from(["2026-07-28"] * 3 + VERSIONS) | values,
        CLIENT_CAPABILITIES_META_KEY: st.just({}) | values,
    },
    optional={
        CLIENT_INFO_META_KEY: st.fixed_dictionaries({"name": st.text(max_size=8), "version": st.text(max_size=8)})
        | values,
        "progressToken": any_ids,
    },
)


def _encode(value: Any, ascii_only: bool) -> bytes:
    # Not ASCII: lone surrogates leave as they are, so the body is not valid UTF-8.
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def spliced(templates: list[str]) -> st.SearchStrategy[str]:
    literal = st.sampled_from(LITERALS) | values.map(json.dumps)
    return st.builds(lambda template, x: template.replace("X", x), st.sampled_from(templates), literal)


bodies = st.sampled_from(["message"] * 5 + ["batch", "spliced", "value", "binary", "empty"]).flatmap(
    lambda kind: {
        "message": st.builds(_encode, messages(), st.booleans()),
        "batch": st.builds(_encode, st.lists(messages(), max_size=4), st.booleans()),  # the empty one too
        "spliced": spliced(BODY_TEMPLATES).map(str.encode),
        "value": st.builds(_encode, values, st.booleans()),
        "binary": st.binary(max_size=64),
        "empty": st.just(b""),
    }[kind]
)


schemas = st.sampled_from([{"type": "object"}, {"type": "object", "properties": {"m": {"type": "string"}}}]) | values
handlers = st.sampled_from(["everything_tools:echo", "everything_tools:nope", "nope:nope", "everything_tools", ":"])
# Server definitions as the management API takes them (never `command:`: nothing here starts a process).
definitions = st.fixed_dictionaries(
    {},
    optional={
        "tools": st.lists(
            st.fixed_dictionaries(
                {"name": st.sampled_from(["t", "echo"]) | st.text(max_size=6)},
                optional={
                    "handler": handlers | values,
                    "inputSchema": schemas,
                    "outputSchema": schemas,
                    "annotations": values,
                    "title": values,
                },
            ),
            max_size=2,
        )
        | values,
        "resources": st.lists(
            st.fixed_dictionaries(
                {"uri": st.sampled_from(["memo://x", "not a uri"]) | values, "name": st.text(max_size=6) | values},
                optional={"text": values, "handler": handlers | values, "mimeType": values},
            ),
            max_size=2,
        )
        | values,
        "prompts": st.lists(
            st.fixed_dictionaries(
                {"name": st.text(max_size=6) | values},
                optional={"arguments": values, "messages": values, "handler": handlers | values},
            ),
            max_size=2,
        )
        | values,
        "name": st.sampled_from(["fuzzed", "everything", "other name"]) | values,
        "title": values,
        "version": values,
        "api_keys": st.lists(st.sampled_from(["k", "sha256:" + "0" * 64, "sha256:xyz"]) | values, max_size=2) | values,
        "timeout": numbers | values,
        "app": st.sampled_from(["sdk_app:mcp", "nope:nope"]) | values,
        "url": st.sampled_from(["http://127.0.0.1:9/mcp", "ftp://x", "${NOPE}"]) | values,
        "headers": values,
        "env": values,
    },
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _signed(header: bytes, payload: bytes, digest: str = "sha256") -> str:
    """A token signed with the test secret whatever its content (PyJWT refuses to write most of these)."""
    signing = f"{_b64(header)}.{_b64(payload)}"
    signature = hmac.new(SECRET.encode(), signing.encode(), digest).digest()
    return f"{signing}.{_b64(signature)}"


def _jwt(claims: dict[str, Any], algorithm: str, extra: dict[str, Any]) -> str:
    header = {"alg": algorithm, "typ": "JWT", **extra}
    return _signed(json.dumps(header).encode(), json.dumps(claims).encode(), f"sha{algorithm[2:]}")


ADMIN_TOKEN = auth.mint(SECRET, admin=True)
NOW = int(time.time())
# Past float's range (10**309 and up), past int64, fractions, strings, lists: times a client may claim.
ODD_TIMES = [10**399, 10**309, -(10**399), 2**64, 1e308, -1.5, "1700000000", [1], None, NOW + 10**6]
# For each claim, values that are wrong in a telling way; `values` adds the arbitrary ones.
ODD_CLAIMS: dict[str, list[Any]] = {
    "exp": ODD_TIMES,
    "nbf": ODD_TIMES,
    "iat": ODD_TIMES,
    "serverName": ["other", "sdkapp", "", 5, None, ["everything"]],
    "apiKey": ["wrong", "secret", 5, None, ["plain-key"]],
    "userId": ["", 5, None, {"id": "ada"}],
    "admin": [True, "true", 1, [True]],
    "aud": ["everything", 5],
    "iss": ["mcp-tornado", 5],
}


@st.composite
def odd_claims(draw: st.DrawFn) -> dict[str, Any]:
    """Good claims for `everything` with one or two of them made odd (or left out)."""
    claims: dict[str, Any] = {"serverName": "everything", "apiKey": "plain-key", "iat": NOW, "exp": NOW + 600}
    for _ in range(draw(st.sampled_from([1, 1, 2]))):
        name = draw(st.sampled_from(["exp", "exp", "nbf", "iat", *ODD_CLAIMS]))  # times are where the trouble is
        kind = draw(st.sampled_from(["telling", "telling", "arbitrary", "left out"]))
        if kind == "left out":
            claims.pop(name, None)
        else:
            claims[name] = draw(st.sampled_from(ODD_CLAIMS[name]) if kind == "telling" else values)
    return claims


jwt_headers = st.fixed_dictionaries(
    {}, optional={"kid": values, "crit": st.lists(st.text(max_size=5), max_size=2), "typ": values}
)
TOKENS = {
    "good": st.sampled_from([token(), token("other", api_key=None)]),
    "refused": st.sampled_from(
        [
            token("everything", api_key="wrong"),
            token(ttl=-60),
            ADMIN_TOKEN,
            auth.mint("another-secret-that-is-long-enough!!", admin=True),
        ]
    ),
    # Signed with the right secret, odd inside: the claims are what is under test.
    "odd claims": st.builds(_jwt, odd_claims(), st.sampled_from(["HS256", "HS256", "HS384", "HS512"]), jwt_headers),
    "odd payload": st.builds(
        _signed,
        st.sampled_from([b'{"alg":"HS256","typ":"JWT"}', b'{"alg":"none"}', b'{"alg":"HS256","crit":["x"]}', b"[]"]),
        spliced(TOKEN_PAYLOADS).map(str.encode),
    ),
    "junk": st.text(max_size=40),
}
# Hypothesis favours the first entries of a `sampled_from`: the ones most likely to find trouble go first.
tokens = st.sampled_from(["odd claims", "good", "odd claims", "refused", "odd claims", "odd payload", "junk"]).flatmap(
    TOKENS.__getitem__
)
# Header values as Tornado reads them (latin-1), without the bytes HTTP/1.1 forbids.
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=40)
# Stands for a live session's id in a generated request; `send` puts the id in (sessions are
# opened per run, and again when a generated DELETE ends one).
SESSION_HEADER = "Mcp-Session-Id"
SESSION_PLACEHOLDERS = {version: f"<session {version}>" for version in ("2025-03-26", "2025-11-25")}


def _bearer(prefix_and_token: tuple[str, str]) -> str:
    return prefix_and_token[0] + prefix_and_token[1]


# Each header: None drops it, the rest replace it.
HEADER_VALUES: dict[str, st.SearchStrategy[str | None]] = {
    "Content-Type": st.none()
    | st.sampled_from(["application/json; charset=utf-8", "APPLICATION/JSON", "text/plain", "application/json-seq"])
    | header_text,
    "Accept": st.none()
    | st.sampled_from(["application/json", "text/event-stream", "*/*", "application/*, text/*", "text/html"])
    | header_text,
    "MCP-Protocol-Version": st.none() | st.sampled_from(VERSIONS) | header_text,
    SESSION_HEADER: st.none() | st.sampled_from(sorted(SESSION_PLACEHOLDERS.values())) | header_text,
    "Last-Event-ID": st.none() | st.sampled_from(["0", "1", "9" * 30, "-1", " 1"]) | header_text,
    "Authorization": st.none()
    | st.tuples(st.sampled_from(["Bearer ", "bearer ", "Bearer  ", "Basic ", ""]), tokens).map(_bearer),
    "Origin": st.sampled_from(["http://localhost:1", "http://127.0.0.1", "http://evil.example", "null"]) | header_text,
    # Host values Tornado itself takes (it answers a malformed one with a bare 400 and a closed connection).
    "Host": st.sampled_from(["evil.example", "localhost", "127.0.0.1:1", "[::1]:80", "LOCALHOST:99999"])
    | st.from_regex(r"[A-Za-z0-9.:\[\]-]{0,30}", fullmatch=True),
    "Mcp-Method": st.sampled_from(MCP_METHODS) | header_text,
    "Mcp-Name": st.sampled_from(TOOLS) | header_text,
}
names = st.sampled_from([*SERVERS, "nobody", "fuzzed"]) | st.from_regex(
    r"[A-Za-z0-9][A-Za-z0-9_-]{0,70}", fullmatch=True
)
# Weighted towards the route with live sessions, where most of the code is (`one_of` would
# draw each branch equally often; `sampled_from` keeps the duplicates' weight).
ROUTES = {
    "live": st.sampled_from(["/everything/mcp", "/everything/mcp", "/mcp/everything"]),
    "mcp": st.one_of(names.map(lambda name: f"/{name}/mcp"), names.map(lambda name: f"/mcp/{name}")),
    "admin": st.just("/servers") | names.map(lambda name: f"/servers/{name}"),
    "other": st.one_of(
        st.sampled_from(["/health", "/metrics", "/"]),
        st.text(max_size=20).map(lambda text: "/" + quote(text, safe="/")),
    ),
}
paths = st.sampled_from(["live"] * 6 + ["mcp", "admin", "other"]).flatmap(ROUTES.__getitem__)
http_methods = st.sampled_from(
    ["POST"] * 10 + ["GET"] * 3 + ["DELETE", "PUT", "OPTIONS", "PATCH", "HEAD", "X", "PROPFIND"]
)

admin_methods = st.sampled_from(["GET", "GET", "PUT", "PUT", "POST", "DELETE", "PATCH", "X"])


@st.composite
def requests(draw: st.DrawFn) -> Request:
    """Mostly a well-formed request (a live session, or a good token), then up to three of its
    headers dropped or replaced, and a body that is usually JSON-RPC, valid or subtly broken."""
    path = draw(paths)
    method = draw(admin_methods if path.startswith("/servers") else http_methods)
    if method in ("PUT", "POST", "DELETE", "PATCH") and path.removeprefix("/servers/") in SERVERS:
        path = "/servers/fuzzed"  # the servers under test stay; a new one may come and go
    if draw(st.integers(min_value=0, max_value=4)) == 0:
        path += "?" + quote(draw(st.text(max_size=10)), safe="=&")
    # On a live session, without one (initialize), or at the stateless revision (a token each time).
    version = draw(st.sampled_from(["2025-03-26", "2025-11-25", None, None, "2026-07-28"]))
    body: bytes | None
    message: Any = None
    if path.startswith("/servers") and method in ("POST", "PUT") and draw(st.booleans()):
        body = _encode(draw(definitions), draw(st.booleans()))
    elif version is None and method == "POST" and draw(st.booleans()):
        message = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": draw(params_for("initialize"))}
        body = _encode(message, True)
    elif version == "2026-07-28" and method == "POST" and draw(st.booleans()):
        message = draw(messages(stateless=True))
        body = _encode(message, draw(st.booleans()))
    else:
        body = draw(st.none() | bodies) if method not in ("POST", "PUT") else draw(bodies)
    found: dict[str, str] = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if method == "GET":
        found["Accept"] = "text/event-stream"
    if version in SESSION_PLACEHOLDERS:
        found[SESSION_HEADER] = SESSION_PLACEHOLDERS[version]
    if version is not None:
        found["MCP-Protocol-Version"] = version
    if version == "2026-07-28" and isinstance(message, dict) and isinstance(message.get("method"), str):
        found["Mcp-Method"] = message["method"]  # the routing headers the revision checks against the body
        params = message.get("params")
        if isinstance(params, dict) and isinstance(params.get("name"), str):
            found["Mcp-Name"] = params["name"]
    if path.startswith("/servers"):
        found["Authorization"] = "Bearer " + draw(st.just(ADMIN_TOKEN) | tokens)
    elif version not in SESSION_PLACEHOLDERS or draw(st.booleans()):
        found["Authorization"] = "Bearer " + draw(tokens)
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 1, 2, 3]))):
        name = draw(st.sampled_from(sorted(HEADER_VALUES)))
        value = draw(HEADER_VALUES[name])
        if value is None:
            found.pop(name, None)
        else:
            found[name] = value
    pairs = [(name, _header_bytes(value)) for name, value in found.items()]
    if pairs and draw(st.integers(min_value=0, max_value=9)) == 0:
        pairs += draw(st.lists(st.sampled_from([p for p in pairs if p[0] != "Host"]), max_size=1))  # a header twice
    return Request(method, path, pairs, body, chunked=body is not None and draw(st.booleans()))


def _header_bytes(value: str) -> bytes:
    """`value` as a client would send it: UTF-8, without the control bytes HTTP/1.1 forbids."""
    kept = "".join(c for c in value if c == "\t" or (c >= " " and c != "\x7f"))
    return kept.strip(" \t").encode("utf-8", "surrogatepass")


# -- the test --------------------------------------------------------------------------------


def test_generated_requests_get_a_clean_answer(io_loop, gateway, base_url, caplog):
    caplog.set_level(logging.WARNING)
    sessions: dict[str, str] = {}
    http = httpx2.AsyncClient(timeout=REQUEST_TIMEOUT)  # one client: its connections are kept alive between examples

    async def send(request: Request) -> tuple[int, str, bytes]:
        for version in SESSION_PLACEHOLDERS:
            if version not in sessions:  # not opened yet, or a generated DELETE ended it
                sessions[version] = await _open_session(base_url, version)
        pairs = [(name, _live(value, sessions)) for name, value in request.headers]
        content: Any = request.body
        if request.chunked and request.body is not None:
            body = request.body

            async def chunks() -> Any:
                yield body

            content = chunks()
        built = http.build_request(request.method, base_url + request.path, headers=pairs, content=content)
        response = await http.send(built, stream=True)
        try:
            content_type = response.headers.get("Content-Type", "")
            if content_type.startswith("text/event-stream") and built.method == "GET":
                answer = b""  # the session's stream: it stays open
            else:
                answer = await response.aread()
        finally:
            await response.aclose()
        if request.method == "DELETE" and response.status_code == 200:
            for version, placeholder in SESSION_PLACEHOLDERS.items():
                if (SESSION_HEADER, placeholder.encode()) in request.headers:
                    sessions.pop(version, None)
        return response.status_code, content_type, answer

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )
    @given(request=requests())
    def answers_cleanly(request: Request) -> None:
        first = len(caplog.records)
        status, content_type, body = io_loop.run_sync(lambda: send(request), timeout=REQUEST_TIMEOUT + 5)
        event(f"{request.method} {_route(request.path)}: {status}")
        # One assertion per kind of failure: Hypothesis reports each kind apart.
        assert 200 <= status < 300 or 400 <= status < 500, f"status {status}: {body[:300]!r}"
        assert b"Traceback" not in body
        if content_type.startswith("application/json") and body:
            _strict_json(body)  # nothing leaves that is not JSON (no NaN, no Infinity)
        if status == 202:
            assert _nothing_to_answer(request.body), "202 for a body that holds a request, or no valid message"
        tracebacks = [_describe(r) for r in caplog.records[first:] if r.exc_info and not _expected(r)]
        assert not tracebacks, "\n".join(tracebacks)

    try:
        answers_cleanly()
    finally:
        io_loop.run_sync(http.aclose)
    health = io_loop.run_sync(lambda: _get(f"{base_url}/health"))
    assert health == 200
    tracebacks = [_describe(r) for r in caplog.records if r.exc_info and not _expected(r)]
    assert not tracebacks, "\n".join(tracebacks)


def _strict_json(text: bytes) -> Any:
    """`json.loads` without the NaN and Infinity that Python takes and JSON does not."""

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def _nothing_to_answer(body: bytes | None) -> bool:
    """Whether `body` is strict JSON holding JSON-RPC 2.0 objects none of which is a request
    (a `method` with an `id`, of whatever type): all a 202 may acknowledge. A message with both
    a `method` and a `result` or `error` is left to the server to read either way."""
    try:
        decoded = _strict_json(body or b"")
    except ValueError:
        return False
    messages = decoded if isinstance(decoded, list) else [decoded]
    return bool(messages) and all(
        isinstance(m, dict)
        and m.get("jsonrpc") == "2.0"
        and not ("method" in m and "id" in m and "result" not in m and "error" not in m)
        for m in messages
    )


def _live(value: bytes, sessions: dict[str, str]) -> bytes:
    for version, placeholder in SESSION_PLACEHOLDERS.items():
        value = value.replace(placeholder.encode(), sessions[version].encode())
    return value


async def _open_session(base_url: str, version: str) -> str:
    """A live session on `everything` at `version` (2025-03-26 takes batches; 2025-11-25 is the newest)."""
    async with httpx2.AsyncClient() as http:
        url = f"{base_url}/everything/mcp"
        response = await http.post(url, json=init_body(version), headers=headers(token()))
        assert response.status_code == 200, response.text
        session = response.headers["Mcp-Session-Id"]
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        await http.post(url, json=note, headers=headers(session=session, version=version))
        return session


def _route(path: str) -> str:
    """The route a path is for, to see in Hypothesis' statistics what the run reached."""
    parts = path.split("?", 1)[0].split("/")
    if path.startswith("/servers/"):
        return "/servers/{name}"
    if len(parts) == 3 and (parts[2] == "mcp" or parts[1] == "mcp"):
        return "/{name}/mcp" if parts[2] == "mcp" else "/mcp/{name}"
    return path if path in ("/health", "/metrics", "/", "/servers") else "(other)"


async def _get(url: str) -> int:
    async with httpx2.AsyncClient() as http:
        return (await http.get(url)).status_code


def _expected(record: logging.LogRecord) -> bool:
    """A tool's own exception is logged with its traceback on purpose (README: the traceback goes
    to the log, never to the client); `boom` raises."""
    return record.msg == "%s: tool %s raised"


def _describe(record: logging.LogRecord) -> str:
    assert record.exc_info is not None
    return (
        f"{record.name} {record.levelname}: {record.getMessage()} ({record.exc_info[0].__name__}: {record.exc_info[1]})"
    )
