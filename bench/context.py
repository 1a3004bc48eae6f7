"""What every benchmark section is given: the run's mode, a work folder, where plots go."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

MiB: Final = 1024 * 1024
GiB: Final = 1024 * MiB


@dataclass(frozen=True, slots=True)
class BenchContext:
    """The run a section belongs to.

    Attributes:
        quick: ``make bench QUICK=1``: smaller files, fewer rounds, shorter loads; the
            whole run must stay under 5 minutes.
        rounds: how many times each side of a comparison runs (≥ 5; 3 when quick).
        work_dir: a folder of the section's own on a disk-backed file system (big files
            go here, never in the repo); its big files are removed when the section
            returns, the rest when the run ends (``bench.__main__.remove_big_files``).
        docs_dir: where the report and the plots go (``docs/``).
        big_file: the size of the "1 GiB" transfers (256 MiB when quick).
        load_seconds: how long one load (wrk, small-file loop) runs (8 s; 2 s when quick).
        started: ``time.monotonic()`` at the start of the run.
    """

    quick: bool
    rounds: int
    work_dir: Path
    docs_dir: Path
    big_file: int
    load_seconds: float
    started: float

    def plot_path(self, name: str) -> Path:
        """``docs/bench-NAME.png``; link it from the section as ``![…](bench-NAME.png)``."""
        return self.docs_dir / f"bench-{name}.png"

    def log(self, message: str) -> None:
        """A progress line on stderr, stamped with the seconds since the run started."""
        print(f"[bench {time.monotonic() - self.started:6.1f}s] {message}", file=sys.stderr)

    def with_work_dir(self, work_dir: Path) -> BenchContext:
        return BenchContext(
            quick=self.quick,
            rounds=self.rounds,
            work_dir=work_dir,
            docs_dir=self.docs_dir,
            big_file=self.big_file,
            load_seconds=self.load_seconds,
            started=self.started,
        )

    @property
    def big_file_label(self) -> str:
        return (
            f"{self.big_file // GiB} GiB" if self.big_file >= GiB else f"{self.big_file // MiB} MiB"
        )
