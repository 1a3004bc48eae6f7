"""Commands of a geodrop user: locate, send, inbox, receive, status."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from geodrop.cli import exitcodes
from geodrop.cli.progress import ProgressDisplay, human_bytes
from geodrop.client import DEFAULT_RETRIES, MAX_PARTIALS, Client
from geodrop.errors import BadRequest

DEFAULT_DIRECTORY: Final = "http://127.0.0.1:7700"


def _emit(args: argparse.Namespace, value: Any, text: str) -> None:
    if args.json:
        print(json.dumps(value, default=str), flush=True)
    else:
        print(text, flush=True)


def _as_json(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


async def locate(client: Client, args: argparse.Namespace) -> int:
    where = await client.locate()
    _emit(
        args,
        _as_json(where),
        f"{where.client_ip}: region {where.region}, carrier {where.carrier} ({where.match})"
        f"\naccess unit {where.access_url}",
    )
    return exitcodes.OK


def _receivers(text: str) -> list[str]:
    users = [user.strip() for user in text.split(",") if user.strip()]
    if not users:
        raise BadRequest("--to: name at least one receiver")
    return users


async def send(client: Client, args: argparse.Namespace) -> int:
    display = ProgressDisplay(enabled=not args.quiet)
    sent = await client.send(
        args.file, _receivers(args.to), progress=display, parallel=args.parallel
    )
    display.finish()
    resumed = f" (resumed at {human_bytes(sent.resumed_from)})" if sent.resumed_from else ""
    _emit(
        args,
        _as_json(sent),
        f"sent {sent.name} ({human_bytes(sent.size)}) to {args.to}{resumed}\n"
        f"file id {sent.file_id} (region {sent.region}, link {sent.link})",
    )
    return exitcodes.OK


def _entry_line(entry: Any) -> str:
    return (
        f"{entry.file_id}  {human_bytes(entry.size):>9}  from {entry.sender:<12}"
        f"  {_when(entry.created_at)}  {entry.name}"
    )


async def inbox(client: Client, args: argparse.Namespace) -> int:
    if args.watch:
        async for entry in client.watch(after=args.after):
            _emit(args, _as_json(entry), _entry_line(entry))
        return exitcodes.OK
    page = await client.inbox(after=args.after)
    if args.json:
        print(json.dumps({"entries": [_as_json(e) for e in page.entries], "cursor": page.cursor}))
    elif not page.entries:
        print("inbox is empty")
    else:
        for entry in page.entries:
            print(_entry_line(entry))
    return exitcodes.OK


async def receive(client: Client, args: argparse.Namespace) -> int:
    display = ProgressDisplay(enabled=not args.quiet)
    got = await client.receive(args.file_id, args.output, progress=display)
    display.finish()
    resumed = f" (resumed at {human_bytes(got.resumed_from)})" if got.resumed_from else ""
    _emit(
        args,
        _as_json(got),
        f"received {got.path} ({human_bytes(got.size)}){resumed}, sha256 verified\n"
        f"from region {got.region}, link {got.link}",
    )
    return exitcodes.OK


async def status(client: Client, args: argparse.Namespace) -> int:
    state = await client.status(args.file_id)
    lines = [
        f"{state.file_id}  {state.name}  {human_bytes(state.size)}  {state.state}"
        f" (region {state.region}, expires {_when(state.expires_at)})"
    ]
    for delivery in state.receivers:
        how = (
            f"received {_when(delivery.received_at)}"
            if delivery.received_at
            else ("in inbox" if delivery.announced else "waiting for the upload")
        )
        lines.append(f"  {delivery.user}: {how}")
    _emit(args, _as_json(state), "\n".join(lines))
    return exitcodes.OK


def _retry_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = -1
    if count < 0:
        raise argparse.ArgumentTypeError(f"not a count of retries: {text!r}")
    return count


def _piece_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = 0
    if not 1 <= count <= MAX_PARTIALS:
        raise argparse.ArgumentTypeError(f"not a count from 1 to {MAX_PARTIALS}: {text!r}")
    return count


Command = Callable[[Client, argparse.Namespace], Awaitable[int]]


def run(command: Command, args: argparse.Namespace) -> int:
    """Run a user command with a client built from the options and environment."""
    token = args.token or os.environ.get("GEODROP_TOKEN")
    if not token and command is not locate:
        print("geodrop: a token is needed: --token or GEODROP_TOKEN", file=sys.stderr)
        return exitcodes.AUTH
    directory = args.directory or os.environ.get("GEODROP_DIRECTORY") or DEFAULT_DIRECTORY
    ca_file = args.ca_file or os.environ.get("GEODROP_CA_FILE")
    try:
        client = Client(
            directory,
            token,
            source_address=args.source_address,
            retries=args.retries,
            ca_file=Path(ca_file) if ca_file else None,
        )
    except ValueError as exc:
        print(f"geodrop: --ca-file: {exc}", file=sys.stderr)
        return exitcodes.USAGE

    async def main() -> int:
        async with client:
            return await command(client, args)

    return asyncio.run(main())


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the user commands and their shared options."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--directory", help=f"directory URL (env GEODROP_DIRECTORY; default {DEFAULT_DIRECTORY})"
    )
    common.add_argument("--token", help="user token (env GEODROP_TOKEN)")
    common.add_argument(
        "--ca-file",
        metavar="PEM",
        help="trust the HTTPS certificates this authority signed (env GEODROP_CA_FILE;"
        " default: the system's authorities)",
    )
    common.add_argument(
        "--source-address", metavar="ADDR", help="bind outgoing connections to this local address"
    )
    common.add_argument("--json", action="store_true", help="print JSON for scripts")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    common.add_argument(
        "--retries",
        type=_retry_count,
        default=DEFAULT_RETRIES,
        metavar="N",
        help=f"retry a failed network step N times, with backoff (default {DEFAULT_RETRIES})",
    )

    def add(name: str, command: Command, help_text: str) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, parents=[common], help=help_text)
        parser.set_defaults(handler=lambda args: run(command, args))
        return parser

    add("locate", locate, "where the directory places this client")
    sender = add("send", send, "send a file to one or more users")
    sender.add_argument("file", type=Path, help="the file to send")
    sender.add_argument("--to", required=True, metavar="USER[,USER…]", help="the receivers")
    sender.add_argument(
        "--parallel",
        type=_piece_count,
        metavar="N",
        help="send the file as up to N pieces over parallel connections (1: one upload;"
        " default: 4 from 64 MiB on)",
    )
    box = add("inbox", inbox, "list the files waiting for you")
    box.add_argument("--watch", action="store_true", help="keep listening for new files")
    box.add_argument("--after", type=int, default=0, metavar="CURSOR", help="entries after this")
    getter = add("receive", receive, "download a file from your inbox")
    getter.add_argument("file_id", help="the file id (from the inbox)")
    getter.add_argument("-o", "--output", type=Path, help="where to write it (file or folder)")
    state = add("status", status, "where a sent file stands")
    state.add_argument("file_id", help="the file id")
