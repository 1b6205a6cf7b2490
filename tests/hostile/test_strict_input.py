"""Item 8: input that is not what the spec allows gets the error the spec names, and nothing
leaves that is not JSON.

Before: ids of null, true, 1.5, [1], {} or 1e400 got 202 and were never answered; NaN and
Infinity were accepted; a signed token with a 400-digit `exp` was a 500.
"""

from __future__ import annotations

import json

import httpx2
import jwt
import pytest

from tests.conftest import SECRET, token
from tests.e2e.wire import headers, init_body, open_session


def _strict(text: str) -> object:
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.gen_test
@pytest.mark.parametrize("raw_id", ["null", "true", "1.5", "[1]", "{}", "1e400"])
async def test_an_id_that_is_not_a_string_or_integer_is_invalid_request(base_url, raw_id):
    url = f"{base_url}/everything/mcp"
    async with httpx2.AsyncClient() as http:
        session = await open_session(http, url, token())
        body = f'{{"jsonrpc": "2.0", "id": {raw_id}, "method": "tools/list"}}'.encode()
        response = await http.post(url, content=body, headers=headers(session=session, version="2025-11-25"))
    assert response.status_code == 400
    assert _strict(response.text)["error"]["code"] == -32600


@pytest.mark.gen_test
@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
async def test_nan_and_infinity_are_parse_errors(base_url, literal):
    url = f"{base_url}/everything/mcp"
    call = '{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo", "arguments": {"n": %s}}}'
    async with httpx2.AsyncClient() as http:
        session = await open_session(http, url, token())
        response = await http.post(
            url, content=(call % literal).encode(), headers=headers(session=session, version="2025-11-25")
        )
    assert response.status_code == 400
    assert _strict(response.text)["error"]["code"] == -32700


@pytest.mark.gen_test
async def test_a_number_too_large_for_a_float_is_invalid_request(base_url):
    url = f"{base_url}/everything/mcp"
    call = '{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo", "arguments": {"n": 1e400}}}'
    async with httpx2.AsyncClient() as http:
        session = await open_session(http, url, token())
        response = await http.post(url, content=call.encode(), headers=headers(session=session, version="2025-11-25"))
    assert response.status_code == 400
    assert _strict(response.text)["error"]["code"] == -32600


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "exp", [int("9" * 400), 1e308, -1, "tomorrow", [1]], ids=["400-digits", "1e308", "negative", "string", "list"]
)
async def test_absurd_time_claims_are_401(base_url, exp):
    claims = {"serverName": "everything", "apiKey": "plain-key", "exp": exp}
    bearer = jwt.encode(claims, SECRET, algorithm="HS256")
    async with httpx2.AsyncClient() as http:
        response = await http.post(f"{base_url}/everything/mcp", json=init_body(), headers=headers(bearer))
    assert response.status_code == 401
    assert "WWW-Authenticate" in response.headers


@pytest.mark.gen_test
async def test_an_exp_of_1e400_in_the_raw_token_is_401(base_url):
    """`1e400` cannot be written by PyJWT; built by hand, it parses to infinity on the way in."""
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    signing = b64(b'{"alg":"HS256","typ":"JWT"}') + b"." + b64(b'{"serverName":"everything","exp":1e400}')
    signature = b64(hmac.new(SECRET.encode(), signing, hashlib.sha256).digest())
    bearer = (signing + b"." + signature).decode()
    async with httpx2.AsyncClient() as http:
        response = await http.post(f"{base_url}/everything/mcp", json=init_body(), headers=headers(bearer))
    assert response.status_code == 401
