"""A BENCH-ONLY file server whose link choice is swapped, for issue 7 item 7.

``python variant_fileserver.py --strategy STRATEGY --staleness SECONDS --config FILE
--region NAME`` runs the ordinary geodrop file server (``geodrop fileserver``) with
``choose_link`` monkeypatched in ``geodrop.protocol.linkchoice`` and in
``geodrop.fileserver.transferurls`` (which imported it by name). Nothing in ``src/``
changes; this file is never used outside the benchmark.

Every strategy sees the same stale figures: the link loads as they stood at the start of
the current ``--staleness``-second period, as when loads arrive by heartbeat or several
access-unit processes each see only their own transfers. Carrier eligibility is geodrop's
own (``eligible_links``); then, among the eligible:

- ``p2c``: geodrop's power of two choices (its own ``choose_link``, unchanged);
- ``least``: always the least loaded on the last report (ties: the bigger link, then the
  first);
- ``random``: one link at random, weighted by configured capacity.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import replace

import geodrop.fileserver.transferurls as transferurls
import geodrop.protocol.linkchoice as linkchoice
from geodrop.cli import main as geodrop_main
from geodrop.protocol.linkchoice import LinkLoad, eligible_links

STRATEGIES = ("p2c", "least", "random")


class StaleChooser:
    """``choose_link`` with loads refreshed once per period, and a chosen strategy."""

    def __init__(self, strategy: str, staleness: float) -> None:
        self.strategy = strategy
        self.staleness = staleness
        self.original = linkchoice.choose_link
        self.period = -1
        self.snapshot: dict[str, float] = {}

    def __call__(
        self, links: Sequence[LinkLoad], carrier: str, rng: random.Random | None = None
    ) -> LinkLoad:
        period = int(time.monotonic() / self.staleness) if self.staleness > 0 else -2
        if period != self.period or period == -2:
            self.snapshot = {link.name: link.load for link in links}
            self.period = period
        seen = [replace(link, load=self.snapshot.get(link.name, link.load)) for link in links]
        rng = rng or random.SystemRandom()
        if self.strategy == "p2c":
            return self.original(seen, carrier, rng)
        candidates = eligible_links(seen, carrier)
        if self.strategy == "least":
            return min(candidates, key=lambda link: (link.load, -link.capacity_mbps))
        weights = [link.capacity_mbps for link in candidates]
        return rng.choices(candidates, weights=weights, k=1)[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", choices=STRATEGIES, required=True)
    parser.add_argument("--staleness", type=float, default=1.0)
    parser.add_argument("--config", required=True)
    parser.add_argument("--region", required=True)
    args = parser.parse_args()
    chooser = StaleChooser(args.strategy, args.staleness)
    # The monkeypatch: the module's own name, and the name transferurls imported.
    linkchoice.choose_link = chooser
    transferurls.choose_link = chooser  # type: ignore[attr-defined]
    return geodrop_main(["--config", args.config, "fileserver", "--region", args.region])


if __name__ == "__main__":
    sys.exit(main())
