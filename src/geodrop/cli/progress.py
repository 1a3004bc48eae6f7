"""Progress display: a live bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import Final, TextIO

from geodrop.client import Progress

BAR_WIDTH: Final = 24
PLAIN_STEP_PERCENT: Final = 10


def human_bytes(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(count) < 1000 or unit == "TB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1000
    raise AssertionError("unreachable")


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class ProgressDisplay:
    """Renders :class:`Progress` reports to ``stream`` (stderr by default)."""

    def __init__(self, stream: TextIO | None = None, *, enabled: bool = True) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.live = self.stream.isatty()
        self._phase = ""
        self._started = 0.0
        self._first_done = 0
        self._last_step = -1
        self._last_draw = 0.0

    def __call__(self, progress: Progress) -> None:
        if not self.enabled or progress.total <= 0:
            return
        now = time.monotonic()
        if progress.phase != self._phase:
            self.finish()
            self._phase, self._started, self._first_done = progress.phase, now, progress.done
            self._last_step = -1
        elapsed = max(now - self._started, 1e-6)
        rate = (progress.done - self._first_done) / elapsed
        fraction = min(1.0, progress.done / progress.total)
        if self.live:
            if now - self._last_draw < 0.1 and progress.done < progress.total:
                return
            self._last_draw = now
            filled = int(BAR_WIDTH * fraction)
            eta = (progress.total - progress.done) / rate if rate > 0 else 0
            line = (
                f"\r{progress.phase:8} {fraction:6.1%} |{'█' * filled}{' ' * (BAR_WIDTH - filled)}|"
                f" {human_bytes(progress.done)}/{human_bytes(progress.total)}"
                f"  {human_bytes(rate)}/s  ETA {_duration(eta)} "
            )
            self.stream.write(line)
            self.stream.flush()
            return
        step = int(fraction * 100) // PLAIN_STEP_PERCENT
        if step > self._last_step:
            self._last_step = step
            self.stream.write(
                f"{progress.phase} {fraction:.0%} {human_bytes(progress.done)}"
                f"/{human_bytes(progress.total)} {human_bytes(rate)}/s\n"
            )
            self.stream.flush()

    def finish(self) -> None:
        """End a live bar's line."""
        if self.enabled and self.live and self._phase:
            self.stream.write("\n")
            self.stream.flush()
        self._phase = ""
