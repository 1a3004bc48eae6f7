"""Serving a package's folder of static files (the web pages), read once at start-up.

The pages are a few small files: they are read into memory when the application is
built (no file I/O on the event loop afterwards) and answered with a strong ETag and
``Cache-Control: no-cache``, so a browser revalidates each time (a 304 without a body)
and a new version is seen at the next load, with no file names to version.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

from geodrop.errors import NotFound

logger = logging.getLogger(__name__)

CONTENT_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
}
# A served name is one plain file name: no folder part, nothing hidden.
_NAME: Final = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}\Z")


@dataclass(frozen=True, slots=True)
class StaticFile:
    """One file, ready to answer."""

    body: bytes
    content_type: str
    etag: str


class StaticFiles:
    """The files of one package folder (package data), by name.

    Args:
        package: the package that ships the folder, e.g. ``geodrop.directory``.
        folder: the folder inside it, e.g. ``static``.
        headers: headers of every answer (a Content-Security-Policy, say).
    """

    def __init__(self, package: str, folder: str, headers: Mapping[str, str]) -> None:
        self.headers = dict(headers)
        self.files: dict[str, StaticFile] = {}
        root = resources.files(package).joinpath(folder)
        for entry in root.iterdir():
            suffix = "." + entry.name.rpartition(".")[2]
            if entry.is_file() and _NAME.match(entry.name) and suffix in CONTENT_TYPES:
                body = entry.read_bytes()
                etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
                self.files[entry.name] = StaticFile(body, CONTENT_TYPES[suffix], etag)
        logger.debug("static files of %s/%s: %s", package, folder, sorted(self.files))

    def answer(self, request: web.Request, name: str) -> web.Response:
        """The file ``name``: 200, or 304 when the browser's copy is current.

        Raises:
            NotFound: no such file.
        """
        found = self.files.get(name)
        if found is None:
            raise NotFound("no such file")
        headers = {
            **self.headers,
            "ETag": found.etag,
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
        }
        # RFC 9110 §13.1.2: If-None-Match lists entity tags (or "*"); weak comparison.
        tags = [
            tag.strip().removeprefix("W/")
            for tag in request.headers.get("If-None-Match", "").split(",")
        ]
        if found.etag in tags or "*" in tags:
            return web.Response(status=304, headers=headers)
        headers["Content-Type"] = found.content_type
        return web.Response(body=found.body, headers=headers)

    def file_handler(self, name: str) -> Handler:
        """A handler answering the file ``name`` (e.g. ``index.html`` at ``/``)."""

        async def serve_file(request: web.Request) -> web.StreamResponse:
            return self.answer(request, name)

        return serve_file

    def folder_handler(self, parameter: str = "name") -> Handler:
        """A handler answering the file its route's ``{parameter}`` names."""

        async def serve_named(request: web.Request) -> web.StreamResponse:
            return self.answer(request, request.match_info[parameter])

        return serve_named
