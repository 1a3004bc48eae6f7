"""The ``geodrop`` command: run the servers, and send and receive files.

Exit codes are in :mod:`geodrop.cli.exitcodes` and the README.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from geodrop.cli import exitcodes, services, user
from geodrop.errors import GeodropError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="geodrop", description="Offline file transfer across regions and carrier links."
    )
    parser.add_argument("--config", type=Path, help="cluster configuration file (TOML)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    services.add_commands(commands)
    user.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``geodrop`` command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        status: int = args.handler(args)
    except GeodropError as exc:
        kind = "configuration error" if exc.code == "config" else exc.code.replace("_", " ")
        print(f"geodrop: {kind}: {exc.message}", file=sys.stderr)
        return exitcodes.exit_code_for(exc)
    except KeyboardInterrupt:
        print("geodrop: interrupted; run the same command again to resume", file=sys.stderr)
        return exitcodes.INTERRUPTED
    return status
