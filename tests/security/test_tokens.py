"""Tokens as identity providers issue them, against the real gateway: one test per rule.

Each test starts the gateway (`gateway`/`base_url` in tests/conftest.py) with the settings its
class gives, and opens a session on `/everything/mcp` with a token, as a client would: 200 or
401 and the reason. Keys are generated here with `cryptography`; a JWKS URL is served by a
tiny HTTP server on a free loopback port (`JwksServer`, also used by test_tokens_verifier.py).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import get_default_algorithms

from mcp_tornado import auth
from mcp_tornado.keys import secret_kid
from tests.conftest import SECRET, eventually
from tests.e2e.wire import headers, init_body, open_session

PREVIOUS = "the-previous-secret-still-honoured-for-a-while"
REMOVED = "a-secret-that-was-rotated-out-some-time-ago!"
ISSUER = "https://idp.example.com/"
AUDIENCE = "mcp-gateway"
ASYMMETRIC = ["RS256", "ES256", "EdDSA"]
ALG_NOT_ALLOWED = "invalid token: The specified alg value is not allowed"


# -- tokens and keys ------------------------------------------------------------------------------


def claims(**changes: Any) -> dict[str, Any]:
    """Claims that open /everything/mcp for ten minutes; a change to None leaves that claim out."""
    now = int(time.time())
    values = {"serverName": "everything", "apiKey": "plain-key", "userId": "ada", "iat": now, "exp": now + 600}
    values.update(changes)
    return {k: v for k, v in values.items() if v is not None}


def hs256(payload: dict[str, Any], secret: str = SECRET, *, kid: str | None = None) -> str:
    return jwt.encode(payload, secret, algorithm="HS256", headers={"kid": kid} if kid else None)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_signed_hs256(payload: dict[str, Any], key: bytes, header: dict[str, Any] | None = None) -> str:
    """An HS256 token whose HMAC key is any bytes (PyJWT refuses a PEM as an HMAC key)."""
    head = {"alg": "HS256", "typ": "JWT", **(header or {})}
    signing_input = f"{b64(json.dumps(head).encode())}.{b64(json.dumps(payload).encode())}"
    return f"{signing_input}.{b64(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())}"


@dataclasses.dataclass
class KeyPair:
    """An asymmetric key of an identity provider: it signs, we verify with the public half."""

    algorithm: str
    private: Any

    @classmethod
    def new(cls, algorithm: str) -> KeyPair:
        if algorithm == "RS256":
            return cls(algorithm, rsa.generate_private_key(public_exponent=65537, key_size=2048))
        if algorithm == "ES256":
            return cls(algorithm, ec.generate_private_key(ec.SECP256R1()))
        if algorithm == "EdDSA":
            return cls(algorithm, ed25519.Ed25519PrivateKey.generate())
        raise ValueError(algorithm)

    @property
    def pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def jwk(self, kid: str | None = None) -> dict[str, Any]:
        entry = get_default_algorithms()[self.algorithm].to_jwk(self.private.public_key(), as_dict=True)
        return {**entry, "use": "sig", **({"kid": kid} if kid else {})}

    def sign(self, payload: dict[str, Any], kid: str | None = None) -> str:
        return jwt.encode(payload, self.private, algorithm=self.algorithm, headers={"kid": kid} if kid else None)


class JwksServer:
    """A JWKS endpoint on a free loopback port, served from a thread. `document` may be replaced
    while it runs; `delay` holds every answer that long; `requests` counts the fetches."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.delay = 0.0
        self.requests = 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests += 1
                time.sleep(owner.delay)  # this server's own thread: the gateway must not notice
                body = json.dumps(owner.document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="jwks-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/.well-known/jwks.json"

    def __enter__(self) -> JwksServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


async def opening(base_url: str, bearer: str) -> tuple[int, str]:
    """Open a session with `bearer`, as a client would: the status, and the error message if any."""
    async with httpx2.AsyncClient() as http:
        response = await http.post(f"{base_url}/everything/mcp", json=init_body(), headers=headers(bearer))
    if response.status_code == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    return response.status_code, "" if response.status_code == 200 else response.json()["error"]["message"]


async def accepted(base_url: str, bearer: str) -> bool:
    status, message = await opening(base_url, bearer)
    assert status == 200, message
    return True


async def refused(base_url: str, bearer: str, reason: str) -> bool:
    """The token is refused with a 401 for `reason` (the gateway may add where tokens come from)."""
    status, message = await opening(base_url, bearer)
    assert status == 401, f"{status}: {message}"
    assert message.startswith(reason), f"{message!r} is not for {reason!r}"
    return True


# -- claims: exp, lifetime, issuer, audience ----------------------------------------------------


class TestClaims:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"jwt_issuer": ISSUER, "jwt_audience": AUDIENCE, "jwt_max_lifetime": 3600}

    @staticmethod
    def token(**changes: Any) -> str:
        return hs256(claims(**{"iss": ISSUER, "aud": AUDIENCE, **changes}))

    @pytest.mark.gen_test
    async def test_a_token_of_the_right_issuer_and_audience_opens_a_session(self, base_url):
        await accepted(base_url, self.token())
        await accepted(base_url, self.token(aud=["another-api", AUDIENCE]))

    @pytest.mark.gen_test
    async def test_an_expired_token_is_401(self, base_url):
        now = int(time.time())
        await refused(base_url, self.token(iat=now - 120, exp=now - 60), "token expired")

    @pytest.mark.gen_test
    async def test_a_token_without_exp_is_401(self, base_url):
        await refused(base_url, self.token(exp=None), "token has no exp")

    @pytest.mark.gen_test
    async def test_a_lifetime_over_the_maximum_is_401(self, base_url):
        now = int(time.time())
        over = "token lifetime is over the maximum of 3600 s"
        await refused(base_url, self.token(iat=now, exp=now + 3601), over)
        await refused(base_url, self.token(iat=None, exp=now + 7200), over)  # without iat: from now on
        await accepted(base_url, self.token(iat=now, exp=now + 3600))

    @pytest.mark.gen_test
    async def test_a_wrong_issuer_is_401(self, base_url):
        await refused(base_url, self.token(iss="https://evil.example.com/"), "token issuer not accepted")
        await refused(base_url, self.token(iss=None), "token has no iss")

    @pytest.mark.gen_test
    async def test_a_wrong_audience_is_401(self, base_url):
        await refused(base_url, self.token(aud="another-api"), "token audience not accepted")
        await refused(base_url, self.token(aud=["a", "b"]), "token audience not accepted")
        await refused(base_url, self.token(aud=None), "token has no aud")


# -- HS256 key rotation ---------------------------------------------------------------------------


class TestRotation:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"jwt_previous_secrets": (PREVIOUS,)}

    @pytest.mark.gen_test
    async def test_a_token_of_the_previous_secret_is_accepted_and_of_a_removed_one_refused(self, base_url):
        await accepted(base_url, hs256(claims(), PREVIOUS))  # no kid: every secret is tried
        await accepted(base_url, hs256(claims(), PREVIOUS, kid=secret_kid(PREVIOUS)))
        await refused(base_url, hs256(claims(), REMOVED), "invalid token: Signature verification failed")
        removed = hs256(claims(), REMOVED, kid=secret_kid(REMOVED))
        await refused(base_url, removed, f"invalid token: no key with kid {secret_kid(REMOVED)!r}")

    @pytest.mark.gen_test
    async def test_the_kid_selects_the_key(self, base_url):
        # Signed with the current secret but naming the previous one: only the key named is tried.
        misnamed = hs256(claims(), SECRET, kid=secret_kid(PREVIOUS))
        await refused(base_url, misnamed, "invalid token: Signature verification failed")
        await accepted(base_url, hs256(claims(), SECRET, kid=secret_kid(SECRET)))
        assert secret_kid(SECRET) == hashlib.sha256(SECRET.encode()).hexdigest()[:8]

    @pytest.mark.gen_test
    async def test_minted_tokens_name_the_current_secret_and_open_sessions(self, base_url):
        token = auth.mint(SECRET, server_name="everything", api_key="plain-key", ttl=60)
        assert jwt.get_unverified_header(token)["kid"] == secret_kid(SECRET)
        assert {"iat", "exp"} <= set(jwt.decode(token, SECRET, algorithms=["HS256"]))
        await accepted(base_url, token)


# -- revocation -----------------------------------------------------------------------------------


class TestRevocation:
    @pytest.fixture
    def revoked_file(self, tmp_path: Path) -> Path:
        path = tmp_path / "revoked.txt"
        path.write_text("# revoked by the on-call, ticket 42\nleaked-1   # pasted in a chat\n\n")
        return path

    @pytest.fixture
    def settings_overrides(self, revoked_file: Path) -> dict[str, Any]:
        return {"jwt_revoked_file": revoked_file}

    @pytest.mark.gen_test(timeout=30)
    async def test_a_revoked_jti_is_401_and_the_file_is_followed_while_running(self, base_url, revoked_file):
        await refused(base_url, hs256(claims(jti="leaked-1")), "token revoked")
        await accepted(base_url, hs256(claims(jti="fine-2")))
        await accepted(base_url, hs256(claims()))  # no jti: nothing to revoke

        replacement = revoked_file.with_suffix(".new")
        replacement.write_text("fine-2\n")  # written aside and renamed into place, as the README asks
        replacement.replace(revoked_file)

        async def status_of(jti: str) -> tuple[int, str]:
            return await opening(base_url, hs256(claims(jti=jti)))

        async def revoked(jti: str) -> bool:
            status, message = await status_of(jti)
            return status == 401 and message.startswith("token revoked")

        async def opens(jti: str) -> bool:
            return (await status_of(jti))[0] == 200

        await eventually(lambda: revoked("fine-2"), timeout=10, message="fine-2 was never revoked")
        await eventually(lambda: opens("leaked-1"), timeout=10, message="leaked-1 stayed revoked")

    @pytest.mark.gen_test(timeout=30)
    async def test_revoking_a_token_ends_the_sessions_it_opened(self, base_url, revoked_file):
        url = f"{base_url}/everything/mcp"
        ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
        async with httpx2.AsyncClient(timeout=10) as http:
            session = await open_session(http, url, hs256(claims(jti="open-3")))
            assert (await http.post(url, json=ping, headers=headers(session=session, version="2025-11-25"))).json()[
                "result"
            ] == {}
            replacement = revoked_file.with_suffix(".new")
            replacement.write_text("open-3\n")
            replacement.replace(revoked_file)

            async def ended() -> bool:
                answer = await http.post(url, json=ping, headers=headers(session=session, version="2025-11-25"))
                return answer.status_code == 401 and answer.json()["error"]["message"].startswith("token revoked")

            await eventually(ended, timeout=10, message="a session of a revoked token kept working")
            after = await http.post(url, json=ping, headers=headers(session=session, version="2025-11-25"))
        assert after.status_code == 404  # ended, not merely refused once


# -- asymmetric keys: RS256, ES256, EdDSA from a PEM file, a JWKS file, a JWKS URL ---------------


@pytest.fixture(params=ASYMMETRIC)
def key(request: pytest.FixtureRequest) -> KeyPair:
    return KeyPair.new(request.param)


class TestAsymmetric:
    @pytest.fixture(params=["pem-file", "jwks-file", "jwks-url"])
    def settings_overrides(self, request: pytest.FixtureRequest, key: KeyPair, tmp_path: Path) -> Iterator[dict]:
        source = request.param
        if source == "pem-file":
            (tmp_path / "idp.pem").write_bytes(key.pem)
            yield {"jwt_public_key_file": tmp_path / "idp.pem"}
        elif source == "jwks-file":
            (tmp_path / "jwks.json").write_text(json.dumps({"keys": [key.jwk("idp-1")]}))
            yield {"jwt_jwks": str(tmp_path / "jwks.json")}
        else:
            with JwksServer({"keys": [key.jwk("idp-1")]}) as server:
                yield {"jwt_jwks": server.url}

    @pytest.mark.gen_test
    async def test_a_token_signed_by_the_identity_provider_is_accepted(self, base_url, key, settings_overrides):
        kid = None if "jwt_public_key_file" in settings_overrides else "idp-1"
        await accepted(base_url, key.sign(claims(), kid))
        stranger = KeyPair.new(key.algorithm)  # the same algorithm, another key
        await refused(base_url, stranger.sign(claims(), kid), "invalid token: Signature verification failed")


class TestKeyConfusion:
    @pytest.fixture
    def rsa_key(self) -> KeyPair:
        return KeyPair.new("RS256")

    @pytest.fixture
    def settings_overrides(self, rsa_key: KeyPair, tmp_path: Path) -> dict[str, Any]:
        (tmp_path / "idp.pem").write_bytes(rsa_key.pem)
        (tmp_path / "jwks.json").write_text(json.dumps({"keys": [rsa_key.jwk("rsa-1")]}))
        return {"jwt_public_key_file": tmp_path / "idp.pem", "jwt_jwks": str(tmp_path / "jwks.json")}

    @pytest.mark.gen_test
    async def test_an_hs256_token_signed_with_the_rsa_public_key_is_refused(self, base_url, rsa_key):
        await accepted(base_url, rsa_key.sign(claims()))  # the key itself works
        forged = hand_signed_hs256(claims(), rsa_key.pem)
        await refused(base_url, forged, "invalid token: Signature verification failed")
        named = hand_signed_hs256(claims(), rsa_key.pem, {"kid": "rsa-1"})
        await refused(base_url, named, "invalid token: key 'rsa-1' does not verify HS256")

    @pytest.mark.gen_test
    async def test_alg_none_is_refused(self, base_url):
        unsigned = jwt.encode(claims(), None, algorithm="none")
        await refused(base_url, unsigned, ALG_NOT_ALLOWED)
        await refused(base_url, jwt.encode(claims(), None, algorithm="none", headers={"kid": "rsa-1"}), ALG_NOT_ALLOWED)

    @pytest.mark.gen_test
    async def test_an_es256_token_against_rsa_keys_only_is_refused(self, base_url):
        es = KeyPair.new("ES256")
        await refused(base_url, es.sign(claims()), ALG_NOT_ALLOWED)
        await refused(base_url, es.sign(claims(), "rsa-1"), ALG_NOT_ALLOWED)
