"""`RateLimiter`: token buckets, one per key (an identity, a client address), bounded in number.

Each key's bucket holds up to `burst` tokens and refills at `rate` tokens a second; a request
takes one. `take(key, now)` answers 0.0 when the request may go on, else the seconds until a
token will be there. The buckets are kept least recently used first and capped at
`max_buckets`: a caller cycling through addresses (or tokens) evicts only the longest-unused
buckets, so memory stays bounded whatever it does. An evicted key starts again with a full
bucket, which only ever favours a key that was idle while `max_buckets` others were seen.

On the hot path (a key seen before) nothing is allocated but the floats of the refill
arithmetic: the bucket is updated in place and moved to the recent end of the table.
"""

from __future__ import annotations

import collections
from collections.abc import Hashable

# Buckets kept per limiter: about 150 bytes each, so some 15 MB at most per limiter, however
# many addresses an attacker cycles through; enough that every active caller keeps its own.
MAX_BUCKETS = 100_000


class _Bucket:
    __slots__ = ("tokens", "stamp")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp


class RateLimiter:
    """Token buckets of `rate` requests a second with room for `burst` at once, one per key."""

    def __init__(self, rate: float, burst: int, max_buckets: int = MAX_BUCKETS) -> None:
        if rate <= 0 or burst < 1 or max_buckets < 1:
            raise ValueError("rate must be positive, burst and max_buckets at least 1")
        self.rate = rate
        self.burst = burst
        self.max_buckets = max_buckets
        self._buckets: collections.OrderedDict[Hashable, _Bucket] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: Hashable, now: float) -> float:
        """Take one token from `key`'s bucket: 0.0 when there was one, else the seconds until
        there will be (nothing is taken then). `now` is a monotonic clock reading."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_buckets:
                self._buckets.popitem(last=False)  # the longest-unused key
            self._buckets[key] = _Bucket(self.burst - 1.0, now)
            return 0.0
        self._buckets.move_to_end(key)
        tokens = bucket.tokens + (now - bucket.stamp) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        bucket.stamp = now
        if tokens >= 1.0:
            bucket.tokens = tokens - 1.0
            return 0.0
        bucket.tokens = tokens
        return (1.0 - tokens) / self.rate

    def same_as(self, rate: float, burst: int) -> bool:
        """Whether this limiter already limits to `rate` and `burst` (a reload may keep its buckets)."""
        return self.rate == rate and self.burst == burst
