"""Which regions are alive, from their heartbeats."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class _Region:
    last_beat: float
    links: list[dict[str, Any]] = field(default_factory=list)
    beats: int = 0


class RegionHealth:
    """Heartbeat bookkeeping: a region silent for longer than the timeout is down.

    A directory that has just started presumes every region alive for one
    timeout, so its own restart does not send everyone to fallbacks.
    """

    def __init__(
        self,
        regions: Iterable[str],
        timeout_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._timeout = timeout_seconds
        started = clock()
        self._regions = {name: _Region(last_beat=started) for name in regions}

    def beat(self, region: str, links: list[dict[str, Any]]) -> None:
        state = self._regions[region]
        state.last_beat = self._clock()
        state.links = links
        state.beats += 1

    def is_alive(self, region: str) -> bool:
        state = self._regions.get(region)
        return state is not None and self._clock() - state.last_beat <= self._timeout

    def snapshot(self) -> list[dict[str, Any]]:
        now = self._clock()
        return [
            {
                "region": name,
                "alive": now - state.last_beat <= self._timeout,
                "seconds_since_heartbeat": round(now - state.last_beat, 3),
                "heartbeats": state.beats,
                "links": state.links,
            }
            for name, state in self._regions.items()
        ]
