"""A real PostgreSQL server for the tests, and a fresh empty database per test.

The server is Debian's (``/usr/lib/postgresql/*/bin``, or ``initdb`` on ``PATH``), started
from nothing in well under a second: ``initdb --no-sync`` with trust authentication, and
``fsync=off`` (these databases need not survive a crash). ``initdb`` refuses to run as
root, so as root the server runs as the ``postgres`` user, in a folder it owns.
It listens on 127.0.0.1 only, on a free port, with its unix socket in its own folder.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from support.cluster import free_port

# The superuser initdb creates; every test database belongs to it.
USER: Final = "geodrop"


def _binaries() -> Path:
    """The folder of initdb, pg_ctl and psql (the newest installed version)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    raise RuntimeError(
        "PostgreSQL is not installed (no initdb): run `make system-deps` (Debian's postgresql)"
    )


def _version(path: str) -> int:
    version = Path(path).parent.parent.name
    return int(version) if version.isdigit() else 0


class PostgresServer:
    """One running PostgreSQL server; :meth:`create_database` gives each test its own database."""

    def __init__(self, *, durable: bool = False) -> None:
        # Tests run without fsync (fast, and nothing outlives them); a benchmark that
        # compares with SQLite's synchronous=FULL must not.
        self._durability = (
            "" if durable else " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._bin = _binaries()
        # Not under pytest's tmp folders: those are private to root, and the server runs
        # as postgres, which must reach its own folder.
        self.root = Path(tempfile.mkdtemp(prefix="geodrop-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.log_path = self.root / "pg.log"
        self.port = free_port(["127.0.0.1"])
        self._names = itertools.count(1)
        self._as_owner: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            self._as_owner = ["runuser", "-u", "postgres", "--"]
        self.root.chmod(0o700)

    def _run(self, *command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self._as_owner, *command],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=self.root,
        )

    def start(self) -> None:
        """Create the cluster and start the server; returns once it accepts connections.

        Raises:
            RuntimeError: it did not start; the message holds its output and log.
        """
        steps = [
            [
                str(self._bin / "initdb"),
                *("-D", str(self.data), "-U", USER, "-A", "trust", "-E", "UTF8"),
                *("--locale=C.UTF-8", "--no-sync", "--no-instructions"),
            ],
            ["mkdir", "-m", "700", str(self.socket_dir)],
            [
                str(self._bin / "pg_ctl"),
                *("-D", str(self.data), "-l", str(self.log_path), "-w", "-t", "30"),
                "-o",
                f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.socket_dir}"
                f"{self._durability} -c max_connections=300",
                "start",
            ],
        ]
        for command in steps:
            done = self._run(*command)
            if done.returncode != 0:
                raise RuntimeError(
                    f"PostgreSQL did not start: {' '.join(command)} exited {done.returncode}\n"
                    f"{done.stdout}\n{done.stderr}\n{self.log()}"
                )

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its folder."""
        if (self.data / "postmaster.pid").exists():
            self._run(str(self._bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        """The end of the server's log."""
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-4000:]
        return ""

    def dsn(self, database: str = "postgres") -> str:
        """A ``postgresql://`` URL of ``database`` on this server (TCP on 127.0.0.1)."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` with psql; returns its unaligned output.

        Raises:
            RuntimeError: psql failed.
        """
        done = subprocess.run(
            [
                str(self._bin / "psql"),
                *("-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"),
                *("-h", str(self.socket_dir), "-p", str(self.port), "-U", USER, "-d", database),
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {sql!r}: {done.stderr}\n{self.log()}")
        return done.stdout

    def create_database(self) -> str:
        """A new empty database; returns its DSN."""
        name = f"test_{os.getpid()}_{next(self._names)}"
        self.psql(f"CREATE DATABASE {name}")
        return self.dsn(name)

    def drop_database(self, dsn: str) -> None:
        """Drop a database :meth:`create_database` made, closing whatever still uses it."""
        name = dsn.rpartition("/")[2]
        assert name.startswith("test_"), dsn
        self.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextlib.contextmanager
def running_postgres(*, durable: bool = False) -> Iterator[PostgresServer]:
    """A started server, stopped (and its folder removed) when the block ends, however it ends.

    ``durable``: with fsync (the tests' server runs without it).
    """
    server = PostgresServer(durable=durable)
    try:
        server.start()
        yield server
    finally:
        server.stop()
