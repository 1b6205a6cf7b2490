"""`Handshakes`: sessions whose clients said the same in `initialize` share one copy of it.

The SDK keeps each session's `initialize` params (`Connection.client_params`) as a pydantic
model: about 1.5 KB and 11 objects the garbage collector walks, for as long as the session
lives. The clients of one deployment are mostly a few kinds, each sending the very same params,
so a bounded table keyed by the params' JSON hands back the copy it already keeps. The models
are only ever read (capability checks, the client's name), never changed, so sharing them is
safe. Params too long to be worth a key stay the session's own; the table forgets the least
recently seen when it is full, so a client inventing new params each time only evicts itself.
"""

from __future__ import annotations

import json
from typing import Any

from mcp_types import InitializeRequestParams

# The longest key kept: real clients' params are a few hundred characters.
MAX_KEY_CHARS = 4096
# Distinct handshakes remembered at once (each about 1.5 KB plus its key).
MAX_HANDSHAKES = 256


class Handshakes:
    def __init__(self, max_handshakes: int = MAX_HANDSHAKES) -> None:
        self._max = max_handshakes
        self._kept: dict[str, InitializeRequestParams] = {}  # oldest first

    def __len__(self) -> int:
        return len(self._kept)

    def shared(self, raw: Any, parsed: InitializeRequestParams) -> InitializeRequestParams:
        """The kept copy of `parsed` (the SDK's model of the `raw` params), or `parsed` itself."""
        try:
            key = json.dumps(raw, sort_keys=True, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError):
            return parsed
        if len(key) > MAX_KEY_CHARS:
            return parsed
        kept = self._kept.pop(key, None)
        if kept is None:
            kept = parsed
            if len(self._kept) >= self._max:
                del self._kept[next(iter(self._kept))]
        self._kept[key] = kept  # the most recently seen goes last
        return kept
