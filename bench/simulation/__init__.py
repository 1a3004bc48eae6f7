"""Issue 7 items 6 and 7: the invention's claim and link choice, in a simulated network.

``run(ctx)`` is the report's entry point (see :mod:`bench.sections`); it returns two
sections, "6. The invention's claim, simulated" and "7. Link choice under load".
Standalone: ``sudo .venv/bin/python -m bench.simulation [--quick]`` (see ``__main__``).

Needs root (network namespaces), iproute2 (installed with apt-get if missing) and
matplotlib. Every namespace it creates is named ``gdsim-<pid>-*`` and deleted when the
run ends, however it ends; those of a killed run (its pid gone) are deleted at the start
of the next.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
import traceback
from pathlib import Path

from bench.context import BenchContext, GiB, MiB
from bench.report import Section, Target
from bench.simulation.claim import ClaimSettings, claim_section, run_claim
from bench.simulation.link_choice import (
    LinkChoiceSettings,
    link_choice_section,
    plot,
    run_link_choice,
)
from bench.simulation.model import PathRates
from bench.simulation.netns import ensure_tools, remove_leftovers, run_command, tool
from bench.simulation.runner import remove_leftover_data

PLOT_NAME = "simulation-links"

__all__ = ["run", "run_simulation"]


def _failed(title: str, what: str) -> Section:
    return Section(
        f"{title}: not measured",
        f"```\n{traceback.format_exc(limit=8).strip()}\n```\n",
        [Target(f"{what} ran", "no", "runs", passed=False, note="see the section")],
    )


def _iproute2_version() -> str:
    return run_command([tool("ip"), "-V"]).strip().removeprefix("ip utility, ")


def run(ctx: BenchContext, rates: PathRates | None = None) -> list[Section]:
    """Run items 6 and 7 (reduced when ``ctx.quick``); write the plot; return the sections.

    Args:
        ctx: the bench run.
        rates: the path-class rates (default: 100, 40, 50, 20 Mbit/s, issue 7).
    """
    rates = rates or PathRates()
    if os.geteuid() != 0:
        raise PermissionError("the simulation needs root: it creates network namespaces")
    ensure_tools()
    removed = remove_leftovers() + remove_leftover_data()
    if removed:
        ctx.log(f"simulation: removed leftovers of dead runs: {', '.join(removed)}")
    facts = {"iproute2 (simulation)": _iproute2_version()}
    sections: list[Section] = []
    claim = ClaimSettings.quick() if ctx.quick else ClaimSettings.full()
    claim = dataclasses.replace(claim, rates=rates)
    try:
        results = run_claim(claim, ctx.work_dir / "claim", ctx.log)
        sections.append(claim_section(claim, results))
    except Exception:
        ctx.log(f"simulation: item 6 failed\n{traceback.format_exc()}")
        sections.append(_failed("6. The invention's claim, simulated", "Simulation"))
    choice = LinkChoiceSettings.quick() if ctx.quick else LinkChoiceSettings.full()
    choice = dataclasses.replace(choice, rates=rates)
    try:
        figures = run_link_choice(choice, ctx.work_dir / "link-choice", ctx.log)
        try:
            plot(ctx.plot_path(PLOT_NAME), choice, figures)
            plotted = True
        except ImportError:
            ctx.log("simulation: matplotlib is missing; no plot")
            plotted = False
        sections.append(link_choice_section(choice, figures, PLOT_NAME, plotted=plotted))
    except Exception:
        ctx.log(f"simulation: item 7 failed\n{traceback.format_exc()}")
        sections.append(_failed("7. Link choice under load", "Link choice"))
    first = sections[0]
    sections[0] = Section(first.title, first.markdown, first.targets, {**first.facts, **facts})
    return sections


def run_simulation(
    quick: bool, docs_dir: Path | None = None, rates: PathRates | None = None
) -> list[Section]:
    """Run both items outside ``make bench``; the plot goes to ``docs_dir``.

    ``docs_dir`` defaults to ``gdsim-docs`` in the temporary folder.
    """
    work = Path(tempfile.mkdtemp(prefix="gdsim-work-"))
    docs_dir = docs_dir or Path(tempfile.gettempdir()) / "gdsim-docs"
    ctx = BenchContext(
        quick=quick,
        rounds=3 if quick else 5,
        work_dir=work,
        docs_dir=docs_dir,
        big_file=256 * MiB if quick else GiB,
        load_seconds=2.0 if quick else 8.0,
        started=time.monotonic(),
    )
    try:
        return run(ctx, rates)
    finally:
        shutil.rmtree(work, ignore_errors=True)
