"""The ``geodrop`` command as users run it: a subprocess, with no terminal attached.

Each :class:`CliUser` has a home folder of its own (the client keeps its resume
records under ``~/.local/state/geodrop``), a token and a source address that the
cluster's override table maps to a region and a carrier (DESIGN.md §6).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from support.cluster import Cluster

RUN_SECONDS: Final = 60.0
# Variables of the parent's environment that would change what the command does.
CLEARED: Final = ("GEODROP_TOKEN", "GEODROP_DIRECTORY", "GEODROP_CA_FILE", "XDG_STATE_HOME")


def geodrop(*args: str) -> list[str]:
    """The argument list that runs ``geodrop ARGS`` with this interpreter."""
    return [sys.executable, "-m", "geodrop", *args]


def cli_environment(home: Path, **variables: str) -> dict[str, str]:
    """The parent's environment with HOME at ``home``, no geodrop settings, plus ``variables``."""
    home.mkdir(parents=True, exist_ok=True)
    env = {key: value for key, value in os.environ.items() if key not in CLEARED}
    return {**env, "HOME": str(home), **variables}


@dataclass(frozen=True, slots=True)
class CliResult:
    """How a finished ``geodrop`` run ended and what it printed."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> dict[str, Any]:
        """The one JSON object a successful ``--json`` run prints on stdout."""
        assert self.returncode == 0, f"{self.args}: exit {self.returncode}: {self.stderr}"
        lines = self.stdout.splitlines()
        assert len(lines) == 1, f"{self.args}: expected one line of JSON, got {self.stdout!r}"
        value = json.loads(lines[0])
        assert isinstance(value, dict), lines[0]
        return value


async def run(args: list[str], env: Mapping[str, str], seconds: float = RUN_SECONDS) -> CliResult:
    """Run a command to its end (killed after ``seconds``), stdin closed, output captured."""
    async with started(args, env) as process:
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), seconds)
        except TimeoutError:
            raise AssertionError(f"{args} did not finish within {seconds} s") from None
    assert process.returncode is not None
    return CliResult(
        tuple(args), process.returncode, stdout.decode(errors="replace"), stderr.decode("utf-8")
    )


def _as_at_a_terminal() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.asynccontextmanager
async def started(
    args: list[str], env: Mapping[str, str]
) -> AsyncIterator[asyncio.subprocess.Process]:
    """A running command with piped output; SIGKILLed on the way out if it is still running.

    It starts as a command typed at a terminal does, with Ctrl-C's default action, even
    when the test run itself ignores SIGINT (as a shell's background job does, and so
    every process it starts unless told otherwise).
    """
    process = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(env),
        preexec_fn=_as_at_a_terminal,
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        # Drain the pipes so their transports close; a killed process ends promptly.
        await asyncio.wait_for(process.communicate(), 10)


async def exit_status(process: asyncio.subprocess.Process, seconds: float) -> int:
    """``process``'s exit status once it ends, waiting at most ``seconds``; if it does not
    end, it is killed and the failure shows what it wrote to stderr meanwhile."""
    try:
        return await asyncio.wait_for(process.wait(), seconds)
    except TimeoutError:
        process.kill()
        await process.wait()
    written = bytearray()
    assert process.stderr is not None
    # What is there to read: a child left holding the pipe would keep it from ending.
    with contextlib.suppress(TimeoutError):
        while chunk := await asyncio.wait_for(process.stderr.read(65536), 1):
            written += chunk
    text = written.decode("utf-8", "replace")
    raise AssertionError(f"still running after {seconds} s; its stderr: {text!r}")


async def read_line_starting(
    stream: asyncio.StreamReader | None, prefix: str, seconds: float
) -> str:
    """The first line of ``stream`` that starts with ``prefix``, waiting at most ``seconds``."""
    assert stream is not None
    deadline = time.monotonic() + seconds
    seen: list[str] = []
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            raw = await asyncio.wait_for(stream.readline(), remaining)
        except TimeoutError:
            break
        if not raw:
            raise AssertionError(f"output ended before a line starting {prefix!r}: {seen}")
        line = raw.decode("utf-8").rstrip("\n")
        if line.startswith(prefix):
            return line
        seen.append(line)
    raise AssertionError(f"no line starting {prefix!r} within {seconds} s: {seen}")


@dataclass(frozen=True, slots=True)
class CliUser:
    """A user who runs ``geodrop`` from their own home, token and source address."""

    cluster: Cluster
    home: Path
    token: str
    source_address: str

    @property
    def env(self) -> dict[str, str]:
        return cli_environment(
            self.home, GEODROP_DIRECTORY=self.cluster.directory_url, GEODROP_TOKEN=self.token
        )

    def command(self, *args: str) -> list[str]:
        """``geodrop ARGS --source-address ADDR``: a user command as this user."""
        return geodrop(*args, "--source-address", self.source_address)

    async def run(self, *args: str, seconds: float = RUN_SECONDS) -> CliResult:
        return await run(self.command(*args), self.env, seconds)

    @property
    def resume_records(self) -> list[Path]:
        """The client's records of unfinished uploads in this user's home."""
        folder = self.home / ".local" / "state" / "geodrop" / "uploads"
        return sorted(folder.glob("*.json")) if folder.exists() else []


async def minted_token(cluster: Cluster, user: str, home: Path) -> str:
    """``geodrop token USER --config FILE``: a user token from the cluster's key."""
    result = await run(
        geodrop("token", user, "--config", str(cluster.config_path)), cli_environment(home)
    )
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert token.count(".") == 2, f"not a JWT: {result.stdout!r}"
    return token
