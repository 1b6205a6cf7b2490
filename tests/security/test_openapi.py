"""`GET /openapi.json` describes the management API, and the running gateway keeps to it."""

from __future__ import annotations

import asyncio
import json
import sys

import httpx2
import pytest
from openapi_spec_validator import validate

from mcp_tornado import auth
from mcp_tornado import definitions as specs
from tests.conftest import SECRET

# Schemathesis' bounds: examples per operation, and a fixed seed so a failure reproduces
# (change it, or drop it, to explore further).
MAX_EXAMPLES = 50
SEED = 20261125
RUN_TIMEOUT = 90  # seconds; a run takes about 10


async def fetch_document(base_url: str) -> dict:
    async with httpx2.AsyncClient() as http:
        response = await http.get(f"{base_url}/openapi.json")  # no token: the document is public
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/json"
    return response.json()


@pytest.mark.gen_test
async def test_the_document_is_valid_openapi_3_1(base_url):
    document = await fetch_document(base_url)
    validate(document)  # raises on any violation of the OpenAPI 3.1 specification
    assert document["openapi"] == "3.1.0"
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": 'an admin token (claim "admin": true)',
    }
    paths = document["paths"]
    operations = {(path, method) for path, item in paths.items() for method in item if method != "parameters"}
    assert {
        ("/servers", "get"),
        ("/servers/{name}", "get"),
        ("/servers/{name}", "post"),
        ("/servers/{name}", "put"),
        ("/servers/{name}", "delete"),
        ("/tokens", "post"),
    } <= operations
    error = document["components"]["schemas"]["Error"]["properties"]["error"]
    assert error["required"] == ["code", "message"] and set(error["properties"]) == {"code", "message", "field"}


@pytest.mark.gen_test
async def test_the_request_body_is_the_definition_schema_itself(base_url):
    schemas = (await fetch_document(base_url))["components"]["schemas"]
    body = schemas["ServerDefinition"]
    assert body["properties"].keys() == specs.SCHEMA["properties"].keys()
    assert body["allOf"] == specs.SCHEMA["allOf"]
    for name, part in specs.SCHEMA["$defs"].items():
        restated = json.loads(json.dumps(part).replace('"#/$defs/', '"#/components/schemas/Definition_'))
        assert schemas[f"Definition_{name}"] == restated


@pytest.mark.gen_test(timeout=RUN_TIMEOUT + 30)
async def test_schemathesis_finds_no_5xx_and_no_answer_the_document_does_not_describe(base_url, servers_dir, tmp_path):
    """Every check schemathesis has, over the coverage, fuzzing and stateful phases, with an admin
    token: no 5xx, every status, content type, header and body as documented, invalid input
    refused, auth enforced, and 405 with `Allow` for other methods. Left out:
    `positive_data_acceptance` (a schema-valid body is not always a good definition: a handler
    must import, tool names must differ, an `inputSchema` must describe an object). REST
    writes go to this test's servers.d, a temporary copy."""
    admin = auth.mint(SECRET, admin=True, ttl=600)
    argv = [
        *(sys.executable, "-m", "schemathesis.cli", "run", f"{base_url}/openapi.json"),
        *("--header", f"Authorization: Bearer {admin}"),
        *("--checks", "all", "--exclude-checks", "positive_data_acceptance"),
        *("--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED)),
        *("--request-timeout", "10", "--no-color"),
    ]
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
