"""Tokens: verify (token -> Principal) and require (the 401/403 rules) (mcp_tornado/auth.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import warnings
from typing import Any

import jwt
import pytest
from jwt.warnings import InsecureKeyLengthWarning

from mcp_tornado import auth
from mcp_tornado.auth import (
    MAX_TIMESTAMP,
    ApiKeys,
    Principal,
    TokenVerifier,
    bearer_token,
    mint,
    require_admin,
    require_server,
    verify,
)
from mcp_tornado.errors import Forbidden, Unauthorized
from mcp_tornado.keyring import KeyRing, StaticKeys
from mcp_tornado.keys import hmac_key

SECRET = "test-secret-that-is-long-enough-for-hs256"
SHA_OF_SECRET = hashlib.sha256(b"secret").hexdigest()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


NO_EXP: dict[str, Any] = {"exp": None}  # `signed({..., **NO_EXP})`: a token without exp


def with_exp(claims: dict[str, Any]) -> dict[str, Any]:
    """`claims` with an exp ten minutes ahead unless they say otherwise (exp is required);
    an exp of None leaves exp out."""
    claims = {"exp": int(time.time()) + 600, **claims}
    return {k: v for k, v in claims.items() if not (k == "exp" and v is None)}


def hand_made(payload: str | dict[str, Any], *, alg: str = "HS256", secret: str = SECRET) -> str:
    """A JWT built by hand: the header says `alg`, the signature is HMAC-SHA256 whatever it says."""
    body = payload if isinstance(payload, str) else json.dumps(with_exp(payload))
    signing_input = f"{b64(json.dumps({'alg': alg, 'typ': 'JWT'}).encode())}.{b64(body.encode())}"
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def signed(claims: dict[str, Any], *, algorithm: str = "HS256", secret: str = SECRET) -> str:
    return jwt.encode(with_exp(claims), secret, algorithm=algorithm)


# Time claims far from now are in range, but past the default maximum lifetime: this one takes any.
AGELESS = TokenVerifier(KeyRing([StaticKeys([hmac_key(SECRET, "JWT_SECRET")])]), max_lifetime=MAX_TIMESTAMP)


def refused(token: str) -> str:
    with pytest.raises(Unauthorized) as caught:
        verify(token, SECRET)
    assert caught.value.status == 401
    assert caught.value.headers["WWW-Authenticate"] == 'Bearer realm="mcp-tornado", error="invalid_token"'
    return caught.value.message


def principal(**fields: Any) -> Principal:
    values: dict[str, Any] = {
        "token": "t",
        "server_name": "calc",
        "api_key": None,
        "user_id": None,
        "admin": False,
        "expires_at": None,
    }
    values.update(fields)
    return Principal(**values)


# -- bearer_token -----------------------------------------------------------------------------


def test_no_authorization_header_is_no_token():
    assert bearer_token(None) is None


@pytest.mark.parametrize("header", ["Bearer abc.def", "bearer abc.def", "BEARER abc.def", "bEaReR abc.def"])
def test_the_bearer_scheme_is_case_insensitive(header):
    assert bearer_token(header) == "abc.def"


def test_the_token_is_stripped():
    assert bearer_token("Bearer   abc  ") == "abc"


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearerabc", "", "Token abc", " Bearer abc"])
def test_another_scheme_is_refused_as_an_invalid_request(header):
    with pytest.raises(Unauthorized) as caught:
        bearer_token(header)
    assert caught.value.message == "Authorization must be a Bearer token"
    assert caught.value.headers["WWW-Authenticate"] == 'Bearer realm="mcp-tornado", error="invalid_request"'


@pytest.mark.parametrize("header", ["Bearer ", "Bearer    ", "bearer \t"])
def test_an_empty_bearer_token_is_refused_as_an_invalid_request(header):
    with pytest.raises(Unauthorized) as caught:
        bearer_token(header)
    assert caught.value.message == "empty Bearer token"
    assert caught.value.headers["WWW-Authenticate"] == 'Bearer realm="mcp-tornado", error="invalid_request"'


# -- verify -----------------------------------------------------------------------------------


def test_a_minted_token_verifies_to_its_principal():
    token = mint(SECRET, server_name="calc", api_key="k", user_id="ada", ttl=600)
    found = verify(token, SECRET)
    assert found.token == token
    assert (found.server_name, found.api_key, found.user_id, found.admin) == ("calc", "k", "ada", False)
    assert found.expires_at is not None
    assert time.time() + 590 < found.expires_at <= time.time() + 600


def test_absent_claims_are_none():
    exp = int(time.time()) + 60
    found = verify(signed({"exp": exp}), SECRET)
    assert found == Principal(
        token=found.token, server_name=None, api_key=None, user_id=None, admin=False, expires_at=float(exp)
    )


def test_a_token_without_exp_is_refused():
    assert refused(signed({"serverName": "calc", **NO_EXP})) == "token has no exp"
    assert refused(hand_made('{"serverName": "calc"}')) == "token has no exp"


def test_exp_becomes_a_float_expiry():
    exp = int(time.time()) + 60
    found = verify(signed({"exp": exp}), SECRET)
    assert found.expires_at == float(exp)
    assert isinstance(found.expires_at, float)


@pytest.mark.parametrize(
    ("admin", "expected"), [(True, True), (False, False), ("true", False), (1, False), (None, False)]
)
def test_only_a_boolean_true_admin_claim_makes_an_admin(admin, expected):
    assert verify(signed({"admin": admin}), SECRET).admin is expected


def test_an_audience_claim_is_not_checked():
    assert verify(signed({"serverName": "calc", "aud": "somewhere-else"}), SECRET).server_name == "calc"


def test_the_hand_made_token_of_these_tests_is_a_valid_hs256_token():
    assert verify(hand_made({"serverName": "calc"}), SECRET).server_name == "calc"


def test_a_token_signed_with_another_secret_is_refused():
    assert refused(signed({"serverName": "calc"}, secret="another-secret-that-is-long-enough")).startswith(
        "invalid token: "
    )


ALG_REFUSED = "invalid token: The specified alg value is not allowed"


def test_a_token_with_alg_none_is_refused():
    unsigned = jwt.encode({"serverName": "calc"}, "", algorithm="none")
    assert refused(unsigned) == ALG_REFUSED
    assert refused(hand_made({"serverName": "calc"}, alg="none")) == ALG_REFUSED


def test_a_token_signed_hs512_with_the_right_secret_is_refused():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)  # HS512 wants 64 bytes; the point is the alg
        token = signed({"serverName": "calc"}, algorithm="HS512")
    assert refused(token) == ALG_REFUSED


def test_a_token_that_says_rs256_is_refused_even_with_a_valid_hmac():
    assert refused(hand_made({"serverName": "calc"}, alg="RS256")) == ALG_REFUSED


def test_garbage_is_refused():
    assert refused("not-a-jwt").startswith("invalid token: ")


def this_second() -> int:
    """The current whole second, read early in it (PyJWT truncates time claims to whole seconds
    and compares them with the float clock, so a test next to a second's end could see it change)."""
    deadline = time.monotonic() + 2
    while time.time() % 1 > 0.8:
        assert time.monotonic() < deadline
    return int(time.time())


# PyJWT: expired when exp <= now - leeway; not yet valid when nbf > now + leeway.


def test_expired_within_the_five_second_leeway_is_accepted():
    assert auth.LEEWAY_SECONDS == 5
    assert verify(signed({"exp": this_second() - 4}), SECRET).expires_at is not None


def test_expired_beyond_the_leeway_is_refused():
    assert refused(signed({"exp": this_second() - 5})) == "token expired"
    assert refused(signed({"exp": this_second() - 3600})) == "token expired"


def test_nbf_within_the_leeway_is_accepted():
    assert verify(signed({"nbf": this_second() + 5}), SECRET).admin is False


def test_nbf_in_the_future_is_refused():
    assert refused(signed({"nbf": this_second() + 6})) == "token not yet valid"
    assert refused(signed({"nbf": this_second() + 3600})) == "token not yet valid"


@pytest.mark.parametrize("claim", ["serverName", "apiKey", "userId"])
@pytest.mark.parametrize("value", [1, True, ["a"], {"a": 1}])
def test_a_string_claim_of_another_type_is_refused(claim, value):
    assert refused(signed({claim: value})) == f"invalid token: claim {claim} must be a string"


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_a_time_claim_of_zero_is_accepted(claim):
    assert AGELESS.verify(signed({claim: 0})).expires_at is not None


@pytest.mark.parametrize("claim", ["nbf", "iat"])
@pytest.mark.parametrize("value", [-1, -0.5])
def test_a_time_claim_before_1970_is_refused(claim, value):
    assert refused(signed({claim: value})) == f"invalid token: claim {claim} must be a time between 1970 and 9999"


def test_exp_of_exactly_max_timestamp_is_accepted():
    assert AGELESS.verify(signed({"exp": MAX_TIMESTAMP})).expires_at == MAX_TIMESTAMP


@pytest.mark.parametrize("value", [MAX_TIMESTAMP + 1, MAX_TIMESTAMP + 0.5])
def test_exp_past_max_timestamp_is_refused(value):
    assert refused(signed({"exp": value})) == "invalid token: claim exp must be a time between 1970 and 9999"


def test_max_timestamp_is_the_last_second_of_9999():
    assert MAX_TIMESTAMP == 253_402_300_799


def test_a_boolean_time_claim_is_refused():
    assert refused(signed({"iat": True})) == "invalid token: claim iat must be a time between 1970 and 9999"


@pytest.mark.parametrize(
    "payload",
    ['{"exp": 1e400}', '{"exp": 1, "iat": -1e400}', '{"exp": %s}' % ("9" * 400), '{"exp": %s}' % ("9" * 5000)],
)
def test_absurd_numbers_are_refused(payload):
    assert refused(hand_made(payload)).startswith("invalid token: ")


# -- ApiKeys ----------------------------------------------------------------------------------


def test_no_keys_is_falsy_and_accepts_nothing():
    keys = ApiKeys([])
    assert not keys
    assert not keys.accepts("anything")
    assert not keys.accepts(None)


def test_a_plain_entry_accepts_that_key_only():
    keys = ApiKeys(["plain-key"])
    assert keys
    assert keys.accepts("plain-key")
    assert not keys.accepts("plain-key ")
    assert not keys.accepts("other")
    assert not keys.accepts(None)


def test_a_sha256_entry_accepts_the_key_it_is_the_digest_of():
    keys = ApiKeys([f"sha256:{SHA_OF_SECRET}"])
    assert keys.accepts("secret")
    assert not keys.accepts(f"sha256:{SHA_OF_SECRET}")  # the entry itself is not the key
    assert not keys.accepts(SHA_OF_SECRET)


def test_a_sha256_entry_in_capitals_works_the_same():
    assert ApiKeys([f"sha256:{SHA_OF_SECRET.upper()}"]).accepts("secret")


@pytest.mark.parametrize("key", ["secret", "plain-key", "third"])
def test_any_of_several_entries_is_accepted(key):
    keys = ApiKeys([f"sha256:{SHA_OF_SECRET}", "plain-key", "third"])
    assert keys.accepts(key)
    assert not keys.accepts("fourth")


# -- require ----------------------------------------------------------------------------------


def test_require_server_passes_a_token_for_this_server():
    require_server(principal(server_name="calc"), "calc", ApiKeys([]))


def test_require_server_refuses_a_token_without_server_name():
    with pytest.raises(Forbidden) as caught:
        require_server(principal(server_name=None), "calc", ApiKeys([]))
    assert caught.value.message == "token has no serverName claim"
    assert caught.value.status == 403


def test_require_server_refuses_a_token_for_another_server():
    with pytest.raises(Forbidden) as caught:
        require_server(principal(server_name="other"), "calc", ApiKeys([]))
    assert caught.value.message == "token is not valid for server 'calc'"


def test_a_server_without_keys_takes_any_key_or_none():
    require_server(principal(api_key=None), "calc", ApiKeys([]))
    require_server(principal(api_key="whatever"), "calc", ApiKeys([]))


@pytest.mark.parametrize("api_key", [None, "wrong"])
def test_a_server_with_keys_refuses_a_missing_or_wrong_key(api_key):
    with pytest.raises(Forbidden) as caught:
        require_server(principal(api_key=api_key), "calc", ApiKeys(["plain-key"]))
    assert caught.value.message == "API key not accepted by this server"


def test_a_server_with_keys_takes_one_of_them():
    require_server(principal(api_key="secret"), "calc", ApiKeys([f"sha256:{SHA_OF_SECRET}"]))


def test_the_server_name_is_checked_before_the_key():
    with pytest.raises(Forbidden, match="not valid for server"):
        require_server(principal(server_name="other", api_key="wrong"), "calc", ApiKeys(["plain-key"]))


def test_require_admin():
    require_admin(principal(admin=True))
    with pytest.raises(Forbidden) as caught:
        require_admin(principal(admin=False))
    assert caught.value.message == "the management API needs an admin token"


def test_anonymous_is_nobody_in_particular_on_one_server():
    assert auth.anonymous("open") == Principal(
        token="", server_name="open", api_key=None, user_id=None, admin=False, expires_at=None
    )
    require_server(auth.anonymous("open"), "open", ApiKeys([]))


# -- mint -------------------------------------------------------------------------------------


def claims_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False, "verify_iat": False})


def test_mint_writes_exactly_the_claims_given():
    token = mint(SECRET, server_name="calc", api_key="k", user_id="ada", ttl=60, now=1000.9)
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT", "kid": auth.secret_kid(SECRET)}
    claims = claims_of(token)
    jti = claims.pop("jti")
    assert claims == {"iat": 1000, "exp": 1060, "serverName": "calc", "apiKey": "k", "userId": "ada"}
    assert len(jti) >= 16 and jti != claims_of(mint(SECRET, now=1000.9))["jti"]  # each token revocable on its own


def test_mint_leaves_out_what_is_not_given():
    claims = claims_of(mint(SECRET, now=1000, token_id="t1"))
    assert claims == {"iat": 1000, "exp": 4600, "jti": "t1"}


def test_mint_an_admin_token():
    claims = claims_of(mint(SECRET, admin=True, ttl=30.7, now=1000, token_id="t2"))
    assert claims == {"iat": 1000, "exp": 1030, "admin": True, "jti": "t2"}


def test_mint_without_now_uses_the_clock():
    before = int(time.time())
    claims = claims_of(mint(SECRET, server_name="calc"))
    assert before <= claims["iat"] <= int(time.time())
    assert claims["exp"] == claims["iat"] + 3600


def test_mint_then_verify_round_trips():
    token = mint(SECRET, server_name="calc", user_id="ada", admin=True, ttl=120, token_id="rt-1")
    found = verify(token, SECRET)
    assert found == Principal(
        token=token,
        server_name="calc",
        api_key=None,
        user_id="ada",
        admin=True,
        expires_at=float(claims_of(token)["exp"]),
        token_id="rt-1",
    )
