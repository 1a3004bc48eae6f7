"""Request ids and the access log: one line per request, on every server.

The front door (:mod:`geodrop.web.frontdoor`) gives each request its id
(:func:`request_id_for`: a sane ``X-Request-Id`` from the client or a proxy is kept,
anything else replaced), keeps it in the
:data:`~geodrop.web.error_responses.request_id` context variable for every log line the
request writes, sends it back as ``X-Request-Id`` (error bodies carry it too), and
writes the request's access-log line (:class:`AccessLog`) when it is over.

The line never carries a query string: signed transfer URLs and ``access_token``
carry their secrets there.
"""

from __future__ import annotations

import itertools
import logging
import re
import secrets
import time
from collections.abc import Callable
from typing import Any, Final, Protocol

from aiohttp import web

from geodrop.config import LoggingConfig, Network
from geodrop.errors import GeodropError
from geodrop.web.auth import request_client_text, verified_user

LOGGER_NAME: Final = "geodrop.access"
access_logger = logging.getLogger(LOGGER_NAME)

# Ids a client or proxy may choose: short, and nothing a log reader could mistake for
# structure (no spaces, quotes, brackets or control characters).
SANE_REQUEST_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}\Z")
# An answer with no body whatever its Content-Length says (RFC 9110 §6.4.1).
_BODILESS_STATUSES: Final = frozenset({204, 304})
# nginx's name for "the client closed the connection before the answer".
CLIENT_CLOSED: Final = 499

REQUEST_ID: Final = web.RequestKey("geodrop_request_id", str)
BODY_BYTES_SENT: Final = web.RequestKey("geodrop_body_bytes_sent", int)
"""Body bytes of a streamed answer sent so far (:func:`count_body_bytes`)."""

# New ids: this process's random prefix and a counter, 16 hex digits. Unique, not
# secret (a random draw per request costs a system call).
_ID_PREFIX: Final = secrets.token_hex(4)
_id_numbers = itertools.count(secrets.randbelow(1 << 24))


class AccessSink(Protocol):
    """Where access-log lines go: the request's id, the line's text and its fields."""

    def __call__(self, rid: str, message: str, fields: dict[str, Any], /) -> None: ...


def _through_logging(rid: str, message: str, fields: dict[str, Any]) -> None:
    access_logger.info("%s", message, extra={"access": fields})


_sink: AccessSink = _through_logging


def set_access_sink(sink: AccessSink) -> None:
    """Send access lines to ``sink`` instead of the ``geodrop.access`` logger (servers
    do, through :func:`geodrop.web.logformat.configure_logging`)."""
    global _sink
    _sink = sink


def request_id_for(header: str | None) -> str:
    """The id of a request: the ``X-Request-Id`` it came with if sane, else a new one."""
    if header is not None and SANE_REQUEST_ID.match(header):
        return header
    return f"{_ID_PREFIX}{next(_id_numbers) & 0xFFFFFFFF:08x}"


def count_body_bytes(request: web.BaseRequest, count: int) -> None:
    """Say ``count`` more bytes of the answer's body were sent: a handler streaming its
    answer does, so that an answer cut short is logged with the bytes that went out."""
    request[BODY_BYTES_SENT] = request.get(BODY_BYTES_SENT, 0) + count


def response_bytes(request: web.Request, response: web.StreamResponse) -> int:
    """Body bytes of an answer: its Content-Length, else what its handler counted
    (:func:`count_body_bytes`), else what aiohttp's writer counted."""
    if request.method == "HEAD" or response.status in _BODILESS_STATUSES:
        return 0
    if response.content_length is not None:
        return response.content_length
    counted: int = request.get(BODY_BYTES_SENT, response.body_length)
    return counted


def cut_short_bytes(request: web.Request) -> int:
    """Body bytes of an answer whose handler failed after its head went out: those its
    handler counted (:func:`count_body_bytes`) before it failed."""
    counted: int = request.get(BODY_BYTES_SENT, 0)
    return counted


class AccessLog:
    """Writes each request's access-log line, if the log is enabled.

    Args:
        config: the cluster's ``[logging]`` table (``access_log = false``: no lines).
        trusted_proxies: whose ``X-Forwarded-For`` names the client (as for the rate limit).
        link_of: the link a request arrived on (file servers); None for the directory.
    """

    __slots__ = ("_link_of", "_trusted_proxies", "enabled")

    def __init__(
        self,
        config: LoggingConfig,
        trusted_proxies: tuple[Network, ...],
        link_of: Callable[[web.Request], str | None] | None = None,
    ) -> None:
        self.enabled = config.access_log
        self._trusted_proxies = trusted_proxies
        self._link_of = link_of

    def link(self, request: web.Request) -> str | None:
        """The link a request arrived on, for its line: taken when the request starts,
        since once the answer is sent the connection (and its address) may be gone."""
        if self._link_of is None or not self.enabled:
            return None
        return self._link_of(request)

    def write(
        self,
        rid: str,
        request: web.Request,
        link: str | None,
        status: int,
        nbytes: int,
        started: float,
    ) -> None:
        """The line of a request answered with ``status`` and ``nbytes`` of body."""
        # The path as sent, percent-encoded: a decoded %0A could forge a line of text log.
        path = request.rel_url.raw_path
        method = request.method
        duration_ms = round((time.perf_counter() - started) * 1000, 3)
        client = self._client_of(request)
        user = verified_user(request)
        fields: dict[str, Any] = {
            "method": method,
            "path": path,
            "status": status,
            "bytes": nbytes,
            "duration_ms": duration_ms,
            "client_ip": client,
            "user": user,
        }
        if self._link_of is None:
            link_text = ""
        else:
            fields["link"] = link
            link_text = f" link={link or '-'}"
        _sink(
            rid,
            f'{client} "{method} {path}" {status} {nbytes} '
            f"{duration_ms:.1f}ms{link_text} user={user or '-'}",
            fields,
        )

    def _client_of(self, request: web.Request) -> str:
        try:
            return request_client_text(request, self._trusted_proxies)
        except GeodropError:
            return request.remote or "-"
