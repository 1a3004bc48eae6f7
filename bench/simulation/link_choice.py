"""Issue 7 item 7: link choice under load, with one link's capacity halved mid-run.

One region's file server has several multi-carrier links of equal capacity; users arrive
at random (Poisson) and each sends a file that its receiver then downloads. A third of
the way in, one link's capacity is halved (its ``tbf`` rate, both directions). The same
arrivals run three times, once per link-choice strategy, on a bench-only variant of the
file server (``variant_fileserver.py``) that swaps ``choose_link`` and gives every
strategy the same stale view of the loads (refreshed once per heartbeat interval).
"""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from bench.report import Section, Target, markdown_table
from bench.simulation.model import (
    CARRIERS,
    Group,
    LinkSpec,
    PathRates,
    link_choice_deployment,
    median,
    percentile,
    seconds,
)
from bench.simulation.netns import Topology
from bench.simulation.runner import Event, RunResult, TransferSpec, run_deployment

HERE: Final = Path(__file__).resolve().parent
STRATEGIES: Final = ("p2c", "least", "random")
LABELS: Final = {
    "p2c": "power of two choices (geodrop)",
    "least": "always the least loaded on the last report",
    "random": "random (weighted by capacity)",
}
SEED: Final = 7
HALVED: Final = "bgp1"  # the link whose capacity is halved mid-run
DEFAULT_RATES: Final = PathRates()
SAMPLE_SECONDS: Final = 0.5
SMOOTH_SECONDS: Final = 3.0


@dataclass(frozen=True, slots=True)
class LinkChoiceSettings:
    """The load: ``utilisation`` of the total capacity before the halving, on average."""

    links: int
    capacity_mbps: float
    size: int
    utilisation: float
    load_seconds: float
    halve_at: float  # seconds after the start
    staleness_seconds: float
    drain_seconds: float
    rates: PathRates = DEFAULT_RATES

    @classmethod
    def full(cls) -> LinkChoiceSettings:
        return cls(5, 30.0, 3_000_000, 0.6, 60.0, 20.0, 1.0, 40.0)

    @classmethod
    def quick(cls) -> LinkChoiceSettings:
        return cls(5, 30.0, 1_000_000, 0.6, 8.0, 3.0, 1.0, 5.0)

    @property
    def arrivals_per_second(self) -> float:
        """Transfers per second that load every link to ``utilisation`` each way."""
        return self.utilisation * self.links * self.capacity_mbps * 1e6 / 8 / self.size


@dataclass
class StrategyFigures:
    strategy: str
    starts: list[float] = field(default_factory=list)
    totals: list[float] = field(default_factory=list)  # +inf: unfinished
    links: list[tuple[str | None, str | None]] = field(default_factory=list)
    # per link: [(seconds, utilisation of its capacity at the time, both directions)]
    utilisation: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    failed: int = 0

    def after(self, moment: float) -> list[float]:
        return [t for s, t in zip(self.starts, self.totals, strict=True) if s >= moment]


def plan_arrivals(settings: LinkChoiceSettings) -> list[TransferSpec]:
    """Poisson arrivals over the load period, between random users of the region."""
    rng = random.Random(SEED)
    groups = [Group("north", c) for c in CARRIERS]
    transfers: list[TransferSpec] = []
    moment = rng.expovariate(settings.arrivals_per_second)
    while moment < settings.load_seconds:
        transfers.append(
            TransferSpec(len(transfers), rng.choice(groups), rng.choice(groups), moment)
        )
        moment += rng.expovariate(settings.arrivals_per_second)
    return transfers


def _variant_argv(strategy: str, staleness: float) -> Callable[[Path, str], list[str]]:
    def argv(config: Path, region: str) -> list[str]:
        return [
            sys.executable,
            str(HERE / "variant_fileserver.py"),
            "--strategy",
            strategy,
            "--staleness",
            str(staleness),
            "--config",
            str(config),
            "--region",
            region,
        ]

    return argv


def _utilisation(
    result: RunResult, halved: LinkSpec, settings: LinkChoiceSettings, at: float
) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = {link.key: [] for link in result.deployment.links}
    for (t0, before), (t1, after) in zip(result.samples, result.samples[1:], strict=False):
        span = t1 - t0
        if span <= 0:
            continue
        for link in result.deployment.links:
            capacity = settings.capacity_mbps
            if link == halved and t1 > at:
                capacity /= 2
            moved = (after[link.key][0] - before[link.key][0]) + (
                after[link.key][1] - before[link.key][1]
            )
            out[link.key].append(((t0 + t1) / 2, moved * 8 / span / (2 * capacity * 1e6)))
    return out


def run_link_choice(
    settings: LinkChoiceSettings, work_dir: Path, log: Callable[[str], None]
) -> list[StrategyFigures]:
    """Run every strategy on the same arrivals; halve the first link mid-run."""
    deployment = link_choice_deployment(settings.links, settings.capacity_mbps)
    halved = deployment.link("north", HALVED)
    transfers = plan_arrivals(settings)

    def halve(topology: Topology) -> None:
        topology.set_capacity(halved, settings.capacity_mbps / 2)

    figures = []
    for strategy in STRATEGIES:
        log(f"simulation: link choice, {LABELS[strategy]} ({len(transfers)} arrivals)")
        result = run_deployment(
            deployment,
            settings.rates,
            transfers,
            size=settings.size,
            run_id=f"l{strategy[0]}",
            work_dir=work_dir / f"link-choice-{strategy}",
            deadline_seconds=settings.load_seconds + settings.drain_seconds,
            concurrency=None,
            fileserver_argv=_variant_argv(strategy, settings.staleness_seconds),
            events=[Event(settings.halve_at, halve, f"halved {halved.key}")],
            sample_every=SAMPLE_SECONDS,
            log=log,
        )
        result_figures = StrategyFigures(strategy)
        for record in result.records:
            result_figures.starts.append(record["start"])
            if record["finished"]:
                result_figures.totals.append(record["upload_s"] + record["download_s"])
            else:
                result_figures.totals.append(math.inf)
                result_figures.failed += 1
            result_figures.links.append((record.get("up_link"), record.get("down_link")))
        result_figures.utilisation = _utilisation(result, halved, settings, settings.halve_at)
        figures.append(result_figures)
    return figures


def _smooth(points: Sequence[tuple[float, float]]) -> tuple[list[float], list[float]]:
    xs = [t for t, _ in points]
    ys = []
    for t, _ in points:
        window = [u for s, u in points if abs(s - t) <= SMOOTH_SECONDS / 2]
        ys.append(sum(window) / len(window))
    return xs, ys


def plot(path: Path, settings: LinkChoiceSettings, figures: Sequence[StrategyFigures]) -> None:
    """Per-link utilisation over time, one panel per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        len(figures), 1, figsize=(9, 2.6 * len(figures)), sharex=True, squeeze=False
    )
    for ax, f in zip(axes[:, 0], figures, strict=True):
        for key, points in f.utilisation.items():
            xs, ys = _smooth(points)
            ax.plot(
                xs,
                ys,
                linewidth=1.2,
                label=key.split("/")[1] + (" (halved)" if key.endswith(f"/{HALVED}") else ""),
            )
        ax.axvline(settings.halve_at, color="grey", linestyle="--", linewidth=1)
        ax.axvline(settings.load_seconds, color="grey", linestyle=":", linewidth=1)
        ax.set_ylim(0, 1.15)
        ax.set_ylabel("utilisation")
        ax.set_title(f"{LABELS[f.strategy]}: p90 {seconds(percentile(f.totals, 0.9))}", fontsize=10)
        ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize=8, frameon=False)
    axes[-1, 0].set_xlabel(
        f"seconds (dashed: {HALVED} halved; dotted: arrivals stop); "
        f"{SMOOTH_SECONDS:g}-s mean of both directions"
    )
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def link_choice_section(
    settings: LinkChoiceSettings,
    figures: Sequence[StrategyFigures],
    plot_name: str,
    *,
    plotted: bool = True,
) -> Section:
    """Section 7 of the report."""
    halved = f"north/{HALVED}"
    rows = []
    for f in figures:
        after = [
            links
            for s, links in zip(f.starts, f.links, strict=True)
            if s >= settings.halve_at and links[0] is not None
        ]
        share = (
            sum((up == HALVED) + (down == HALVED) for up, down in after) / (2 * len(after))
            if after
            else math.nan
        )
        rows.append(
            [
                LABELS[f.strategy],
                seconds(median(f.totals)),
                seconds(percentile(f.totals, 0.9)),
                seconds(percentile(f.after(settings.halve_at), 0.9)),
                f"{share:.0%}",
                str(f.failed),
            ]
        )
    by = {f.strategy: percentile(f.totals, 0.9) for f in figures}
    best = min(by["least"], by["random"])
    body = [
        f"One region with {settings.links} multi-carrier (`any`) links of "
        f"{settings.capacity_mbps:g} Mbit/s each way (a `tbf` on each side of the link's "
        f"veth), so every link is eligible for every client and the choice is all load. "
        f"Users of the region's three carriers arrive at random (Poisson, "
        f"{settings.arrivals_per_second:.2f}/s for {settings.load_seconds:g} s: "
        f"{settings.utilisation:.0%} of the total capacity each way); each sends "
        f"{settings.size / 1e6:g} MB that a random receiver then downloads (both link "
        f"choices count). At {settings.halve_at:g} s, link {HALVED}'s capacity is halved "
        f"to {settings.capacity_mbps / 2:g} Mbit/s; the configured capacity is not "
        f"changed, so the servers learn of it only through the load they measure. The "
        f"same arrivals run once per strategy.\n",
        "The strategies run in a **bench-only variant** of the file server "
        "(`bench/simulation/variant_fileserver.py`) that monkeypatches `choose_link` and "
        "changes nothing in `src/`. All three see the same stale loads: the link loads as "
        f"they stood at the start of the current {settings.staleness_seconds:g}-s period "
        "(the heartbeat interval), as when several access-unit processes share links or "
        "loads arrive by heartbeat: staleness is what DESIGN.md §3 is about (fresh loads "
        "are not measured here).\n",
        markdown_table(
            [
                "strategy",
                "median",
                "p90",
                "p90 after the halving",
                f"transfers on {halved} after the halving",
                "unfinished",
            ],
            rows,
        ),
        f"\nUnfinished transfers (still running {settings.drain_seconds:g} s after the "
        "last arrival) count as infinitely long. geodrop's load figure is the measured "
        "byte rate over the *configured* capacity plus a share per active transfer, so a "
        "link whose capacity silently halves shows a lower rate, not a higher one: only its "
        "longer-lasting transfers give it away (the share of transfers it still gets after "
        "the halving, above; an even spread is "
        f"{1 / settings.links:.0%}).\n",
        f"![per-link utilisation over time](bench-{plot_name}.png)\n"
        if plotted
        else "(No plot: matplotlib is missing; `pip install -e '.[bench]'`.)\n",
    ]
    targets = [
        Target(
            "Link choice: p90, power of two choices vs least loaded / random",
            f"{seconds(by['p2c'])} vs {seconds(by['least'])} / {seconds(by['random'])}",
            "lowest of the three",
            by["p2c"] < best,
        )
    ]
    return Section("7. Link choice under load", "\n".join(body), targets)
