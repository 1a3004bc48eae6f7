"""What a benchmark section hands back, and the writer of ``docs/BENCHMARKS.md``.

Every section module (``bench.download``, ``bench.upload``, …, ``bench.simulation``)
exposes ``run(ctx: BenchContext) -> Section | Sequence[Section]``. A section carries its
own markdown (tables, notes, links to the PNG plots it wrote through
``ctx.plot_path``) and its :class:`Target` lines; this module only assembles them, in
the order of :data:`bench.sections.SECTIONS`, under a header with the machine facts and
versions and a summary table of every target with PASS or FAIL.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

PASS: Final = "PASS"  # noqa: S105 - a verdict, not a password
FAIL: Final = "FAIL"


@dataclass(frozen=True, slots=True)
class Target:
    """One target of issue 7, checked against this run's figures.

    Attributes:
        name: what is compared, e.g. ``"Download, 1 stream (curl): geodrop / nginx"``.
        value: the measured figure, formatted with its unit (``"1.03×"``, ``"4.2 ms"``).
        goal: the target, formatted (``"≥ 1.0×"``, ``"≤ 5 ms"``).
        passed: whether ``value`` meets ``goal``.
        note: why it fails, or anything a reader must know to judge it.
    """

    name: str
    value: str
    goal: str
    passed: bool
    note: str = ""

    @property
    def verdict(self) -> str:
        return PASS if self.passed else FAIL


@dataclass(frozen=True, slots=True)
class Section:
    """A chapter of the report.

    Attributes:
        title: the heading (``"1. Download"``), rendered as a level-2 heading.
        markdown: the body: tables, method notes, ``![...](bench-x.png)`` plot links.
        targets: the targets this section checks, shown under it and in the summary.
        facts: extra version or setup facts for the header (``{"iproute2": "6.1"}``).
    """

    title: str
    markdown: str
    targets: Sequence[Target] = ()
    facts: Mapping[str, str] = field(default_factory=dict)


def target_table(targets: Sequence[Target], *, with_section: Sequence[str] = ()) -> str:
    """A markdown table of targets; ``with_section`` adds a first column (the summary)."""
    head = "| section | target | measured | goal | |\n|---|---|---|---|---|\n"
    if not with_section:
        head = "| target | measured | goal | |\n|---|---|---|---|\n"
    rows = []
    for i, t in enumerate(targets):
        verdict = f"**{t.verdict}**" + (f" — {t.note}" if t.note else "")
        cells = [t.name, t.value, t.goal, verdict]
        if with_section:
            cells.insert(0, with_section[i])
        rows.append("| " + " | ".join(cells) + " |")
    return head + "\n".join(rows) + "\n"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def render(
    sections: Sequence[Section],
    *,
    facts: Mapping[str, str],
    quick: bool,
    elapsed_seconds: float,
    command: str,
) -> str:
    """The whole report as markdown."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    mode = "QUICK (reduced set: smaller files, fewer rounds, shorter loads)" if quick else "full"
    out = [
        "# geodrop benchmarks\n",
        f"Written by `{command}` on {now} ({mode}; {elapsed_seconds / 60:.1f} min). "
        "Generated, not hand-edited: run the command again to refresh it.\n",
        "Method: each comparison runs its sides alternately (A, B, C, A, B, C, …); "
        "figures are medians with min–max over the rounds, and every ratio is the ratio "
        "of two medians from the same run. All traffic stays on loopback addresses "
        "(127.0.0.0/8); the simulation uses 198.18.0.0/15 inside network namespaces it "
        "creates and deletes itself. A section's big files are removed when it ends, its "
        "small ones with the rest of the work folder when the run ends: removed at once, "
        "tens of thousands of them would make the next section's file creations slower "
        "(see `bench/__main__.py`).\n",
        "## Machine and versions\n",
        markdown_table(["", ""], [[k, v] for k, v in facts.items()]),
    ]
    all_targets: list[Target] = []
    owners: list[str] = []
    for section in sections:
        all_targets += section.targets
        owners += [section.title] * len(section.targets)
    if all_targets:
        passed = sum(t.passed for t in all_targets)
        out += [
            "## Targets\n",
            f"{passed} of {len(all_targets)} targets pass.\n",
            target_table(all_targets, with_section=owners),
        ]
    for section in sections:
        out.append(f"## {section.title}\n")
        out.append(section.markdown.rstrip() + "\n")
        if section.targets:
            out.append("Targets:\n")
            out.append(target_table(section.targets))
    return "\n".join(out)


def write_report(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
