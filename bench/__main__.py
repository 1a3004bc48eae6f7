"""``python -m bench [--quick] [--only NAME,…]``: run the benchmarks, write docs/BENCHMARKS.md."""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import signal
import stat
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from bench import cpuaccount, machine
from bench.context import BenchContext, GiB, MiB
from bench.report import Section, Target, render, write_report
from bench.sections import SECTIONS

REPO: Path = Path(__file__).resolve().parent.parent
# Files a section leaves that are removed as soon as it is over (remove_big_files).
BIG_FILE_BYTES = 16 * MiB


def _interrupted(signum: int, frame: FrameType | None) -> None:
    # SIGTERM unwinds like Ctrl-C, so every `with Services(...)` stops its servers.
    raise KeyboardInterrupt


def _load(name: str, module_name: str) -> object | None:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        raise


def _as_sections(value: object) -> list[Section]:
    if isinstance(value, Section):
        return [value]
    if isinstance(value, Sequence) and all(isinstance(v, Section) for v in value):
        return list(value)
    raise TypeError(f"run() returned {type(value).__name__}, not Section(s)")


def _failed(name: str, why: str) -> Section:
    return Section(
        f"{name}: not measured",
        f"```\n{why.strip()}\n```\n",
        [Target(f"{name} ran", "no", "runs", passed=False, note="see the section")],
    )


def remove_big_files(work: Path) -> None:
    """Remove the files of at least :data:`BIG_FILE_BYTES` a section left in ``work``.

    The rest waits for the end of the run (``main`` removes the whole work folder). On
    ext4 without a journal, as on the machines this bench has run on so far, a new inode
    is not given out within a minute (up to six while its inode table block is not yet
    written back) of one being freed, and each file creation scans past every recently
    freed inode of its group. Removed after the section that made them (the control
    plane's upload negotiations leave an empty upload each, tens of thousands), small
    files would tax the next section's file creations: in the small-file load north
    spent 14 % of its CPU creating files right after thousands were removed (perf:
    ext4_create, nearly all of it that scan), 4 % once a minute had passed since. A few
    big files freed leave little to scan past.
    """
    for folder, _, names in os.walk(work):
        for name in names:
            path = Path(folder, name)
            try:
                info = path.lstat()
                if stat.S_ISREG(info.st_mode) and info.st_size >= BIG_FILE_BYTES:
                    path.unlink()
            except OSError:
                pass  # gone already, or not ours to remove: the end of the run removes it


def run_sections(
    ctx: BenchContext, only: set[str] | None, work_root: Path
) -> tuple[list[Section], bool]:
    sections: list[Section] = []
    ok = True
    for name, module_name in SECTIONS:
        if only is not None and name not in only:
            continue
        module = _load(name, module_name)
        if module is None or not callable(getattr(module, "run", None)):
            ctx.log(f"{name}: {module_name} is not there; skipped")
            sections.append(_failed(name, f"{module_name}.run is not in this tree yet."))
            continue
        work = work_root / name
        work.mkdir()
        ctx.log(f"{name}: start")
        try:
            sections += _as_sections(module.run(ctx.with_work_dir(work)))  # type: ignore[attr-defined]
        except KeyboardInterrupt:
            raise
        except Exception:
            ok = False
            ctx.log(f"{name}: FAILED\n{traceback.format_exc()}")
            sections.append(_failed(name, traceback.format_exc(limit=8)))
        finally:
            remove_big_files(work)
        ctx.log(f"{name}: done")
    return sections, ok


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the reduced set (< 5 minutes)")
    parser.add_argument(
        "--only", help="comma-separated sections: " + ",".join(n for n, _ in SECTIONS)
    )
    parser.add_argument("--rounds", type=int, help="rounds per comparison (default 5; quick 3)")
    parser.add_argument("--docs", type=Path, default=REPO / "docs", help="report folder")
    parser.add_argument(
        "--work-root", type=Path, default=Path(tempfile.gettempdir()),
        help="where the (removed afterwards) work folder goes; must be disk-backed",
    )  # fmt: skip
    args = parser.parse_args(argv)
    only = set(args.only.split(",")) if args.only else None
    if only is not None and (unknown := only - {n for n, _ in SECTIONS}):
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    signal.signal(signal.SIGTERM, _interrupted)
    started = time.monotonic()
    work_root = Path(tempfile.mkdtemp(prefix="geodrop-bench-", dir=args.work_root))
    ctx = BenchContext(
        quick=args.quick,
        rounds=args.rounds or (3 if args.quick else 5),
        work_dir=work_root,
        docs_dir=args.docs,
        big_file=256 * MiB if args.quick else GiB,
        load_seconds=2.0 if args.quick else 8.0,
        started=started,
    )
    facts = machine.facts()
    facts["server CPU counted by"] = cpuaccount.method()
    facts["load average at start (1/5/15 min)"] = machine.load_average()
    cpu_at_start = machine.cpu_times()
    try:
        sections, ok = run_sections(ctx, only, work_root)
    except KeyboardInterrupt:
        print("bench: interrupted; servers stopped, work folder removed", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(work_root, ignore_errors=True)
    facts["load average at end"] = machine.load_average()
    facts["CPU time taken by the hypervisor (steal) during the run"] = machine.stolen_share(
        cpu_at_start, machine.cpu_times()
    )
    for section in sections:
        facts.update(section.facts)
    command = "make bench QUICK=1" if ctx.quick else "make bench"
    if only is not None:
        command += f" ONLY={args.only}"
    text = render(
        sections,
        facts=facts,
        quick=ctx.quick,
        elapsed_seconds=time.monotonic() - started,
        command=command,
    )
    report = args.docs / "BENCHMARKS.md"
    write_report(report, text)
    ctx.log(f"wrote {report}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
