"""``sudo .venv/bin/python -m bench.simulation [--quick] [--docs DIR]``: items 6 and 7 alone.

Prints the two sections as markdown (with their targets) and writes the plot to
``DIR/bench-simulation-links.png`` (default: ``gdsim-docs`` in the temporary folder).
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType

from bench.report import target_table
from bench.simulation import run_simulation
from bench.simulation.model import PathRates


def _interrupted(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwind, so every namespace and process is removed


def _rates(text: str) -> PathRates:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError("four numbers, e.g. 100,40,50,20") from None
    if len(values) != 4 or min(values) <= 0:
        raise argparse.ArgumentTypeError("four positive numbers, e.g. 100,40,50,20")
    return PathRates(*values)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.simulation", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the reduced run (~2 minutes)")
    parser.add_argument(
        "--docs",
        type=Path,
        default=Path(tempfile.gettempdir()) / "gdsim-docs",
        help="where the plot goes",
    )
    parser.add_argument(
        "--rates",
        type=_rates,
        default=PathRates(),
        metavar="A,B,C,D",
        help="path rates in Mbit/s: same region & carrier, same region other carrier, "
        "other region same carrier, other region & carrier (default 100,40,50,20)",
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _interrupted)
    try:
        sections = run_simulation(args.quick, args.docs, args.rates)
    except KeyboardInterrupt:
        print("simulation: interrupted; namespaces and processes removed", file=sys.stderr)
        return 130
    for section in sections:
        print(f"## {section.title}\n\n{section.markdown.rstrip()}\n")
        if section.targets:
            print(target_table(section.targets))
    print(f"(plot in {args.docs})", file=sys.stderr)
    failed = any(not t.passed for s in sections for t in s.targets)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
