"""Key material: each verification key bound to the one algorithm it verifies.

    VerificationKey   a kid, an algorithm, the `PyJWK` that verifies, and its origin (a variable)
    hmac_keys         JWT_SECRET and JWT_PREVIOUS_SECRETS (HS256)
    pem_keys          the public keys (or certificates) of a PEM file: JWT_PUBLIC_KEY_FILE
    jwks_keys         the signing keys of a JWKS document: JWT_JWKS

The algorithm is the key's: an HS secret verifies HS256 only; an asymmetric key the `alg` its
JWK names, or else the one of its type: RSA -> RS256, EC P-256/P-384/P-521 -> ES256/ES384/ES512,
Ed25519 (or Ed448) -> EdDSA. A JWKS key whose `alg` does not fit its type, a symmetric (`oct`)
key in a key set, private key material, and RSA keys under 2048 bits are refused.

Kids: a JWK's own `kid`; an HS secret's kid is the first 8 hex digits of the SHA-256 of the
secret (`printf %s "$JWT_SECRET" | sha256sum | cut -c1-8`), which tells no more about the
secret than the token's HMAC already does; a PEM key has none.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
import re
from collections.abc import Sequence
from typing import Any

import jwt
from jwt.algorithms import HMACAlgorithm, get_default_algorithms

from mcp_tornado.settings import SettingsError

logger = logging.getLogger(__name__)

HS_ALGORITHM = "HS256"
RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
ASYMMETRIC_ALGORITHMS = RSA_ALGORITHMS | set(EC_ALGORITHMS.values()) | {"EdDSA"}
# RFC 7518 3.2: HS256 keys should have at least 256 bits; shorter ones are warned about at start-up.
MIN_SECRET_BYTES = 32
# NIST SP 800-131A: RSA keys below 2048 bits are no longer acceptable for signatures.
MIN_RSA_BITS = 2048
# A token without a kid is tried against every HS key: keep that a handful.
MAX_PREVIOUS_SECRETS = 4
NEEDS_CRYPTOGRAPHY = "asymmetric keys need the cryptography package (pip install 'pyjwt[crypto]')"
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----.+?-----END \1-----", re.DOTALL)


@dataclasses.dataclass(frozen=True, eq=False, slots=True)
class VerificationKey:
    kid: str | None
    algorithm: str  # the only one it verifies
    jwk: jwt.PyJWK
    origin: str  # the variable it came from, for messages


def secret_kid(secret: str) -> str:
    """The kid of an HS256 secret: the first 8 hex digits of its SHA-256."""
    return hashlib.sha256(secret.encode()).hexdigest()[:8]


def hmac_key(secret: str, origin: str) -> VerificationKey:
    """An HS256 key. Raises `SettingsError` naming `origin` for an empty secret or one that is
    an asymmetric key (PEM, SSH, DER): such a "secret" is public."""
    data = secret.encode()
    try:
        HMACAlgorithm(HMACAlgorithm.SHA256).prepare_key(data)
    except jwt.InvalidKeyError as exc:
        raise SettingsError(f"{origin}: {exc}") from None
    k = base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    return VerificationKey(secret_kid(secret), HS_ALGORITHM, jwt.PyJWK({"kty": "oct", "k": k}, HS_ALGORITHM), origin)


def hmac_keys(secret: str | None, previous: Sequence[str]) -> tuple[VerificationKey, ...]:
    """The current secret's key first, then the previous ones'. Raises `SettingsError`."""
    if len(previous) > MAX_PREVIOUS_SECRETS:
        raise SettingsError(
            f"JWT_PREVIOUS_SECRETS: at most {MAX_PREVIOUS_SECRETS} (a token without kid is tried against each)"
        )
    keys = [hmac_key(secret, "JWT_SECRET")] if secret else []
    seen = {secret}
    for number, old in enumerate(previous, 1):
        if old in seen:
            continue
        seen.add(old)
        if len(old.encode()) < MIN_SECRET_BYTES:
            logger.warning(
                "JWT_PREVIOUS_SECRETS: entry %d is shorter than %d bytes; HS256 wants at least that much",
                number,
                MIN_SECRET_BYTES,
            )
        keys.append(hmac_key(old, f"JWT_PREVIOUS_SECRETS (entry {number})"))
    return tuple(keys)


def algorithms_for(public_key: Any) -> tuple[str, frozenset[str]]:
    """The default algorithm of a public key (a `cryptography` object) and those it may be given.

    Raises `ValueError` for a private key, a weak RSA key, an unsupported curve or type.
    """
    try:
        from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
    except ImportError:
        raise ValueError(NEEDS_CRYPTOGRAPHY) from None
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < MIN_RSA_BITS:
            raise ValueError(f"an RSA key of {public_key.key_size} bits; {MIN_RSA_BITS} or more are needed")
        return "RS256", RSA_ALGORITHMS
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        algorithm = EC_ALGORITHMS.get(public_key.curve.name)
        if algorithm is None:
            raise ValueError(f"EC curve {public_key.curve.name} is not supported (P-256, P-384, P-521)")
        return algorithm, frozenset({algorithm})
    if isinstance(public_key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return "EdDSA", frozenset({"EdDSA"})
    raise ValueError(f"a {type(public_key).__name__} is not a public key that verifies JWTs")


def public_key(public: Any, origin: str, *, kid: str | None = None) -> VerificationKey:
    """A `cryptography` public key, bound to its type's algorithm. Raises `ValueError`."""
    algorithm, _ = algorithms_for(public)
    jwk = get_default_algorithms()[algorithm].to_jwk(public, as_dict=True)
    return VerificationKey(kid, algorithm, jwt.PyJWK(jwk, algorithm), origin)


def pem_keys(data: bytes) -> tuple[VerificationKey, ...]:
    """The public keys (and certificates' keys) of a PEM file. Raises `ValueError`."""
    try:
        from cryptography import x509
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives import serialization
    except ImportError:
        raise ValueError(NEEDS_CRYPTOGRAPHY) from None
    keys = []
    for match in _PEM_BLOCK.finditer(data):
        label = match.group(1).decode()
        if "PRIVATE" in label:
            raise ValueError("it holds a private key; give the public key only (openssl pkey -pubout)")
        try:
            if label == "CERTIFICATE":
                public: Any = x509.load_pem_x509_certificate(match.group(0)).public_key()
            elif label in ("PUBLIC KEY", "RSA PUBLIC KEY"):
                public = serialization.load_pem_public_key(match.group(0))
            else:
                raise ValueError(f"a PEM {label} block is not a public key")
        except UnsupportedAlgorithm as exc:
            raise ValueError(str(exc)) from None
        keys.append(public_key(public, "JWT_PUBLIC_KEY_FILE"))
    if not keys:
        raise ValueError("no PEM public key in it")
    return tuple(keys)


def jwk_key(entry: Any, origin: str) -> VerificationKey:
    """One JWK of a key set, bound to its `alg` (or its type's). Raises `ValueError`."""
    if not isinstance(entry, dict):
        raise ValueError("not a JSON object")
    kid = entry.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise ValueError("kid must be a string")
    if entry.get("use", "sig") != "sig":
        raise ValueError(f"use is {entry.get('use')!r}, not 'sig'")
    if entry.get("kty") == "oct":
        raise ValueError("a symmetric (oct) key has no place in a key set: it is a shared secret")
    if "d" in entry:
        raise ValueError("it holds private key material")
    declared = entry.get("alg")
    if declared is not None and declared not in ASYMMETRIC_ALGORITHMS:
        raise ValueError(f"alg {declared!r} is not accepted (one of {', '.join(sorted(ASYMMETRIC_ALGORITHMS))})")
    try:
        jwk = jwt.PyJWK(entry)  # the declared alg, or the one its kty and crv imply
    except jwt.PyJWTError as exc:
        raise ValueError(str(exc)) from None
    _, allowed = algorithms_for(jwk.key)
    if jwk.algorithm_name not in allowed:
        raise ValueError(f"alg {jwk.algorithm_name} does not fit a {jwk.key_type} key")
    return VerificationKey(kid, jwk.algorithm_name, jwk, origin)


def jwks_keys(document: Any, origin: str = "JWT_JWKS") -> tuple[VerificationKey, ...]:
    """The usable keys of a JWKS document (others are skipped and logged). Raises `ValueError`
    when it is not a key set or has no usable key."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError('not a JWKS: expected {"keys": [...]}')
    keys = []
    for number, entry in enumerate(document["keys"]):
        try:
            keys.append(jwk_key(entry, origin))
        except ValueError as exc:
            logger.warning("%s: key %d skipped: %s", origin, number, exc)
    if not keys:
        raise ValueError("no usable signing key in it")
    return tuple(keys)


def jwks_file_keys(data: bytes) -> tuple[VerificationKey, ...]:
    return jwks_keys(json.loads(data))
