"""Writing definitions into `servers.d/`: atomically, so the folder stays the source of truth.

A registration is written to a hidden temporary file in the same folder, flushed to disk,
and renamed over `{name}.yaml`; a reader (or the watcher) sees the old file or the new one,
never half of one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

HEADER = "# Written by the mcp-tornado management API; edit freely, it is reloaded on save.\n"


def write_definition(path: Path, document: Mapping[str, Any]) -> None:
    text = HEADER + yaml.safe_dump(dict(document), sort_keys=False, allow_unicode=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A dot-name: the watcher and the loader ignore it while it is being written.
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def delete_definition(path: Path) -> None:
    path.unlink(missing_ok=True)
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
