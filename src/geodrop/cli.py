"""The ``geodrop`` command: run the services, mint tokens."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from geodrop.config import ClusterConfig, load_config
from geodrop.errors import ConfigError
from geodrop.protocol.usertokens import mint_token
from geodrop.web.middleware import configure_logging

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_CONFIG = 78  # EX_CONFIG of sysexits.h


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="geodrop", description="Offline file transfer across regions and carrier links."
    )
    parser.add_argument("--config", type=Path, help="cluster configuration file (TOML)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("cluster", help="run the directory and every region's file server")
    commands.add_parser("directory", help="run the directory (global server)")
    fileserver = commands.add_parser("fileserver", help="run one region's file server")
    fileserver.add_argument("--region", required=True, help="the region to serve")
    token = commands.add_parser("token", help="mint a user token from the cluster's key")
    token.add_argument("user", help="the user id (the token's sub)")
    token.add_argument("--days", type=int, default=30, help="lifetime in days (default 30)")
    commands.add_parser("check-config", help="validate the configuration file and exit")
    for sub in commands.choices.values():
        sub.add_argument(
            "--config",
            type=Path,
            default=argparse.SUPPRESS,
            help="cluster configuration file (TOML)",
        )
    return parser


def _config(path: Path | None) -> ClusterConfig:
    if path is None:
        raise ConfigError("--config FILE is required")
    return load_config(path)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``geodrop`` command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        config = _config(args.config)
        if args.command == "cluster":
            from geodrop.cluster import run_cluster

            configure_logging("cluster")
            return run_cluster(config, args.config)
        if args.command == "directory":
            from geodrop.directory.app import run_directory

            configure_logging("directory")
            asyncio.run(run_directory(config))
            return EXIT_OK
        if args.command == "fileserver":
            from geodrop.fileserver.app import run_file_server

            if args.region not in config.region_names:
                raise ConfigError(f"--region: no region named {args.region!r} in {args.config}")
            configure_logging(f"fileserver-{args.region}")
            asyncio.run(run_file_server(config, args.region))
            return EXIT_OK
        if args.command == "token":
            try:
                print(
                    mint_token(
                        config.keys.user_token,
                        args.user,
                        now=time.time(),
                        lifetime_seconds=args.days * 86400,
                    )
                )
            except ValueError as exc:
                print(f"geodrop: {exc}", file=sys.stderr)
                return EXIT_USAGE
            return EXIT_OK
        print(f"{args.config}: ok ({len(config.regions)} regions)")
        return EXIT_OK
    except ConfigError as exc:
        print(f"geodrop: configuration error: {exc.message}", file=sys.stderr)
        return EXIT_CONFIG
