"""PNG plots beside the report (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.measure import Samples


@dataclass(frozen=True, slots=True)
class Panel:
    """One bar chart: a bar per series in each group, median height, min–max whiskers."""

    title: str
    ylabel: str
    groups: Sequence[str]
    series: Mapping[str, Sequence[Samples]]
    goal: float | None = None  # a dashed horizontal line (a target)
    goal_label: str = ""
    log: bool = False  # a logarithmic y axis (figures that span decades)


def bar_panels(path: Path, panels: Sequence[Panel], *, suptitle: str = "") -> None:
    """Write ``path``: the panels side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.4), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        names = list(panel.series)
        width = 0.8 / max(1, len(names))
        for i, name in enumerate(names):
            samples = panel.series[name]
            xs = [g + (i - (len(names) - 1) / 2) * width for g in range(len(panel.groups))]
            medians = [s.median for s in samples]
            errors = [
                [s.median - s.lo for s in samples],
                [s.hi - s.median for s in samples],
            ]
            ax.bar(xs, medians, width, yerr=errors, capsize=3, label=name or None)
        if panel.goal is not None:
            ax.axhline(
                panel.goal, linestyle="--", color="grey", linewidth=1, label=panel.goal_label
            )
        if panel.log:
            ax.set_yscale("log")
        ax.set_xticks(range(len(panel.groups)), panel.groups, fontsize=8)
        ax.set_title(panel.title, fontsize=10)
        ax.set_ylabel(panel.ylabel)
        ax.grid(axis="y", alpha=0.3)
        if any(names) or panel.goal is not None:
            ax.legend(fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
