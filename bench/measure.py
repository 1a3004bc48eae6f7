"""Rounds of alternating trials, and their medians, ranges and ratios."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from bench.context import BenchContext

# A trial measures one side once and answers with named figures ({"GB/s": 3.1, ...}).
Trial = Callable[[], Mapping[str, float]]


@dataclass(frozen=True, slots=True)
class Samples:
    """The values of one figure over the rounds, in round order."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def lo(self) -> float:
        return min(self.values)

    @property
    def hi(self) -> float:
        return max(self.values)

    def fmt(self, digits: int = 2) -> str:
        """``median (min–max)``."""
        return f"{self.median:.{digits}f} ({self.lo:.{digits}f}–{self.hi:.{digits}f})"


# results[side][figure] -> Samples
Results = dict[str, dict[str, Samples]]


def alternate(
    ctx: BenchContext,
    label: str,
    sides: Mapping[str, Trial],
    *,
    rounds: int | None = None,
    warmup: bool = False,
) -> Results:
    """Run every side once per round, in the same order each round: A, B, C, A, B, C, ….

    With ``warmup`` a first round is run and thrown away (caches, JIT, connection pools).
    """
    count = rounds if rounds is not None else ctx.rounds
    collected: dict[str, dict[str, list[float]]] = {name: {} for name in sides}
    for r in range(-1 if warmup else 0, count):
        for name, trial in sides.items():
            figures = trial()
            tag = "warm-up" if r < 0 else f"round {r + 1}/{count}"
            shown = ", ".join(f"{k} {v:.3g}" for k, v in figures.items())
            ctx.log(f"{label}: {name} {tag}: {shown}")
            if r < 0:
                continue
            for figure, value in figures.items():
                collected[name].setdefault(figure, []).append(value)
    return {
        name: {figure: Samples(tuple(values)) for figure, values in figures.items()}
        for name, figures in collected.items()
    }


def ratio(a: Samples, b: Samples) -> float:
    """The ratio of two medians of the same run."""
    return a.median / b.median if b.median else float("inf")


def round_ratios(a: Samples, b: Samples) -> Samples:
    """Per-round ratios (the sides of one round ran back to back), for the spread."""
    return Samples(
        tuple(x / y if y else float("inf") for x, y in zip(a.values, b.values, strict=True))
    )


def shown_against(value: float, goal: float, digits: int = 2) -> str:
    """``0.83×``: a target's ratio, with more digits where two would round it onto its
    goal and hide which side it fell (0.995 against 1.0: ``0.995×``, not ``1.00×``)."""
    while digits < 4 and value != goal and round(value, digits) == goal:
        digits += 1
    return f"{value:.{digits}f}×"


def ratio_text(a: Samples, b: Samples, digits: int = 2) -> str:
    """``1.03× (0.97–1.08)``: median ratio and the range of per-round ratios."""
    spread = round_ratios(a, b)
    return f"{ratio(a, b):.{digits}f}× ({spread.lo:.{digits}f}–{spread.hi:.{digits}f})"


def median_of(values: Sequence[float]) -> float:
    return statistics.median(values)
