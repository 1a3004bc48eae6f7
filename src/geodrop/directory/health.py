"""Which regions are alive, from their heartbeats, as every directory process sees them."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from geodrop.metadata.base import InboxStore, RegionBeat

logger = logging.getLogger(__name__)


class RegionHealth:
    """Heartbeat bookkeeping: a region silent for longer than the timeout is down.

    Heartbeats are recorded in the directory's store, so that a beat received by one
    directory process counts for all of them; times are wall-clock seconds, which every
    process shares. Answers come from a copy of the store's heartbeats that
    :meth:`keep_fresh` refreshes in the background: locating a client, the hot path,
    never waits for the database.

    A directory that has just started presumes every region alive for one
    timeout, so its own restart does not send everyone to fallbacks.
    """

    def __init__(
        self,
        regions: Iterable[str],
        timeout_seconds: float,
        store: InboxStore,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._clock = clock
        self._timeout = timeout_seconds
        self._regions = tuple(regions)
        self._started = clock()
        self._beats: dict[str, RegionBeat] = {}

    async def beat(self, region: str, links: list[dict[str, Any]]) -> None:
        """``region``'s file server is alive now, with these link figures.

        Counted here at once, so this process never waits for its next refresh (nor
        loses the beat if the store fails: the error still reaches the caller).
        """
        now = self._clock()
        known = self._beats.get(region)
        self._beats[region] = RegionBeat(region, now, (known.beats if known else 0) + 1, links)
        await self._store.record_heartbeat(region, links, now)

    async def refresh(self) -> None:
        """Take up every heartbeat the store holds, whichever process recorded it."""
        self._merge(await self._store.heartbeats())

    def _merge(self, beats: Sequence[RegionBeat]) -> None:
        for beat in beats:
            known = self._beats.get(beat.region)
            # A beat this process counted after the store was read is not taken back.
            if known is None or beat.last_beat >= known.last_beat:
                self._beats[beat.region] = beat

    async def keep_fresh(self, every_seconds: float) -> None:
        """Refresh every ``every_seconds`` until cancelled (a failing store keeps the last copy)."""
        failing = False
        while True:
            try:
                await self.refresh()
            except Exception:
                # Logged once per outage, not once per round.
                if not failing:
                    logger.exception("region health: cannot read heartbeats; keeping the last")
                failing = True
            else:
                if failing:
                    logger.info("region health: heartbeats readable again")
                failing = False
            await asyncio.sleep(every_seconds)

    def _last_beat(self, region: str) -> float:
        beat = self._beats.get(region)
        return self._started if beat is None else max(self._started, beat.last_beat)

    def is_alive(self, region: str) -> bool:
        return region in self._regions and self._clock() - self._last_beat(region) <= self._timeout

    def snapshot(self) -> list[dict[str, Any]]:
        now = self._clock()
        out = []
        for name in self._regions:
            beat = self._beats.get(name)
            silent = max(0.0, now - self._last_beat(name))
            out.append(
                {
                    "region": name,
                    "alive": silent <= self._timeout,
                    "seconds_since_heartbeat": round(silent, 3),
                    "heartbeats": beat.beats if beat else 0,
                    "links": beat.links if beat else [],
                }
            )
        return out
