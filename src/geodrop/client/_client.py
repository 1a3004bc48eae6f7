"""The async client: locate, send, inbox, receive, status."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TypeVar

import aiohttp

from geodrop.client import _transfer
from geodrop.client._http import raise_for_error
from geodrop.client._models import (
    FileStatus,
    InboxEntry,
    InboxPage,
    Location,
    Progress,
    ReceivedFile,
    SentFile,
)
from geodrop.client._parallel import MAX_PARTIALS
from geodrop.client._state import ResumeRecords
from geodrop.errors import GeodropError, NetworkError, Unavailable

logger = logging.getLogger(__name__)

T = TypeVar("T")
ProgressCallback = Callable[[Progress], None]

DEFAULT_RETRIES: Final = 5
BACKOFF_SECONDS: Final = (0.5, 1.0, 2.0, 4.0, 8.0)


def default_state_dir() -> Path:
    """Where resume records live: ``$XDG_STATE_HOME/geodrop`` or ``~/.local/state/geodrop``."""
    return Path.home() / ".local" / "state" / "geodrop"


def _trusting(ca_file: Path) -> ssl.SSLContext:
    """A TLS context that trusts exactly the authorities in ``ca_file``.

    Raises:
        ValueError: the file cannot be read or holds no PEM certificate.
    """
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot load CA certificates from {ca_file}: {exc}") from None


class Client:
    """A geodrop user's client, for use from asyncio code.

    Args:
        directory_url: the cluster's directory, e.g. ``http://127.0.0.1:7700``.
        token: the user's bearer token (``geodrop token USER`` mints one).
        source_address: bind outgoing connections to this local address
            (how the loopback testbed plays users of other regions and carriers).
        state_dir: where resume records of unfinished uploads are kept.
        retries: how often a failed network step is retried before giving up.
        timeout: seconds without progress before a request is abandoned.
        ca_file: PEM file of the certificate authorities that HTTPS servers are
            checked against (a cluster with a private CA); None: the system's.

    Raises:
        ValueError: ``ca_file`` cannot be read or holds no certificate.

    Example::

        async with Client("http://127.0.0.1:7700", token) as client:
            sent = await client.send(Path("photo.jpg"), to=["bob"])
    """

    def __init__(
        self,
        directory_url: str,
        token: str | None = None,
        *,
        source_address: str | None = None,
        state_dir: Path | None = None,
        retries: int = DEFAULT_RETRIES,
        timeout: float = 60.0,
        ca_file: Path | None = None,
    ) -> None:
        self.directory_url = directory_url.rstrip("/")
        self._ssl: ssl.SSLContext | bool = True if ca_file is None else _trusting(ca_file)
        self.token = token
        self.source_address = source_address
        self.records = ResumeRecords((state_dir or default_state_dir()) / "uploads")
        self.retries = retries
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._location: Location | None = None

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the client's connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- plumbing ----------------------------------------------------------------

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            local = (self.source_address, 0) if self.source_address else None
            connector = aiohttp.TCPConnector(local_addr=local, limit=16, ssl=self._ssl)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def request_json(
        self, method: str, url: str, *, payload: Any = None, auth: bool = True
    ) -> Any:
        """One JSON request; a server's error becomes the matching :class:`GeodropError`."""
        headers = self.auth_headers() if auth else {}
        try:
            async with self.session.request(method, url, json=payload, headers=headers) as answer:
                await raise_for_error(answer)
                return await answer.json()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise NetworkError(f"cannot reach {url}: {exc}") from None

    async def retrying(self, step: Callable[[], Awaitable[T]]) -> T:
        """Run ``step``, retrying it with backoff while the network or a region is down."""
        for attempt in range(self.retries + 1):
            try:
                return await step()
            except (NetworkError, Unavailable) as exc:
                if attempt == self.retries:
                    raise
                delay = BACKOFF_SECONDS[min(attempt, len(BACKOFF_SECONDS) - 1)]
                logger.info("%s; retrying in %.1f s", exc.message, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    # -- the user's operations ---------------------------------------------------

    async def locate(self, *, refresh: bool = False) -> Location:
        """Where the directory places this client: region, carrier, access unit."""
        if self._location is None or refresh:
            data = await self.retrying(
                lambda: self.request_json("GET", f"{self.directory_url}/v1/locate", auth=False)
            )
            self._location = Location.from_json(data)
        return self._location

    async def send(
        self,
        path: Path,
        to: Sequence[str],
        *,
        name: str | None = None,
        progress: ProgressCallback | None = None,
        parallel: int | None = None,
    ) -> SentFile:
        """Upload ``path`` for the users ``to``; resumes an earlier interrupted send of it.

        A large file is sent as pieces over parallel connections, each a resumable
        partial upload, which the server then concatenates (tus concatenation).

        Args:
            parallel: how many pieces at most (1: one ordinary upload); None: 4 from
                64 MiB on, if the server supports it. Pieces are multiples of 8 MiB.

        Raises:
            ValueError: ``parallel`` is not between 1 and 16.
            GeodropError: the server refused (e.g. :class:`~geodrop.errors.PayloadTooLarge`),
                or the network stayed down (:class:`~geodrop.errors.NetworkError`).
        """
        if parallel is not None and not 1 <= parallel <= MAX_PARTIALS:
            raise ValueError(f"parallel: between 1 and {MAX_PARTIALS}, not {parallel}")
        return await _transfer.send(self, path, list(to), name or path.name, progress, parallel)

    async def receive(
        self,
        file_id: str,
        destination: Path | None = None,
        *,
        progress: ProgressCallback | None = None,
    ) -> ReceivedFile:
        """Download a file into ``destination`` (default: its name, in the current folder).

        Bytes go to ``DESTINATION.part`` first; an interrupted receive resumes from it with
        HTTP Range, and the file appears under its name only once its sha256 checks out.

        Raises:
            IntegrityError: the bytes do not match the file's sha256 (nothing is kept).
        """
        return await _transfer.receive(self, file_id, destination, progress)

    async def inbox(self, *, after: int = 0, wait: float = 0) -> InboxPage:
        """The user's inbox entries after cursor ``after``; waits up to ``wait`` s for one."""
        url = f"{self.directory_url}/v1/inbox?after={after}&wait={wait:g}"
        data = await self.retrying(lambda: self.request_json("GET", url))
        entries = tuple(InboxEntry.from_json(e) for e in data["entries"])
        return InboxPage(entries, int(data["cursor"]))

    async def watch(self, *, after: int = 0) -> AsyncIterator[InboxEntry]:
        """New inbox entries as they arrive (server-sent events), reconnecting as needed."""
        cursor = after
        while True:
            try:
                async for entry in self._event_stream(cursor):
                    cursor = entry.cursor
                    yield entry
            except NetworkError as exc:
                logger.info("inbox stream interrupted (%s); reconnecting", exc.message)
                await asyncio.sleep(BACKOFF_SECONDS[0])

    async def _event_stream(self, after: int) -> AsyncIterator[InboxEntry]:
        url = f"{self.directory_url}/v1/inbox/events"
        headers = {**self.auth_headers(), "Last-Event-ID": str(after)}
        try:
            async with self.session.get(
                url, headers=headers, timeout=aiohttp.ClientTimeout(total=None, sock_read=60)
            ) as answer:
                await raise_for_error(answer)
                data: list[str] = []
                async for raw in answer.content:
                    line = raw.decode("utf-8").rstrip("\r\n")
                    if line.startswith("data:"):
                        data.append(line[5:].strip())
                    elif not line and data:
                        yield InboxEntry.from_json(json.loads("\n".join(data)))
                        data = []
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise NetworkError(f"inbox stream: {exc}") from None

    async def status(self, file_id: str) -> FileStatus:
        """Where a file stands: uploading or complete, and which receivers have it."""
        location = await self.locate()
        url = f"{location.access_url}/v1/files/{file_id}/status"
        return FileStatus.from_json(await self.retrying(lambda: self.request_json("GET", url)))


__all__ = ["Client", "GeodropError", "ProgressCallback"]
