"""Request ids and the access log: one line per request, on every server.

The outermost middleware gives each request its id (a sane ``X-Request-Id`` from the
client or a proxy is kept, anything else replaced), keeps it in the
:data:`~geodrop.web.middleware.request_id` context variable for every log line the
request writes, sends it back as ``X-Request-Id`` (error bodies carry it too), and
writes the request's access-log line when it is over.

The line never carries a query string: signed transfer URLs and ``access_token``
carry their secrets there.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import secrets
import time
from collections.abc import Callable
from typing import Any, Final, Protocol

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from geodrop.config import LoggingConfig, Network
from geodrop.errors import GeodropError
from geodrop.geo.clientip import address_text
from geodrop.web.auth import request_client_ip, verified_user
from geodrop.web.middleware import REQUEST_ID_HEADER, request_id

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


async def send_request_id(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """``on_response_prepare`` signal: every answer, streamed ones too, names its request."""
    rid = request.get(REQUEST_ID)
    if rid is not None:
        response.headers[REQUEST_ID_HEADER] = rid


def _response_bytes(request: web.Request, response: web.StreamResponse) -> int:
    """Body bytes of an answer: its Content-Length, else what aiohttp's writer counted."""
    if request.method == "HEAD" or response.status in _BODILESS_STATUSES:
        return 0
    if response.content_length is not None:
        return response.content_length
    return response.body_length


def access_log_middleware(
    config: LoggingConfig,
    trusted_proxies: tuple[Network, ...],
    link_of: Callable[[web.Request], str | None] | None = None,
) -> Middleware:
    """The outermost middleware of a server: request ids, and the access log if enabled.

    Args:
        config: the cluster's ``[logging]`` table (``access_log = false``: ids only).
        trusted_proxies: whose ``X-Forwarded-For`` names the client (as for the rate limit).
        link_of: the link a request arrived on (file servers); None for the directory.
    """

    def client_of(request: web.Request) -> str:
        try:
            return address_text(request_client_ip(request, trusted_proxies))
        except GeodropError:
            return request.remote or "-"

    def write_line(
        rid: str, request: web.Request, link: str | None, status: int, nbytes: int, started: float
    ) -> None:
        # The path as sent, percent-encoded: a decoded %0A could forge a line of text log.
        path = request.rel_url.raw_path
        fields: dict[str, Any] = {
            "method": request.method,
            "path": path,
            "status": status,
            "bytes": nbytes,
            "duration_ms": round((time.perf_counter() - started) * 1000, 3),
            "client_ip": client_of(request),
            "user": verified_user(request),
        }
        if link_of is not None:
            fields["link"] = link
        link_text = f" link={link or '-'}" if link_of is not None else ""
        _sink(
            rid,
            f'{fields["client_ip"]} "{request.method} {path}" {status} {nbytes} '
            f"{fields['duration_ms']:.1f}ms{link_text} user={fields['user'] or '-'}",
            fields,
        )

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        rid = request_id_for(request.headers.get(REQUEST_ID_HEADER))
        request[REQUEST_ID] = rid
        token = request_id.set(rid)
        started = time.perf_counter()
        # Now: once the answer is sent, the connection (and its address) may be gone.
        link = link_of(request) if link_of is not None and config.access_log else None
        status, nbytes = 500, 0
        try:
            response = await handler(request)
            status, nbytes = response.status, _response_bytes(request, response)
            return response
        except web.HTTPException as exc:
            # Redirects travel as exceptions through the inner middlewares.
            status = exc.status
            nbytes = len(exc.body) if isinstance(exc.body, bytes) else 0
            raise
        except BaseException as exc:
            closed = isinstance(exc, ConnectionError | asyncio.CancelledError)
            status = CLIENT_CLOSED if closed else 500
            raise
        finally:
            if config.access_log:
                write_line(rid, request, link, status, nbytes, started)
            request_id.reset(token)

    return middleware
