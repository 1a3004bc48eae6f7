"""Locks by key (an upload id, a sender) within one process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class KeyedLocks:
    """One asyncio lock per key, existing only while someone holds or awaits it."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}  # holders and waiters of each lock

    def __len__(self) -> int:
        return len(self._locks)

    @asynccontextmanager
    async def hold(self, key: str, within: float | None = None) -> AsyncIterator[None]:
        """Hold the lock of ``key`` while the block runs.

        Raises:
            TimeoutError: it was not free within ``within`` seconds.
        """
        lock = self._locks.setdefault(key, asyncio.Lock())
        # The lock may only be forgotten once nobody holds or awaits it: right after a
        # release, a woken waiter has not yet taken it, and a newcomer must queue on the
        # same lock rather than make a second one.
        self._users[key] = self._users.get(key, 0) + 1
        try:
            await asyncio.wait_for(lock.acquire(), within)
            try:
                yield
            finally:
                lock.release()
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key]
                del self._locks[key]
