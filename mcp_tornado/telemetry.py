"""Counters the request path bumps and `/metrics` reads: cheap to bump, read only when scraped."""

from __future__ import annotations

import collections


class RequestCounter:
    def __init__(self) -> None:
        self.counts: collections.Counter[tuple[str, str, int]] = collections.Counter()

    def count(self, server: str, method: str, status: int) -> None:
        self.counts[(server, method, status)] += 1
