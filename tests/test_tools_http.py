"""A server's tools as plain HTTP: `GET /{name}/openapi.json` and `POST /{name}/tools/{tool}`,
on a real gateway, called with a plain HTTP client (no MCP, no session)."""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path
from typing import Any

import httpx2
import pytest
import tornado.httpclient
from openapi_spec_validator import validate

from tests.conftest import eventually, token
from tests.security.test_sessions import bearer

EXAMPLES = Path(__file__).parent.parent / "servers.d"

SCOPED = """\
tools:
  - name: echo
    handler: everything_tools:echo
    inputSchema: {type: object, properties: {message: {type: string}}, required: [message]}
  - name: whoami
    handler: everything_tools:whoami
    scopes: [admin]
"""
OPEN = """\
auth: none
tools:
  - name: echo
    handler: everything_tools:echo
    inputSchema: {type: object, properties: {message: {type: string}}, required: [message]}
"""
# Schemas of several shapes, for the document and for schemathesis: `$defs` references, an
# output schema, a tool without arguments, a name that needs escaping in a path.
SHAPES = """\
tools:
  - name: area
    title: Area
    description: The area of a rectangle
    inputSchema:
      type: object
      properties: {box: {$ref: "#/$defs/box"}}
      required: [box]
      additionalProperties: false
      $defs:
        box:
          type: object
          properties: {w: {type: number, minimum: 0, maximum: 1000}, h: {type: number, minimum: 0, maximum: 1000}}
          required: [w, h]
    outputSchema: {type: object, properties: {area: {type: number}}, required: [area]}
    handler: shapes_tools:area
  - name: nothing
    description: Takes no arguments
    handler: shapes_tools:nothing
  - name: say.it
    inputSchema: {type: object, properties: {words: {type: array, items: {type: string}, maxItems: 20}}}
    handler: shapes_tools:say
  - name: picture
    description: An image, not text
    handler: shapes_tools:picture
"""
SHAPES_TOOLS = """\
def area(arguments, context):
    box = arguments["box"]
    return {"area": box["w"] * box["h"]}

def nothing(arguments, context):
    return "nothing to do"

def say(arguments, context):
    from mcp_types import TextContent
    return [TextContent(type="text", text=w) for w in arguments.get("words", [])]

def picture(arguments, context):
    from mcp_types import ImageContent
    return [ImageContent(type="image", data="aGk=", mimeType="image/png")]
"""
SLOW_APP = """\
import asyncio
from mcp.server.mcpserver import MCPServer

mcp = MCPServer("slow-app")

@mcp.tool()
async def nap(seconds: float) -> str:
    \"\"\"Sleep.\"\"\"
    await asyncio.sleep(seconds)
    return "rested"
"""


@pytest.fixture
def servers_dir(servers_dir: Path) -> Path:
    shutil.copy(EXAMPLES / "calculator.yaml", servers_dir)
    shutil.copy(EXAMPLES / "calculator_tools.py", servers_dir)
    (servers_dir / "scoped.yaml").write_text(SCOPED)
    (servers_dir / "open.yaml").write_text(OPEN)
    (servers_dir / "shapes.yaml").write_text(SHAPES)
    (servers_dir / "shapes_tools.py").write_text(SHAPES_TOOLS)
    (servers_dir / "slow_app.py").write_text(SLOW_APP)
    (servers_dir / "slowapp.yaml").write_text("app: slow_app:mcp\ntimeout: 0.5\n")
    (servers_dir / "broken.yaml").write_text('command: ["/nonexistent/mcp-server"]\n')
    return servers_dir


def auth(bearer_token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {bearer_token}"} if bearer_token else {}


async def get(url: str, bearer_token: str | None = None) -> httpx2.Response:
    async with httpx2.AsyncClient(timeout=30) as http:
        return await http.get(url, headers=auth(bearer_token))


async def post(url: str, bearer_token: str | None = None, **kwargs: Any) -> httpx2.Response:
    async with httpx2.AsyncClient(timeout=30) as http:
        return await http.post(url, headers={**auth(bearer_token), **kwargs.pop("headers", {})}, **kwargs)


def calc() -> str:
    return token("calculator", api_key="demo-key")


def error_of(response: httpx2.Response) -> dict[str, Any]:
    assert response.headers["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == response.status_code
    return error


# -- the document ---------------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_the_document_is_valid_openapi_with_one_operation_per_tool(base_url):
    response = await get(f"{base_url}/calculator/openapi.json", calc())
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/json"
    document = response.json()
    validate(document)  # raises on any violation of OpenAPI 3.1
    assert document["openapi"] == "3.1.0"
    assert document["info"]["title"] == "Calculator" and document["info"]["version"] == "1.0.0"
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert document["security"] == [{"bearer": []}]
    calculate = document["paths"]["/calculator/tools/calculate"]["post"]
    assert calculate["summary"] == "Calculate"
    assert calculate["description"] == "Add, subtract, multiply or divide two numbers"
    schemas = document["components"]["schemas"]
    body = calculate["requestBody"]["content"]["application/json"]["schema"]
    assert schemas[body["$ref"].rsplit("/", 1)[1]]["required"] == ["operation", "a", "b"]
    ok = calculate["responses"]["200"]["content"]["application/json"]["schema"]
    assert schemas[ok["$ref"].rsplit("/", 1)[1]] == {
        "type": "object",
        "properties": {"result": {"type": "number"}},
        "required": ["result"],
    }
    assert {"400", "401", "403", "404", "413", "422", "503", "504"} <= calculate["responses"].keys()
    assert "/calculator/tools/sum_slowly" in document["paths"]


@pytest.mark.gen_test
async def test_schemas_with_references_stay_valid_inside_the_document(base_url):
    document = (await get(f"{base_url}/shapes/openapi.json", token("shapes"))).json()
    validate(document)
    area = document["paths"]["/shapes/tools/area"]["post"]
    ref = area["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    component = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert component["properties"]["box"]["$ref"] == f"{ref}/$defs/box"
    assert "/shapes/tools/say.it" in document["paths"]
    untyped = document["paths"]["/shapes/tools/nothing"]["post"]["responses"]["200"]
    assert "structuredContent" in untyped["description"]


@pytest.mark.gen_test
async def test_upstream_and_sdk_servers_have_documents_of_their_live_tools(base_url):
    child = (await get(f"{base_url}/child/openapi.json", token("child", api_key=None))).json()
    validate(child)
    assert {"/child/tools/add", "/child/tools/sleep", "/child/tools/count"} <= child["paths"].keys()
    assert child["info"]["title"] == "stdio-child"  # the child's own name: the file gives none
    app = (await get(f"{base_url}/sdkapp/openapi.json", token("sdkapp", api_key=None))).json()
    validate(app)
    multiply = app["paths"]["/sdkapp/tools/multiply"]["post"]
    assert multiply["description"] == "Multiply two numbers."
    assert "$ref" in multiply["responses"]["200"]["content"]["application/json"]["schema"]  # its outputSchema


@pytest.mark.gen_test
async def test_the_document_needs_the_servers_token_unless_it_is_public(base_url):
    response = await get(f"{base_url}/calculator/openapi.json")
    assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await get(f"{base_url}/calculator/openapi.json", token("other", api_key=None))).status_code == 403
    assert (await get(f"{base_url}/calculator/openapi.json", token("calculator", api_key="nope"))).status_code == 403
    public = await get(f"{base_url}/open/openapi.json")
    assert public.status_code == 200
    validate(public.json())
    assert public.json()["security"] == [] and "securitySchemes" not in public.json()["components"]
    assert error_of(await get(f"{base_url}/nosuch/openapi.json", token("nosuch")))["message"]


@pytest.mark.gen_test
async def test_a_tool_the_token_lacks_the_scopes_of_is_left_out_and_refused(base_url):
    without = (await get(f"{base_url}/scoped/openapi.json", bearer("scoped"))).json()
    assert "/scoped/tools/echo" in without["paths"] and "/scoped/tools/whoami" not in without["paths"]
    refused = await post(f"{base_url}/scoped/tools/whoami", bearer("scoped"), json={})
    assert refused.status_code == 403
    assert 'error="insufficient_scope"' in refused.headers["WWW-Authenticate"]
    with_scope = (await get(f"{base_url}/scoped/openapi.json", bearer("scoped", scope="admin"))).json()
    assert "/scoped/tools/whoami" in with_scope["paths"]
    allowed = await post(f"{base_url}/scoped/tools/whoami", bearer("scoped", scope="admin", userId="u1"), json={})
    assert allowed.status_code == 200 and allowed.json()["user_id"] == "u1"


@pytest.mark.gen_test
async def test_the_document_follows_a_reload_of_the_servers_file(base_url, servers_dir):
    url = f"{base_url}/shapes/openapi.json"
    first = (await get(url, token("shapes"))).json()
    assert "/shapes/tools/extra" not in first["paths"]
    assert (await get(url, token("shapes"))).json() == first  # the same document while nothing changes
    extra = "  - name: extra\n    handler: shapes_tools:nothing\n"
    (servers_dir / "shapes.yaml").write_text(SHAPES + extra)

    async def regenerated() -> bool:
        return "/shapes/tools/extra" in (await get(url, token("shapes"))).json()["paths"]

    await eventually(regenerated, message="the document never showed the new tool")


@pytest.mark.gen_test(timeout=30)
async def test_the_document_follows_an_upstreams_list_changed(base_url, servers_dir):
    """A `url:` server in front of this gateway's own `shapes` route: when `shapes` changes, the
    upstream tells its sessions (list_changed), and the url server's document follows."""
    upstream = token("shapes", ttl=3000)
    (servers_dir / "front.yaml").write_text(
        f"url: {base_url}/shapes/mcp\nheaders: {{Authorization: 'Bearer {upstream}'}}\n"
    )
    url = f"{base_url}/front/openapi.json"

    async def listed() -> dict[str, Any] | None:
        response = await get(url, token("front", api_key=None))
        return response.json() if response.status_code == 200 else None

    document = await eventually(listed, timeout=10)
    assert "/front/tools/area" in document["paths"] and "/front/tools/extra" not in document["paths"]
    (servers_dir / "shapes.yaml").write_text(SHAPES + "  - name: extra\n    handler: shapes_tools:nothing\n")

    async def regenerated() -> bool:
        return "/front/tools/extra" in (await listed() or {"paths": {}})["paths"]

    await eventually(regenerated, timeout=10, message="the url server's document never showed the new tool")


# -- calls --------------------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_a_call_answers_the_structured_content(base_url):
    response = await post(
        f"{base_url}/calculator/tools/calculate", calc(), json={"operation": "multiply", "a": 6, "b": 7}
    )
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/json"
    assert response.json() == {"result": 42}
    area = await post(f"{base_url}/shapes/tools/area", token("shapes"), json={"box": {"w": 2, "h": 3}})
    assert area.json() == {"area": 6}


@pytest.mark.gen_test
async def test_without_structured_content_text_is_joined_and_other_content_is_listed(base_url):
    echo = await post(f"{base_url}/everything/tools/echo", token(), json={"message": "hi there"})
    assert echo.status_code == 200 and echo.json() == "hi there"
    words = await post(f"{base_url}/shapes/tools/say.it", token("shapes"), json={"words": ["a", "b"]})
    assert words.json() == "a\nb"
    empty = await post(f"{base_url}/shapes/tools/nothing", token("shapes"))  # no body: no arguments
    assert empty.status_code == 200 and empty.json() == "nothing to do"
    picture = await post(f"{base_url}/shapes/tools/picture", token("shapes"), json={})
    assert picture.json() == [{"type": "image", "data": "aGk=", "mimeType": "image/png"}]


@pytest.mark.gen_test
async def test_a_call_that_reports_progress_and_logs_still_answers_json(base_url):
    response = await post(f"{base_url}/everything/tools/slow", token(), json={"steps": 3})
    assert response.status_code == 200 and response.json() == "done 3 steps"


@pytest.mark.gen_test
async def test_calls_reach_stdio_children_and_sdk_apps(base_url):
    child = await post(f"{base_url}/child/tools/add", token("child", api_key=None), json={"a": 2, "b": 5})
    assert child.status_code == 200 and child.json() == {"result": 7.0}
    app = await post(f"{base_url}/sdkapp/tools/multiply", token("sdkapp", api_key=None), json={"a": 3, "b": 4})
    assert app.status_code == 200 and app.json() == {"result": 12.0}


@pytest.mark.gen_test
async def test_the_caller_is_the_token(base_url):
    response = await post(f"{base_url}/everything/tools/whoami", token(user="grace"), json={})
    assert response.json() == {"api_key": "plain-key", "user_id": "grace", "server": "everything", "session_id": None}


@pytest.mark.gen_test
async def test_a_body_that_is_not_a_json_object_is_400(base_url):
    url = f"{base_url}/calculator/tools/calculate"
    for body in (b"[1, 2]", b"{not json", b'"text"', b"NaN"):
        response = await post(url, calc(), content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 400, body
        assert error_of(response)["field"] == "body"


@pytest.mark.gen_test
async def test_arguments_the_input_schema_refuses_are_400_naming_the_field(base_url):
    url = f"{base_url}/calculator/tools/calculate"
    missing = await post(url, calc(), json={"operation": "add", "a": 1})
    assert missing.status_code == 400 and error_of(missing)["field"] == "b"
    wrong = await post(url, calc(), json={"operation": "add", "a": "one", "b": 2})
    assert wrong.status_code == 400 and error_of(wrong)["field"] == "a"
    nested = await post(f"{base_url}/shapes/tools/area", token("shapes"), json={"box": {"w": -1, "h": 2}})
    assert nested.status_code == 400 and error_of(nested)["field"] == "box.w"
    extra = await post(f"{base_url}/shapes/tools/area", token("shapes"), json={"box": {"w": 1, "h": 2}, "x": 1})
    assert extra.status_code == 400 and "x" in error_of(extra)["message"]


@pytest.mark.gen_test
async def test_unknown_tools_and_servers_are_404(base_url):
    unknown = await post(f"{base_url}/calculator/tools/nope", calc(), json={})
    assert unknown.status_code == 404 and "nope" in error_of(unknown)["message"]
    assert (await post(f"{base_url}/nosuch/tools/x", token("nosuch"), json={})).status_code == 404


@pytest.mark.gen_test
async def test_calls_follow_the_mcp_routes_token_rules(base_url):
    url = f"{base_url}/calculator/tools/calculate"
    arguments = {"operation": "add", "a": 1, "b": 2}
    none = await post(url, json=arguments)
    assert none.status_code == 401 and none.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await post(url, "not-a-jwt", json=arguments)).status_code == 401
    assert (await post(url, token("calculator", api_key="wrong"), json=arguments)).status_code == 403
    assert (await post(url, token("other", api_key=None), json=arguments)).status_code == 403
    expired = token("calculator", api_key="demo-key", ttl=-60)
    assert (await post(url, expired, json=arguments)).status_code == 401
    assert (await post(f"{base_url}/open/tools/echo", json={"message": "anyone"})).json() == "anyone"


@pytest.mark.gen_test
async def test_a_tool_that_reports_an_error_is_422_with_its_text(base_url):
    response = await post(f"{base_url}/everything/tools/boom", token(), json={})
    assert response.status_code == 422
    error = error_of(response)
    assert "kaboom" in error["message"] and error["content"][0]["type"] == "text"
    zero = await post(f"{base_url}/calculator/tools/calculate", calc(), json={"operation": "divide", "a": 1, "b": 0})
    assert zero.status_code == 422


@pytest.mark.gen_test(timeout=30)
async def test_a_down_backend_is_503_and_a_late_one_504(base_url):
    down = await post(f"{base_url}/broken/tools/anything", token("broken", api_key=None), json={})
    assert down.status_code == 503 and int(down.headers["Retry-After"]) >= 1
    assert error_of(down)["message"]
    late = await post(f"{base_url}/slowapp/tools/nap", token("slowapp", api_key=None), json={"seconds": 5})
    assert late.status_code == 504 and error_of(late)["message"]
    quick = await post(f"{base_url}/slowapp/tools/nap", token("slowapp", api_key=None), json={"seconds": 0})
    assert quick.status_code == 200 and quick.json() == {"result": "rested"}


@pytest.mark.gen_test
async def test_a_child_tools_timeout_is_its_error_result(base_url):
    response = await post(f"{base_url}/child/tools/sleep", token("child", api_key=None), json={"seconds": 10})
    assert response.status_code == 422 and "timed out" in error_of(response)["message"]


@pytest.mark.gen_test
async def test_bodies_are_bounded_and_must_be_json(base_url):
    http_client = tornado.httpclient.AsyncHTTPClient()
    url = f"{base_url}/everything/tools/echo"
    huge = b'{"message": "' + b"x" * (4 * 1024 * 1024) + b'"}'  # past MCP_MAX_BODY_BYTES (4 MiB)
    headers = {**auth(token()), "Content-Type": "application/json"}
    too_big = await http_client.fetch(url, method="POST", body=huge, headers=headers, raise_error=False)
    assert too_big.code == 413

    async def producer(write):  # chunked: no Content-Length to refuse it by
        for start in range(0, len(huge), 65536):
            await write(huge[start : start + 65536])

    chunked = await http_client.fetch(url, method="POST", body_producer=producer, headers=headers, raise_error=False)
    assert chunked.code == 413
    form = await post(
        url, token(), content=b"message=hi", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert form.status_code == 415


@pytest.mark.gen_test
async def test_other_methods_are_405_with_allow(base_url):
    async with httpx2.AsyncClient() as http:
        put = await http.put(f"{base_url}/everything/tools/echo", headers=auth(token()), json={})
        assert put.status_code == 405 and put.headers["Allow"] == "POST"
        listed = await http.get(f"{base_url}/everything/tools/echo", headers=auth(token()))
        assert listed.status_code == 405 and listed.headers["Allow"] == "POST"
        posted = await http.post(f"{base_url}/everything/openapi.json", headers=auth(token()))
        assert posted.status_code == 405 and posted.headers["Allow"] == "GET"


# -- schemathesis -------------------------------------------------------------------------------

MAX_EXAMPLES = 30
SEED = 20261125
RUN_TIMEOUT = 120


@pytest.mark.gen_test(timeout=RUN_TIMEOUT + 30)
@pytest.mark.parametrize("server", ["calculator", "shapes", "open"])
async def test_schemathesis_finds_no_5xx_and_nothing_undocumented(base_url, tmp_path, server):
    """Every schemathesis check over the generated document, with the server's token: no 5xx,
    every status, content type, header and body as documented, invalid input refused (400),
    auth enforced, 405 with `Allow` for other methods. Left out: `positive_data_acceptance`
    (schema-valid arguments may still fail the tool, e.g. a division by zero: 422)."""
    bearer_token = calc() if server == "calculator" else token(server)
    argv = [
        *(sys.executable, "-m", "schemathesis.cli", "run", f"{base_url}/{server}/openapi.json"),
        *("--header", f"Authorization: Bearer {bearer_token}"),
        *("--checks", "all", "--exclude-checks", "positive_data_acceptance"),
        *("--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED)),
        *("--request-timeout", "10", "--no-color"),
    ]
    if server == "calculator":  # sum_slowly takes up to 5 s a number: generated lists would outlast the run
        argv += ["--exclude-path", "/calculator/tools/sum_slowly"]
    process = await asyncio.create_subprocess_exec(
        *argv, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    report = output.decode(errors="replace")
    assert process.returncode == 0, report[-8000:]
    assert "No issues found" in report, report[-8000:]


# A server whose tool schema points at nothing (an upstream's, not ours: our own definitions
# refuse such a schema at load): the plain-HTTP route leaves the arguments to the server.
DANGLING_APP = """\
import mcp_types as types
from mcp.server.lowlevel.server import Server

SCHEMA = {"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}


async def list_tools(ctx, params):
    return types.ListToolsResult(tools=[types.Tool(name="pick", input_schema=SCHEMA)])


async def call_tool(ctx, params):
    return types.CallToolResult(content=[types.TextContent(type="text", text="picked")])


app = Server("dangling", on_list_tools=list_tools, on_call_tool=call_tool)
"""


@pytest.mark.gen_test
async def test_a_schema_that_cannot_be_applied_is_no_500(base_url, servers_dir):
    (servers_dir / "dangling_app.py").write_text(DANGLING_APP)
    (servers_dir / "dangling.yaml").write_text("app: dangling_app:app\n")
    bearer = token("dangling", api_key=None)

    async def loaded():
        return (await get(f"{base_url}/dangling/openapi.json", bearer)).status_code == 200

    await eventually(loaded, message="dangling.yaml never served")
    called = await post(f"{base_url}/dangling/tools/pick", bearer, json={"a": 1})
    assert called.status_code == 200, called.text
    assert called.json() == "picked"
