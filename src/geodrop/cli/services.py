"""Commands that run geodrop's servers or help operate them."""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from geodrop.cli import exitcodes
from geodrop.config import load_config
from geodrop.errors import ConfigError
from geodrop.protocol.usertokens import mint_token
from geodrop.web.logformat import configure_logging


def _config_path(args: argparse.Namespace) -> argparse.Namespace:
    if args.config is None:
        raise ConfigError("--config FILE is required")
    return args


def run_cluster(args: argparse.Namespace) -> int:
    from geodrop.cluster import run_cluster as supervise

    config = load_config(_config_path(args).config)
    configure_logging("cluster", config.logging)
    return supervise(config, args.config)


def run_directory(args: argparse.Namespace) -> int:
    from geodrop.directory.app import run_directory as serve

    config = load_config(_config_path(args).config)
    configure_logging("directory", config.logging)
    asyncio.run(serve(config))
    return exitcodes.OK


def run_fileserver(args: argparse.Namespace) -> int:
    from geodrop.fileserver.app import run_file_server

    config = load_config(_config_path(args).config)
    if args.region not in config.region_names:
        raise ConfigError(f"--region: no region named {args.region!r} in {args.config}")
    configure_logging(f"fileserver-{args.region}", config.logging)
    asyncio.run(run_file_server(config, args.region))
    return exitcodes.OK


def mint(args: argparse.Namespace) -> int:
    config = load_config(_config_path(args).config)
    try:
        token = mint_token(
            config.keys, args.user, now=time.time(), lifetime_seconds=args.days * 86400
        )
    except ValueError as exc:
        raise SystemExit(f"geodrop: {exc}") from None
    print(token)
    return exitcodes.OK


def check_config(args: argparse.Namespace) -> int:
    config = load_config(_config_path(args).config)
    print(f"{args.config}: ok ({len(config.regions)} regions)")
    return exitcodes.OK


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the server and operator commands."""
    cluster = commands.add_parser(
        "cluster", help="run the directory and every region's file server"
    )
    cluster.set_defaults(handler=run_cluster)
    directory = commands.add_parser("directory", help="run the directory (global server)")
    directory.set_defaults(handler=run_directory)
    fileserver = commands.add_parser("fileserver", help="run one region's file server")
    fileserver.add_argument("--region", required=True, help="the region to serve")
    fileserver.set_defaults(handler=run_fileserver)
    token = commands.add_parser("token", help="mint a user token from the cluster's key")
    token.add_argument("user", help="the user id (the token's sub)")
    token.add_argument("--days", type=int, default=30, help="lifetime in days (default 30)")
    token.set_defaults(handler=mint)
    check = commands.add_parser("check-config", help="validate the configuration file")
    check.set_defaults(handler=check_config)
    for sub in (cluster, directory, fileserver, token, check):
        sub.add_argument(
            "--config",
            type=Path,
            default=argparse.SUPPRESS,
            help="cluster configuration file (TOML)",
        )
