"""The token verifier up close: settings refused at start-up, key sets, a JWKS URL that is slow
or down, revocation files that change, and the claims a `Principal` carries
(mcp_tornado/auth.py, keys.py, keyring.py, revocations.py, watched_file.py)."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import warnings
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.warnings import InsecureKeyLengthWarning

from mcp_tornado import auth
from mcp_tornado.auth import TokenVerifier
from mcp_tornado.errors import Unauthorized
from mcp_tornado.keyring import KeyRing, RemoteKeySet
from mcp_tornado.keys import jwks_keys, secret_kid
from mcp_tornado.revocations import RevocationList, parse_revocations
from mcp_tornado.settings import Settings, SettingsError
from tests.conftest import SECRET, wait_until
from tests.security.test_tokens import JwksServer, KeyPair, claims, hand_signed_hs256, hs256

ALG_NOT_ALLOWED = "invalid token: The specified alg value is not allowed"


def verifier(**settings: Any) -> TokenVerifier:
    return TokenVerifier.from_settings(Settings(jwt_secret=SECRET, **settings))


def refusal(check: TokenVerifier, token: str) -> str:
    with pytest.raises(Unauthorized) as caught:
        check.verify(token)
    return caught.value.message


def settings_error(**settings: Any) -> str:
    with pytest.raises(SettingsError) as caught:
        verifier(**settings)
    return str(caught.value)


def accepts(check: TokenVerifier, token: str) -> bool:
    try:
        check.verify(token)
    except Unauthorized:
        return False
    return True


@pytest.fixture
def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- settings refused at start-up, naming the variable -------------------------------------------


def test_a_missing_or_bad_pem_file_is_refused_naming_the_variable(tmp_path):
    assert settings_error(jwt_public_key_file=tmp_path / "absent.pem").startswith("JWT_PUBLIC_KEY_FILE: ")
    (tmp_path / "bad.pem").write_text("-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n")
    assert settings_error(jwt_public_key_file=tmp_path / "bad.pem").startswith("JWT_PUBLIC_KEY_FILE: ")
    (tmp_path / "empty.pem").write_text("just words\n")
    assert settings_error(jwt_public_key_file=tmp_path / "empty.pem").endswith("no PEM public key in it")


def test_a_private_key_or_a_weak_rsa_key_is_refused(tmp_path):
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / "private.pem").write_bytes(pem)
    assert "give the public key only" in settings_error(jwt_public_key_file=tmp_path / "private.pem")
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    (tmp_path / "weak.pem").write_bytes(
        weak.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert "1024 bits" in settings_error(jwt_public_key_file=tmp_path / "weak.pem")


def test_an_unreadable_or_unusable_jwks_file_is_refused(tmp_path):
    assert settings_error(jwt_jwks=str(tmp_path / "absent.json")).startswith("JWT_JWKS: ")
    (tmp_path / "broken.json").write_text("{not json")
    assert settings_error(jwt_jwks=str(tmp_path / "broken.json")).startswith("JWT_JWKS: ")
    (tmp_path / "oct.json").write_text(json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "s"}]}))
    assert settings_error(jwt_jwks=str(tmp_path / "oct.json")).endswith("no usable signing key in it")


@pytest.mark.parametrize("url", ["ftp://idp.example.com/jwks.json", "file:///etc/passwd", "https:///jwks.json"])
def test_a_jwks_url_that_is_not_http_is_refused(url):
    assert settings_error(jwt_jwks=url).startswith("JWT_JWKS: ")


def test_a_missing_revocation_file_is_refused(tmp_path):
    assert settings_error(jwt_revoked_file=tmp_path / "absent.txt").startswith("JWT_REVOKED_FILE: ")


def test_previous_secrets_are_a_handful_and_never_a_public_key(tmp_path):
    many = tuple(f"previous-secret-number-{n}-long-enough-for-hs256" for n in range(5))
    assert settings_error(jwt_previous_secrets=many).startswith("JWT_PREVIOUS_SECRETS: at most 4")
    pem = KeyPair.new("RS256").pem.decode()
    assert settings_error(jwt_previous_secrets=(pem,)).startswith("JWT_PREVIOUS_SECRETS (entry 1): ")


def test_a_short_previous_secret_is_warned_about(caplog):
    with caplog.at_level(logging.WARNING, logger="mcp_tornado.keys"):
        check = verifier(jwt_previous_secrets=("short",))
    assert "JWT_PREVIOUS_SECRETS: entry 1 is shorter than 32 bytes" in caplog.text
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)  # PyJWT's, on every use: the point is ours
        assert check.verify(hs256(claims(), "short")).user_id == "ada"


def test_serve_exits_naming_the_variable(tmp_path):
    environ = {**os.environ, "JWT_SECRET": SECRET, "JWT_PUBLIC_KEY_FILE": str(tmp_path / "absent.pem")}
    done = subprocess.run(
        [sys.executable, "-m", "mcp_tornado", "serve", "--port", "0", "--servers-dir", str(tmp_path)],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "JWT_PUBLIC_KEY_FILE: " in done.stderr


# -- key sets -------------------------------------------------------------------------------------


def test_a_key_set_keeps_only_asymmetric_signing_keys_each_bound_to_its_algorithm(caplog):
    rs, es = KeyPair.new("RS256"), KeyPair.new("ES256")
    document = {
        "keys": [
            rs.jwk("rs"),
            {**es.jwk("es")},
            {**rs.jwk("ps"), "alg": "PS256"},
            {"kty": "oct", "k": "c2VjcmV0", "kid": "shared"},  # a shared secret in a public document
            {**rs.jwk("enc"), "use": "enc"},
            {**es.jwk("es384"), "alg": "ES384"},  # a P-256 key cannot do ES384
            {**es.jwk("hs"), "alg": "HS256"},
            {**rs.jwk("private"), "d": "AQAB"},
        ]
    }
    with caplog.at_level(logging.WARNING, logger="mcp_tornado.keys"):
        keys = jwks_keys(document)
    assert [(key.kid, key.algorithm) for key in keys] == [("rs", "RS256"), ("es", "ES256"), ("ps", "PS256")]
    assert caplog.text.count("skipped") == 5


def test_an_hs_secrets_kid_is_the_start_of_its_sha256():
    assert secret_kid("secret") == "2bb80d53"
    token = auth.mint(SECRET, server_name="calc", issuer="https://idp/", audience="gw", token_id="t-1")
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT", "kid": secret_kid(SECRET)}
    found = verifier(jwt_issuer="https://idp/", jwt_audience="gw").verify(token)
    assert (found.server_name, found.token_id) == ("calc", "t-1")


def test_a_kid_that_is_not_a_string_is_refused():
    token = hand_signed_hs256(claims(), SECRET.encode(), {"kid": 7})
    assert refusal(verifier(), token) == "invalid token: kid must be a string"


def test_the_principal_carries_sub_scope_and_jti():
    found = verifier().verify(hs256(claims(sub="user-7", scope="tools:call  resources:read", jti="j-1")))
    assert (found.subject, found.token_id) == ("user-7", "j-1")
    assert found.scopes == frozenset({"tools:call", "resources:read"})
    assert verifier().verify(hs256(claims())).scopes == frozenset()
    assert refusal(verifier(), hs256(claims(scope=["tools:call"]))) == "invalid token: claim scope must be a string"


def test_the_leeway_comes_from_the_settings():
    now = int(time.time())
    late = hs256(claims(iat=now - 120, exp=now - 30))
    assert refusal(verifier(), late) == "token expired"
    assert verifier(jwt_leeway=60).verify(late).expires_at == now - 30


# -- a JWKS URL: fetched at start-up, then only in the background ------------------------------


def test_a_kid_miss_never_waits_for_the_fetch_and_the_new_key_serves_once_fetched():
    old, new = KeyPair.new("RS256"), KeyPair.new("ES256")
    with JwksServer({"keys": [old.jwk("old")]}) as server:
        remote = RemoteKeySet(server.url, cooldown=0)
        assert remote.load()
        check = TokenVerifier(KeyRing([remote]))
        assert check.verify(old.sign(claims(), "old")).user_id == "ada"

        server.document = {"keys": [old.jwk("old"), new.jwk("new")]}  # the provider rotates a key in
        server.delay = 1.0  # ... and answers slowly
        token = new.sign(claims(), "new")
        started = time.monotonic()
        assert refusal(check, token) == ALG_NOT_ALLOWED  # ES256 is not known yet: refused at once
        assert time.monotonic() - started < 0.2, "verify waited for the JWKS fetch"
        wait_until(lambda: accepts(check, token), timeout=10, message="the new key was never fetched")
        assert server.requests == 2


def jwks_fetches_done() -> bool:
    """No background JWKS fetch is under way."""
    return not [thread for thread in threading.enumerate() if thread.name == "mcp-tornado-jwks"]


def test_unknown_kids_fetch_at_most_once_per_cooldown_and_a_stale_set_is_fetched_again():
    key = KeyPair.new("RS256")
    now = [1000.0]
    with JwksServer({"keys": [key.jwk("k")]}) as server:
        remote = RemoteKeySet(server.url, cooldown=10, lifespan=300, clock=lambda: now[0])
        remote.load()
        check = TokenVerifier(KeyRing([remote]))
        for number in range(20):
            refusal(check, key.sign(claims(), f"made-up-{number}"))
            wait_until(jwks_fetches_done)
        assert server.requests == 1  # the fetch at start-up: made-up kids cost nothing within the cooldown

        now[0] += 10
        for number in range(20):
            refusal(check, key.sign(claims(), f"made-up-{number}"))
            wait_until(jwks_fetches_done)
        assert server.requests == 2  # one more: the cooldown is over

        now[0] += 300
        assert check.verify(key.sign(claims(), "k")).user_id == "ada"  # the stale keys serve meanwhile
        wait_until(jwks_fetches_done)
        assert server.requests == 3

        remote.stop()
        now[0] += 1000
        assert not remote.refresh()
        assert check.verify(key.sign(claims(), "k")).user_id == "ada"
        assert server.requests == 3


def test_a_jwks_url_down_at_start_up_does_not_stop_the_gateway(caplog, unused_port):
    with caplog.at_level(logging.ERROR, logger="mcp_tornado.keyring"):
        check = verifier(jwt_jwks=f"http://127.0.0.1:{unused_port}/jwks.json")
    assert "JWT_JWKS: fetching" in caplog.text
    assert refusal(check, KeyPair.new("RS256").sign(claims(), "k")) == ALG_NOT_ALLOWED
    assert check.verify(hs256(claims())).user_id == "ada"  # JWT_SECRET still works
    check.stop()


# -- revocation files ------------------------------------------------------------------------------


def test_revocation_lines_comments_and_blanks():
    text = b"# header\n  a-1  \nb-2 # why\n\n#c-3\nd#4\n"
    assert parse_revocations(text) == frozenset({"a-1", "b-2", "d#4"})


def test_a_broken_revocation_file_keeps_the_last_list(tmp_path, caplog):
    path = tmp_path / "revoked.txt"
    path.write_text("one\n")
    revoked = RevocationList(path, interval=0)
    assert "one" in revoked
    path.write_bytes(b"\xff\xfe not utf-8")
    with caplog.at_level(logging.ERROR, logger="mcp_tornado.watched_file"):
        assert "one" in revoked and "one" in revoked
    assert caplog.text.count("keeping the last good version") == 1
    path.unlink()
    assert "one" in revoked  # gone: still revoked
    path.write_text("two\n")
    assert "two" in revoked and "one" not in revoked
