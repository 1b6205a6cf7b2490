"""Tokens verified once are not verified again on every request (auth.TokenVerifier.verify), and
that shortcut never lets a token through that a full check would refuse: not past its expiry,
not once revoked, not after the key that signed it is gone; and it holds a bounded amount."""

from __future__ import annotations

import gc
import time
import tracemalloc

import pytest

from mcp_tornado.auth import MAX_VERIFIED_TOKENS, TokenVerifier
from mcp_tornado.errors import Unauthorized
from mcp_tornado.keyring import KeyFile, KeyRing, StaticKeys
from mcp_tornado.keys import hmac_keys, pem_keys
from mcp_tornado.revocations import RevocationList
from tests.conftest import SECRET, wait_until
from tests.security.test_tokens import KeyPair, claims, hs256


def refusal(check: TokenVerifier, token: str) -> str | None:
    try:
        check.verify(token)
    except Unauthorized as exc:
        return exc.message
    return None


def hmac_verifier(**options: object) -> TokenVerifier:
    return TokenVerifier(KeyRing([StaticKeys(hmac_keys(SECRET, ()))]), **options)  # type: ignore[arg-type]


def test_a_token_verified_before_is_refused_once_it_expires():
    check = hmac_verifier(leeway=0)
    token = hs256(claims(exp=int(time.time()) + 2, iat=None))
    assert refusal(check, token) is None
    assert refusal(check, token) is None  # the second time from what the first one found
    wait_until(lambda: refusal(check, token) is not None, timeout=5)
    assert refusal(check, token) == "token expired"


def test_a_token_verified_before_is_refused_once_revoked(tmp_path):
    revocations = tmp_path / "revoked.txt"
    revocations.write_text("")
    check = hmac_verifier(revoked=RevocationList(revocations, interval=0))
    token = hs256(claims(jti="token-1"))
    assert refusal(check, token) is None
    assert refusal(check, token) is None
    revocations.write_text("token-1\n")
    assert refusal(check, token) == "token revoked"


def test_a_token_verified_before_is_refused_once_its_key_is_gone(tmp_path):
    old, new = KeyPair.new("ES256"), KeyPair.new("ES256")
    key_file = tmp_path / "issuer.pem"
    key_file.write_bytes(old.pem)
    check = TokenVerifier(KeyRing([KeyFile(key_file, pem_keys, variable="JWT_PUBLIC_KEY_FILE", interval=0)]))
    signed_by_old = old.sign(claims())
    assert refusal(check, signed_by_old) is None
    assert refusal(check, signed_by_old) is None
    key_file.write_bytes(new.pem)  # the issuer rotated its key: what the old one signed is void
    wait_until(lambda: refusal(check, new.sign(claims())) is None, timeout=5)
    assert refusal(check, signed_by_old) == "invalid token: Signature verification failed"


def test_a_refused_token_is_refused_every_time():
    check = hmac_verifier()
    forged = hs256(claims(), secret="another-secret-another-secret-another")
    for _ in range(3):
        assert refusal(check, forged) == "invalid token: Signature verification failed"


@pytest.mark.parametrize("rounds", [3])
def test_what_it_keeps_of_verified_tokens_is_bounded(rounds):
    """A client with endless valid tokens: memory stops growing at MAX_VERIFIED_TOKENS of them."""
    check = hmac_verifier()

    def verify_new_tokens(count: int) -> None:
        for n in range(count):
            assert refusal(check, hs256(claims(jti=f"{time.time()}-{n}"))) is None

    tracemalloc.start()  # before it fills up, so that what it lets go of counts too
    try:
        verify_new_tokens(MAX_VERIFIED_TOKENS)  # full
        gc.collect()
        before = tracemalloc.take_snapshot()
        verify_new_tokens(rounds * MAX_VERIFIED_TOKENS)
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    # Each token kept is about 1 KB: holding the 3 x 4096 new ones too would be over 12 MB.
    assert grown < 1_000_000, f"grew {grown} bytes over {rounds * MAX_VERIFIED_TOKENS} new tokens"
