"""Request rate limits: one token bucket per key (a client IP, a user), no I/O.

A bucket holds at most ``burst`` tokens and refills at ``rate_per_minute / 60``
tokens a second; a request takes one token or waits. Over any stretch of ``T``
seconds a key is therefore allowed at most ``burst + rate × T`` requests: short
bursts pass (a client opening a page of thumbnails), a sustained flood is held to
the rate.

Memory is bounded. A bucket that has refilled to ``burst`` is exactly a bucket
never seen, so idle keys are dropped as they fill up. If more than ``max_keys``
keys are active at once (a flood from many addresses), the least recently seen
key is forgotten, which hands it a fresh burst: the price of a bounded table, paid
by the key that has gone quiet the longest.

The clock is injected (``now`` on every call, a monotonic clock in production) so
the arithmetic is testable without sleeping.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

DEFAULT_MAX_KEYS: Final = 100_000
# Refilled tokens are sums of float products: a bucket told "wait w" and asked again
# exactly w later may hold 0.9999999999 tokens. That is a whole token.
_EPSILON: Final = 1e-9


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets by key: ``check`` answers 0 (allowed) or how long to wait.

    Args:
        rate_per_minute: sustained requests a minute per key.
        burst: how many requests a key may make at once after being quiet.
        max_keys: the most keys remembered at once.

    Raises:
        ValueError: a figure is not positive.
    """

    def __init__(
        self, rate_per_minute: float, burst: int, *, max_keys: int = DEFAULT_MAX_KEYS
    ) -> None:
        if rate_per_minute <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("rate_per_minute, burst and max_keys must be positive")
        self.rate_per_second = rate_per_minute / 60
        self.burst = burst
        self.max_keys = max_keys
        # Least recently seen first: both kinds of eviction take from the front.
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        # How long an untouched bucket takes to refill from empty: after that it is idle.
        self._idle_after = burst / self.rate_per_second
        # Idle buckets are looked for at most this often (a full bucket left a little
        # longer is the same as none; looking on every request cost a tenth of a check).
        self._sweep_every = min(1.0, self._idle_after)
        self._next_sweep = -math.inf

    def __len__(self) -> int:
        return len(self._buckets)

    def check(self, key: str, now: float) -> float:
        """Take one token for ``key`` at time ``now`` (seconds, never going backwards).

        Returns:
            0.0 when the request is allowed (a token was taken), else the seconds
            until one will be available (nothing was taken).
        """
        if now >= self._next_sweep:
            self._evict_idle(now)
            self._next_sweep = now + self._sweep_every
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(float(self.burst), now)
            self._buckets[key] = bucket
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            # A clock that steps back must not mint tokens out of negative time.
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate_per_second)
            bucket.updated = max(bucket.updated, now)
        if bucket.tokens >= 1.0 - _EPSILON:
            bucket.tokens = max(0.0, bucket.tokens - 1.0)
            return 0.0
        return (1.0 - bucket.tokens) / self.rate_per_second

    def _evict_idle(self, now: float) -> None:
        while self._buckets:
            key, oldest = next(iter(self._buckets.items()))
            if now - oldest.updated < self._idle_after:
                return
            del self._buckets[key]
