"""`RevocationList`: the revoked token ids (`jti`) of `JWT_REVOKED_FILE`, followed while running.

The file holds one `jti` a line; blank lines and `#` comments (a whole line, or after
whitespace at a line's end) are ignored. It is re-read when it changes (a `WatchedFile`: one
`stat` a second at most, on the token checks themselves), so a revocation counts within
about a second. Write it atomically (a rename into place) so no check ever sees it half
written. A file that goes missing or becomes unreadable keeps the last list it had: a
revocation is never lifted by accident; to lift them all, empty the file.
"""

from __future__ import annotations

import re
from pathlib import Path

from mcp_tornado.watched_file import CHECK_INTERVAL, WatchedFile

_COMMENT = re.compile(r"(^|\s)#.*$")


def parse_revocations(data: bytes) -> frozenset[str]:
    """The token ids of a revocation file's content. Raises `ValueError` when it is not UTF-8."""
    ids = set()
    for line in data.decode("utf-8").splitlines():
        token_id = _COMMENT.sub("", line).strip()
        if token_id:
            ids.add(token_id)
    return frozenset(ids)


class RevocationList:
    def __init__(self, path: Path, *, interval: float = CHECK_INTERVAL) -> None:
        """Reads `path` now; raises `SettingsError` (JWT_REVOKED_FILE) when it cannot."""
        self._file = WatchedFile(path, parse_revocations, variable="JWT_REVOKED_FILE", interval=interval)

    def __contains__(self, token_id: object) -> bool:
        return token_id in self._file.current()

    def __len__(self) -> int:
        return len(self._file.current())
