"""`WatchedFile`: a small file the gateway follows while it runs, parsed once per change.

It is read and parsed when built (a failure then is a `SettingsError` naming the variable),
and afterwards `current()` looks at it with one `stat` at most every `CHECK_INTERVAL`
seconds, from whatever thread asks (the IOLoop, for token checks). Only a changed file is
read again; one that fails to read or parse keeps the last good value, logged once.

Why a stat check and not a watchdog observer (as `servers.d/` has): the files it serves
(revoked token ids, public keys) are consulted on every token check anyway, so the check
rides on that with no thread, no observer and nothing to stop; `stat` follows symlinks, so
a Kubernetes ConfigMap or Secret, which is updated by swapping a symlinked directory that
inotify on the file's own path never sees, is followed too. The price is a delay of up to
`CHECK_INTERVAL` before a change counts, and a file that nobody asks about is not re-read.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from mcp_tornado.definitions import read_definition
from mcp_tornado.errors import DefinitionError
from mcp_tornado.settings import SettingsError

logger = logging.getLogger(__name__)

T = TypeVar("T")

# A change counts within this many seconds; one stat per interval is all a token check pays.
CHECK_INTERVAL = 1.0
# A file modified this recently may change again within the same mtime tick, with the same
# size: it is re-read (and compared by content) until it has been quiet this long.
SETTLING_SECONDS = 2.0

_Signature = tuple[int, int, int, int, int]


class WatchedFile(Generic[T]):
    def __init__(
        self,
        path: Path,
        parse: Callable[[bytes], T],
        *,
        variable: str,
        interval: float = CHECK_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Read and parse `path` now. `parse(data)` raises `ValueError` for content it refuses.

        Raises `SettingsError` naming `variable` when the file cannot be read (it must be a
        regular file of at most 1 MiB) or parsed.
        """
        self.path = path
        self._parse = parse
        self._variable = variable
        self._interval = interval
        self._clock = clock
        try:
            signature = self._stat()
            data = self._read()
            self._value = parse(data)
        except (OSError, ValueError) as exc:
            raise SettingsError(f"{variable}: {path}: {_reason(exc)}") from None
        self._digest = hashlib.sha256(data).digest()
        self._signature: _Signature | None = None if self._settling(signature) else signature
        self._next_check = clock() + interval
        self._reported: object = None  # the last failure logged, so it is logged once

    def current(self) -> T:
        """The file's value as of at most `interval` seconds ago (the last good one on failure)."""
        now = self._clock()
        if now < self._next_check:
            return self._value
        self._next_check = now + self._interval
        try:
            signature = self._stat()
            if signature == self._signature:
                return self._value
            data = self._read()
            digest = hashlib.sha256(data).digest()
            if digest != self._digest:
                self._value = self._parse(data)
                self._digest = digest
                logger.info("%s: reloaded %s", self._variable, self.path)
        except (OSError, ValueError) as exc:
            if _reason(exc) != self._reported:
                self._reported = _reason(exc)
                logger.error("%s: %s: %s; keeping the last good version", self._variable, self.path, _reason(exc))
            return self._value
        self._reported = None
        self._signature = None if self._settling(signature) else signature
        return self._value

    def _stat(self) -> _Signature:
        status = os.stat(self.path)  # follows symlinks: a swapped link target is a change
        return (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)

    def _read(self) -> bytes:
        try:
            return read_definition(self.path)  # a regular file of bounded size, never a blocking read
        except DefinitionError as exc:
            raise ValueError(exc.problem) from None

    @staticmethod
    def _settling(signature: _Signature) -> bool:
        return time.time() - signature[3] / 1e9 < SETTLING_SECONDS


def _reason(exc: Exception) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
