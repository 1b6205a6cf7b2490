"""`BackendState`: where a backend (or one upstream connection) is in its life."""

from __future__ import annotations

import enum


class BackendState(enum.StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"  # down, waiting out a backoff before the next try
    CRASHED = "crashed"  # down, circuit open: too many fast crashes in a row
    STOPPED = "stopped"

    @property
    def down(self) -> bool:
        """Down against its will: clients get 503, `/health` says degraded."""
        return self in (BackendState.RESTARTING, BackendState.CRASHED)
