"""JWT tokens: *verify* (token -> `Principal`) apart from *require* (the 401/403 rules).

`TokenVerifier` is what the gateway checks every token with, built once from the settings
(`TokenVerifier.from_settings`): its keys (a `keys.KeyRing`: HS256 secrets, a PEM public key
file, a JWKS file or URL, each key bound to the one algorithm it verifies), the claims it
insists on, and the revoked token ids (`revocations`). A token must carry `exp`, may live no
longer than `jwt_max_lifetime`, and, when they are configured, must name the issuer (`iss`)
and the audience (`aud`). `verify(token, secret)` is the same check with one HS256 secret and
the default rules, for callers that hold only a secret.

Claims read: `serverName` (the route a token opens), `apiKey` (checked against the server's
`api_keys`), `userId`, `admin` (management API), `sub`, `scope` (space-separated), `jti`, and
the registered `exp`/`nbf`/`iat`/`iss`/`aud`.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import hmac
import json
import secrets
import time
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import jwt
from jwt.warnings import InsecureKeyLengthWarning

from mcp_tornado.errors import Forbidden, Unauthorized
from mcp_tornado.keyring import KeyRing, StaticKeys
from mcp_tornado.keys import MIN_SECRET_BYTES as MIN_SECRET_BYTES  # for `cli`: warns of a short JWT_SECRET
from mcp_tornado.keys import VerificationKey, hmac_keys
from mcp_tornado.keys import secret_kid as secret_kid  # the kid `mint` sets
from mcp_tornado.revocations import RevocationList
from mcp_tornado.settings import Settings, SettingsError

ALGORITHM = "HS256"  # what `mint` signs with
# Clock skew tolerated between the token issuer and us, unless `jwt_leeway` says otherwise.
LEEWAY_SECONDS = 5
# The longest a token may live, unless `jwt_max_lifetime` says otherwise (exp - iat, or exp - now).
MAX_LIFETIME_SECONDS = 7 * 86400
BEARER_PREFIX = "bearer "
# The last second of year 9999: a time claim past it is nonsense, and larger numbers overflow floats.
MAX_TIMESTAMP = 253_402_300_799
# Tokens verified lately, kept so that a stateless client's every request (or a session's every
# resume) does not pay for the signature again: bounded, oldest first out.
MAX_VERIFIED_TOKENS = 4096
# PyJWT would warn on every decode; `cli` reports a short secret once, at start-up, instead.
warnings.filterwarnings("ignore", category=InsecureKeyLengthWarning)


@dataclasses.dataclass(frozen=True, slots=True)
class Principal:
    """Who a verified token speaks for."""

    token: str
    server_name: str | None
    api_key: str | None
    user_id: str | None
    admin: bool
    expires_at: float | None
    subject: str | None = None  # `sub`
    scopes: frozenset[str] = frozenset()  # `scope`, space-separated in the token
    token_id: str | None = None  # `jti`


def anonymous(server_name: str) -> Principal:
    """Who a request without a token is on a public (`auth: none`) server: nobody in particular."""
    return Principal(token="", server_name=server_name, api_key=None, user_id=None, admin=False, expires_at=None)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer ...` header, None when the header is absent.

    Raises `Unauthorized` for a header of another scheme or with no token.
    """
    if authorization is None:
        return None
    if not authorization[: len(BEARER_PREFIX)].lower() == BEARER_PREFIX:
        raise Unauthorized("Authorization must be a Bearer token", error="invalid_request")
    token = authorization[len(BEARER_PREFIX) :].strip()
    if not token:
        raise Unauthorized("empty Bearer token", error="invalid_request")
    return token


class TokenVerifier:
    """Checks tokens: their signature with the keys of a `KeyRing`, their claims, revocation.

    Everything static is prepared when it is built; `verify` is cheap enough for the hot path
    (stateless requests verify on every request) and never waits on the network.
    """

    def __init__(
        self,
        keys: KeyRing,
        *,
        issuer: str | None = None,
        audience: str | None = None,
        leeway: float = LEEWAY_SECONDS,
        max_lifetime: float = MAX_LIFETIME_SECONDS,
        revoked: RevocationList | None = None,
    ) -> None:
        self.keys = keys
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway
        self._max_lifetime = max_lifetime
        self._revoked = revoked
        self._options: Any = {"require": ["exp"], "verify_aud": audience is not None}
        # token -> (its principal, the keys it was verified with, when it expires); see `verify`.
        self._verified: dict[str, tuple[Principal, object, float]] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenVerifier:
        """The gateway's verifier. Raises `SettingsError` naming the variable at fault (a bad
        PEM file, an unreadable JWKS or revocation file, a JWKS URL that is not http(s))."""
        revoked = RevocationList(settings.jwt_revoked_file) if settings.jwt_revoked_file is not None else None
        return cls(
            KeyRing.from_settings(settings),
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            leeway=settings.jwt_leeway,
            max_lifetime=settings.jwt_max_lifetime,
            revoked=revoked,
        )

    def stop(self) -> None:
        """Stop fetching keys in the background (a JWKS URL)."""
        self.keys.stop()

    def revoked(self, token_id: str | None) -> bool:
        """Whether a token id is on the revocation list (sessions it opened end with it)."""
        return token_id is not None and self._revoked is not None and token_id in self._revoked

    def verify(self, token: str) -> Principal:
        """Check a token's signature and claims. Raises `Unauthorized` with the reason.

        A token verified before, with the same keys, is not verified again until it expires:
        its signature cannot have changed, nor its claims, and every check that depends on the
        time passes later if it passed once, except expiry (checked here) and revocation
        (checked every time). New keys (a rotated JWKS, a changed key file) verify it anew.
        """
        keys = self.keys.generation()
        known = self._verified.get(token)
        if known is not None and known[1] is keys and time.time() < known[2]:
            if self.revoked(known[0].token_id):
                raise Unauthorized("token revoked")
            return known[0]
        principal = self._verify(token)
        if len(self._verified) >= MAX_VERIFIED_TOKENS:
            del self._verified[next(iter(self._verified))]
        assert principal.expires_at is not None  # exp is required
        # Valid while now < int(exp) + leeway: PyJWT's own rule (it drops a fraction of exp).
        self._verified[token] = (principal, keys, int(principal.expires_at) + self._leeway)
        return principal

    def _verify(self, token: str) -> Principal:
        header = _header_of(token)
        try:
            claims = self._decode(token, self.keys.candidates(header.get("alg"), header.get("kid")))
        except (OverflowError, ValueError, TypeError, RecursionError):  # e.g. an exp of 1e400 or 5000 digits
            raise Unauthorized("invalid token: a claim is out of range") from None
        except jwt.PyJWTError as exc:  # a malformed token
            raise Unauthorized(f"invalid token: {exc}") from None
        for name in ("exp", "nbf", "iat"):
            value = claims.get(name)
            if value is not None and not (
                isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= MAX_TIMESTAMP
            ):
                raise Unauthorized(f"invalid token: claim {name} must be a time between 1970 and 9999")
        exp, iat = claims["exp"], claims.get("iat")
        # exp - iat is what the issuer granted; without iat, what is left of it (give or take the leeway).
        if exp - (iat if iat is not None else time.time() + self._leeway) > self._max_lifetime:
            raise Unauthorized(f"token lifetime is over the maximum of {self._max_lifetime:g} s")
        strings = {name: claims.get(name) for name in ("serverName", "apiKey", "userId", "sub", "jti", "scope")}
        for name, value in strings.items():
            if value is not None and not isinstance(value, str):
                raise Unauthorized(f"invalid token: claim {name} must be a string")
        token_id = strings["jti"]
        if token_id is not None and self._revoked is not None and token_id in self._revoked:
            raise Unauthorized("token revoked")
        return Principal(
            token=token,
            server_name=strings["serverName"],
            api_key=strings["apiKey"],
            user_id=strings["userId"],
            admin=claims.get("admin") is True,
            expires_at=float(exp),
            subject=strings["sub"],
            scopes=frozenset(strings["scope"].split()) if strings["scope"] else frozenset(),
            token_id=token_id,
        )

    def _decode(self, token: str, candidates: Iterable[VerificationKey]) -> dict[str, Any]:
        """The claims, from the first candidate key whose signature matches (claims checked)."""
        for key in candidates:
            try:
                claims: dict[str, Any] = jwt.decode(
                    token,
                    key.jwk,  # a PyJWK: PyJWT too refuses any algorithm but the key's
                    algorithms=[key.algorithm],
                    leeway=self._leeway,
                    issuer=self._issuer,
                    audience=self._audience,
                    options=self._options,
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.ExpiredSignatureError:
                raise Unauthorized("token expired") from None
            except jwt.ImmatureSignatureError:
                raise Unauthorized("token not yet valid") from None
            except jwt.MissingRequiredClaimError as exc:
                raise Unauthorized(f"token has no {exc.claim}") from None
            except jwt.InvalidIssuerError:
                raise Unauthorized("token issuer not accepted") from None
            except jwt.InvalidAudienceError:
                raise Unauthorized("token audience not accepted") from None
            return claims
        raise Unauthorized("invalid token: Signature verification failed")


def _header_of(token: str) -> dict[str, Any]:
    """A token's header, read loosely, only to choose its candidate keys: PyJWT reads it again,
    strictly, when it verifies (reading it twice with PyJWT costs a third of a verification)."""
    segment = token.partition(".")[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, RecursionError):  # binascii.Error, UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise Unauthorized("invalid token: malformed header") from None
    if not isinstance(header, dict):
        raise Unauthorized("invalid token: malformed header")
    return header


def verify(token: str, secret: str) -> Principal:
    """`TokenVerifier.verify` with one HS256 secret and the default rules (exp required, at most
    `MAX_LIFETIME_SECONDS`, no issuer or audience). Raises `Unauthorized` with the reason."""
    return _verifier_for(secret).verify(token)


@functools.lru_cache(maxsize=4)
def _verifier_for(secret: str) -> TokenVerifier:
    try:
        keys = KeyRing([StaticKeys(hmac_keys(secret, ()))])
    except SettingsError:  # an empty secret, or one that is a public key: it verifies nothing
        keys = KeyRing([])
    return TokenVerifier(keys)


class ApiKeys:
    """A server's accepted API keys, kept only as sha256 digests, compared in constant time."""

    def __init__(self, entries: Iterable[str]) -> None:
        self._digests = tuple(_digest_of(entry) for entry in entries)

    def __bool__(self) -> bool:
        return bool(self._digests)

    def accepts(self, api_key: str | None) -> bool:
        if api_key is None:
            return False
        candidate = hashlib.sha256(api_key.encode()).digest()
        # Compare against every entry so the time taken does not reveal which one matched.
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(candidate, digest)
        return matched


def _digest_of(entry: str) -> bytes:
    if entry.startswith("sha256:"):
        return bytes.fromhex(entry[len("sha256:") :])
    return hashlib.sha256(entry.encode()).digest()


def require_server(principal: Principal, server_name: str, api_keys: ApiKeys) -> None:
    """The token must name this server and, when the server has keys, carry one of them."""
    if principal.server_name is None:
        raise Forbidden("token has no serverName claim")
    if principal.server_name != server_name:
        raise Forbidden(f"token is not valid for server {server_name!r}")
    if api_keys and not api_keys.accepts(principal.api_key):
        raise Forbidden("API key not accepted by this server")


def require_admin(principal: Principal) -> None:
    if not principal.admin:
        raise Forbidden("the management API needs an admin token")


def mint(
    secret: str,
    *,
    server_name: str | None = None,
    api_key: str | None = None,
    user_id: str | None = None,
    admin: bool = False,
    ttl: float = 3600,
    now: float | None = None,
    issuer: str | None = None,
    audience: str | None = None,
    token_id: str | None = None,
) -> str:
    """A signed HS256 token with `iat`, `exp` and the secret's `kid` in its header;
    `server_name` for an MCP route or `admin=True` for the management API."""
    issued = int(now if now is not None else time.time())
    claims: dict[str, Any] = {"iat": issued, "exp": issued + int(ttl)}
    token_id = token_id or secrets.token_urlsafe(12)  # every token we mint can be revoked by its jti
    extra: Mapping[str, Any] = {
        "serverName": server_name,
        "apiKey": api_key,
        "userId": user_id,
        "iss": issuer,
        "aud": audience,
        "jti": token_id,
    }
    claims.update({k: v for k, v in extra.items() if v is not None})
    if admin:
        claims["admin"] = True
    return jwt.encode(claims, secret, algorithm=ALGORITHM, headers={"kid": secret_kid(secret)})
