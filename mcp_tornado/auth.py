"""JWT tokens: *verify* (token -> `Principal`) apart from *require* (the 401/403 rules).

HS256 only, with the algorithm pinned on decode, so a token signed `none` or with another
key type is refused. Claims: `serverName` (the route a token opens), `apiKey` (checked against
the server's `api_keys`), `userId`, `admin` (management API), and the registered
`exp`/`nbf`/`iat`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import time
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import jwt
from jwt.warnings import InsecureKeyLengthWarning

from mcp_tornado.errors import Forbidden, Unauthorized

ALGORITHM = "HS256"
# Clock skew tolerated between the token issuer and us.
LEEWAY_SECONDS = 5
BEARER_PREFIX = "bearer "
# The last second of year 9999: a time claim past it is nonsense, and larger numbers overflow floats.
MAX_TIMESTAMP = 253_402_300_799
# RFC 7518 3.2: HS256 keys should have at least 256 bits; shorter ones are warned about once, at start-up.
MIN_SECRET_BYTES = 32
# PyJWT would warn on every decode; `settings` reports a short secret once instead.
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


def verify(token: str, secret: str) -> Principal:
    """Check a token's signature and registered claims. Raises `Unauthorized` with the reason."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            leeway=LEEWAY_SECONDS,
            options={"verify_aud": False},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("token expired") from None
    except jwt.ImmatureSignatureError:
        raise Unauthorized("token not yet valid") from None
    except jwt.PyJWTError as exc:  # InvalidTokenError, and key errors of a malformed token
        raise Unauthorized(f"invalid token: {exc}") from None
    except (OverflowError, ValueError, TypeError, RecursionError):  # e.g. an exp of 1e400 or 400 digits
        raise Unauthorized("invalid token: a claim is out of range") from None
    server_name = claims.get("serverName")
    api_key = claims.get("apiKey")
    user_id = claims.get("userId")
    exp = claims.get("exp")
    for name, value in (("serverName", server_name), ("apiKey", api_key), ("userId", user_id)):
        if value is not None and not isinstance(value, str):
            raise Unauthorized(f"invalid token: claim {name} must be a string")
    for name in ("exp", "nbf", "iat"):
        value = claims.get(name)
        if value is not None and not (
            isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= MAX_TIMESTAMP
        ):
            raise Unauthorized(f"invalid token: claim {name} must be a time between 1970 and 9999")
    return Principal(
        token=token,
        server_name=server_name,
        api_key=api_key,
        user_id=user_id,
        admin=claims.get("admin") is True,
        expires_at=float(exp) if isinstance(exp, int | float) else None,
    )


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
) -> str:
    """A signed token; `server_name` for an MCP route or `admin=True` for the management API."""
    issued = int(now if now is not None else time.time())
    claims: dict[str, Any] = {"iat": issued, "exp": issued + int(ttl)}
    extra: Mapping[str, Any] = {"serverName": server_name, "apiKey": api_key, "userId": user_id}
    claims.update({k: v for k, v in extra.items() if v is not None})
    if admin:
        claims["admin"] = True
    return jwt.encode(claims, secret, algorithm=ALGORITHM)
