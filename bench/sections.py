"""The report's sections, in order: each a module with ``run(ctx) -> Section | [Section]``.

To add a section, write a module (or package) under ``bench/`` whose ``run`` takes a
:class:`~bench.context.BenchContext` and returns a :class:`~bench.report.Section` or a
sequence of them, and list it here. A listed module that is not there (yet) is reported
as missing, and the rest of the run goes on.
"""

from __future__ import annotations

from typing import Final

# (name for --only, module)
SECTIONS: Final = (
    ("download", "bench.download"),
    ("upload", "bench.upload"),
    ("control", "bench.control"),
    ("smallfiles", "bench.smallfiles"),
    ("memory", "bench.memory"),
    ("simulation", "bench.simulation"),
    ("metadata", "bench.metadata"),
    ("s3", "bench.s3upload"),
)
