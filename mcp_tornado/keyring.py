"""`KeyRing`: the verification keys of every source, and which of them a token is checked with.

    StaticKeys        JWT_SECRET and JWT_PREVIOUS_SECRETS
    KeyFile           JWT_PUBLIC_KEY_FILE (PEM) or a JWT_JWKS file, followed while running
    RemoteKeySet      a JWT_JWKS URL, fetched with PyJWT's `PyJWKClient`, never on the IOLoop

A token's header picks its candidates: only keys of the algorithm it names (so `none`, or an
HS256 token "signed" with a public key's bytes, has none); of those, the key with the `kid` it
names; for a kid nobody has, the keys without a kid (PEM); without a kid, every key of that
algorithm (`MAX_KEYS_TRIED` at most). PyJWT checks the algorithm again on decode: a `PyJWK`
carries its own.

A JWKS URL is fetched once when the gateway is built, before it serves. Later fetches run on a
background thread, one at a time: when the set is older than `JWKS_LIFESPAN` (the old keys
serve meanwhile), and when a token names an unknown kid, at most once per
`JWKS_REFRESH_COOLDOWN` (anyone can make a kid up). Token checks are synchronous and run on the
IOLoop, so they never wait for a fetch; PyJWKClient's own `get_signing_key` would, on every kid
miss, for up to its timeout. The token that found its kid missing is refused, and the key is
there for the next one: identity providers publish a key before they sign with it.
"""

from __future__ import annotations

import collections
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import jwt

from mcp_tornado import __version__
from mcp_tornado.errors import Unauthorized
from mcp_tornado.keys import ASYMMETRIC_ALGORITHMS, VerificationKey, hmac_keys, jwks_file_keys, jwks_keys, pem_keys
from mcp_tornado.settings import LOOPBACK_HOSTS, Settings, SettingsError
from mcp_tornado.watched_file import CHECK_INTERVAL, WatchedFile

logger = logging.getLogger(__name__)

# A token without a kid is tried against every key of its algorithm: at most this many.
MAX_KEYS_TRIED = 8
# Seconds one JWKS fetch may take; it runs off the IOLoop, but a stuck one delays the next.
JWKS_FETCH_TIMEOUT = 5.0
# Seconds a fetched key set serves before it is fetched again (PyJWKClient's default lifespan).
JWKS_LIFESPAN = 300.0
# Seconds between fetches caused by unknown kids or failures: anyone can send a made-up kid.
JWKS_REFRESH_COOLDOWN = 10.0
ALG_NOT_ALLOWED = "invalid token: The specified alg value is not allowed"  # PyJWT's words, kept
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


# -- where keys come from -----------------------------------------------------------------------


class KeySource(Protocol):
    def snapshot(self) -> tuple[VerificationKey, ...]:
        """The keys as of now: the same tuple object for as long as they do not change."""

    def missed(self) -> None:
        """A token named a kid no key has (a remote set may fetch itself again)."""

    def stop(self) -> None: ...


class StaticKeys:
    def __init__(self, keys: Iterable[VerificationKey]) -> None:
        self._keys = tuple(keys)

    def snapshot(self) -> tuple[VerificationKey, ...]:
        return self._keys

    def missed(self) -> None:
        pass

    def stop(self) -> None:
        pass


class KeyFile:
    """A PEM or JWKS file, re-read when it changes (`WatchedFile`); the last good keys stay on failure."""

    def __init__(
        self,
        path: Path,
        parse: Callable[[bytes], tuple[VerificationKey, ...]],
        *,
        variable: str,
        interval: float = CHECK_INTERVAL,
    ) -> None:
        self._file = WatchedFile(path, parse, variable=variable, interval=interval)

    def snapshot(self) -> tuple[VerificationKey, ...]:
        return self._file.current()

    def missed(self) -> None:
        pass

    def stop(self) -> None:
        pass


class RemoteKeySet:
    """The keys of a JWKS URL (see the module docstring for when it is fetched, and why so).

    `PyJWKClient` does the fetching: a timeout, http(s) only, no redirects, the answer checked
    to be a JSON object. A failed fetch keeps the keys of the last good one.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = JWKS_FETCH_TIMEOUT,
        lifespan: float = JWKS_LIFESPAN,
        cooldown: float = JWKS_REFRESH_COOLDOWN,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Raises `SettingsError` (JWT_JWKS) for a URL PyJWKClient refuses. Fetches nothing yet."""
        try:
            self._client = jwt.PyJWKClient(
                url, lifespan=lifespan, timeout=timeout, headers={"User-Agent": f"mcp-tornado/{__version__}"}
            )
        except jwt.PyJWKClientError as exc:
            raise SettingsError(f"JWT_JWKS: {exc}") from None
        self.url = url
        self._lifespan = lifespan
        self._cooldown = cooldown
        self._clock = clock
        self._keys: tuple[VerificationKey, ...] = ()
        self._fetched_at: float | None = None
        self._last_attempt = -math.inf
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._stopped = False

    def load(self) -> bool:
        """Fetch now, on this thread (start-up, before the IOLoop serves): True when it worked.
        A failure is logged, and the set is fetched again in the background later."""
        with self._lock:
            self._last_attempt = self._clock()
        return self._fetch()

    def snapshot(self) -> tuple[VerificationKey, ...]:
        fetched_at = self._fetched_at
        if fetched_at is None or self._clock() - fetched_at >= self._lifespan:
            self.refresh()
        return self._keys

    def missed(self) -> None:
        self.refresh()

    def refresh(self) -> bool:
        """Start a fetch on a background thread, unless one is under way, the last began less
        than `cooldown` seconds ago, or the set is stopped. Never waits: True when one started."""
        with self._lock:
            now = self._clock()
            if self._stopped or self._worker is not None or now - self._last_attempt < self._cooldown:
                return False
            self._last_attempt = now
            worker = self._worker = threading.Thread(target=self._work, name="mcp-tornado-jwks", daemon=True)
        worker.start()
        return True

    def stop(self) -> None:
        """No fetch starts after this; one under way ends within its timeout, its keys unused."""
        with self._lock:
            self._stopped = True

    def _work(self) -> None:
        try:
            self._fetch()
        except Exception:  # a bug here must not end up as an unhandled thread exception
            logger.exception("JWT_JWKS: fetching %s failed", self.url)
        finally:
            with self._lock:
                self._worker = None

    def _fetch(self) -> bool:
        try:
            keys = jwks_keys(self._client.fetch_data())
        except (jwt.PyJWTError, ValueError) as exc:
            kept = f"keeping the {len(self._keys)} key(s) fetched before" if self._keys else "its tokens are refused"
            logger.error("JWT_JWKS: fetching %s failed: %s; %s", self.url, exc, kept)
            return False
        if self._stopped:
            return False
        # One assignment: `snapshot`, on the IOLoop, sees the old tuple or the new one.
        self._keys = keys
        self._fetched_at = self._clock()
        logger.info("JWT_JWKS: %d key(s) from %s", len(keys), self.url)
        return True


def jwks_source(value: str) -> KeySource:
    """JWT_JWKS: an http(s) URL (fetched now) or a file path. Raises `SettingsError`."""
    if not _URL.match(value):
        return KeyFile(Path(value), jwks_file_keys, variable="JWT_JWKS")
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https"):
        raise SettingsError(f"JWT_JWKS: {parts.scheme}:// is not supported; give an http(s) URL or a file path")
    if not parts.hostname:
        raise SettingsError(f"JWT_JWKS: {value!r} has no host")
    if parts.scheme.lower() == "http" and parts.hostname not in LOOPBACK_HOSTS:
        logger.warning("JWT_JWKS: %s is plain http: anyone on the path can swap the keys; use https", value)
    remote = RemoteKeySet(value)
    remote.load()
    return remote


# -- the keys together ----------------------------------------------------------------------------


class _Index:
    """Every key, by algorithm, by kid, and those without a kid by algorithm."""

    def __init__(self, keys: Iterable[VerificationKey]) -> None:
        by_alg: dict[str, list[VerificationKey]] = collections.defaultdict(list)
        by_kid: dict[str, list[VerificationKey]] = collections.defaultdict(list)
        unnamed: dict[str, list[VerificationKey]] = collections.defaultdict(list)
        for key in keys:
            by_alg[key.algorithm].append(key)
            (unnamed[key.algorithm] if key.kid is None else by_kid[key.kid]).append(key)
        self.by_alg = {alg: tuple(found) for alg, found in by_alg.items()}
        self.by_kid = {kid: tuple(found) for kid, found in by_kid.items()}
        self.unnamed = {alg: tuple(found) for alg, found in unnamed.items()}


class KeyRing:
    def __init__(self, sources: Sequence[KeySource]) -> None:
        self._sources = tuple(sources)
        self._snapshots: tuple[tuple[VerificationKey, ...], ...] = ()
        self._index = _Index(())

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        """The keys the settings name. Raises `SettingsError` naming the variable at fault."""
        sources: list[KeySource] = [StaticKeys(hmac_keys(settings.jwt_secret, settings.jwt_previous_secrets))]
        if settings.jwt_public_key_file is not None:
            sources.append(KeyFile(settings.jwt_public_key_file, pem_keys, variable="JWT_PUBLIC_KEY_FILE"))
        if settings.jwt_jwks:
            sources.append(jwks_source(settings.jwt_jwks))
        return cls(sources)

    def generation(self) -> object:
        """What stands for the keys as they are now: the same object until any of them changes."""
        return self._index_now()

    def keys(self) -> tuple[VerificationKey, ...]:
        return tuple(key for keys in self._index_now().by_alg.values() for key in keys)

    def candidates(self, alg: object, kid: object) -> tuple[VerificationKey, ...]:
        """The keys a token whose header says `alg` and `kid` is verified with, all of algorithm
        `alg`. Raises `Unauthorized` when there are none."""
        index = self._index_now()
        if not isinstance(alg, str) or (alg not in index.by_alg and alg not in ASYMMETRIC_ALGORITHMS):
            raise Unauthorized(ALG_NOT_ALLOWED)
        if kid is not None and not isinstance(kid, str):
            raise Unauthorized("invalid token: kid must be a string")
        if alg not in index.by_alg:  # an algorithm a key set might hold, but ours does not (yet)
            self._missed()
            raise Unauthorized(ALG_NOT_ALLOWED)
        if kid is None:
            return index.by_alg[alg][:MAX_KEYS_TRIED]
        named = index.by_kid.get(kid)
        if named is not None:
            keys = tuple(key for key in named if key.algorithm == alg)
            if not keys:
                raise Unauthorized(f"invalid token: key {kid[:64]!r} does not verify {alg}")
            return keys
        self._missed()
        unnamed = index.unnamed.get(alg)
        if not unnamed:
            raise Unauthorized(f"invalid token: no key with kid {kid[:64]!r}")
        return unnamed[:MAX_KEYS_TRIED]

    def stop(self) -> None:
        for source in self._sources:
            source.stop()

    def _missed(self) -> None:
        for source in self._sources:
            source.missed()

    def _index_now(self) -> _Index:
        snapshots = tuple(source.snapshot() for source in self._sources)
        if snapshots != self._snapshots:  # an unchanged source returns the very same tuple: a quick compare
            self._index = _Index(key for keys in snapshots for key in keys)
            self._snapshots = snapshots
        return self._index
