"""The one place errors become HTTP responses, and the request id they carry.

:func:`answer_to_error` is what the front door (:mod:`geodrop.web.frontdoor`) answers
when a handler fails.
"""

from __future__ import annotations

import contextvars
import json
import logging
from typing import Any, Final

from aiohttp import web

from geodrop.errors import GeodropError

logger = logging.getLogger(__name__)

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

REQUEST_ID_HEADER: Final = "X-Request-Id"


def error_body(code: str, message: str) -> dict[str, Any]:
    """The JSON error of DESIGN.md §7, naming the request (as its access-log line does)."""
    return {"error": {"code": code, "message": message, "request_id": request_id.get()}}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(error_body(code, message)),
        content_type="application/json",
        headers=headers,
    )


_AIOHTTP_CODES: Final = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
}


def answer_to_error(request: web.BaseRequest, exc: Exception) -> web.Response:
    """``{"error": {"code", "message", "request_id"}}`` with the right status for a failure
    (DESIGN.md §7).

    Args:
        request: the request that failed (named in the log of an unexpected error).
        exc: what its handler raised; an :class:`aiohttp.web.HTTPException` of status
            400 or more (a redirect is not an error: the caller lets it through). Not a
            client gone before any answer (a :class:`ConnectionError` that is no
            :class:`~geodrop.errors.GeodropError`): nobody is left to answer, and the
            front door ends its connection instead (:func:`log_lost_client`).
    """
    if isinstance(exc, GeodropError):
        response = error_response(exc.status, exc.code, exc.message, exc.headers)
        if isinstance(exc, ConnectionError):
            # A body that stalled: its rest is never read, so the connection can carry
            # no other request.
            response.force_close()
        return response
    if isinstance(exc, web.HTTPException):
        code = _AIOHTTP_CODES.get(exc.status, "http_error")
        return error_response(exc.status, code, exc.reason, _kept_headers(exc))
    logger.error("unhandled error in %s %s", request.method, request.path, exc_info=exc)
    return error_response(500, "internal", "internal server error")


def log_lost_client(request: web.BaseRequest, exc: ConnectionError) -> None:
    """Log a client that went away mid-request (a dropped PATCH is normal for resumable
    uploads; what reached storage is kept)."""
    logger.info("client disconnected during %s %s: %s", request.method, request.path, exc)


def log_cut_short(request: web.BaseRequest, exc: Exception) -> None:
    """Log a failure that came after the answer's head went out. No error answer can
    follow that head: the front door ends the connection instead, so the client sees
    the body cut short rather than a second answer inside it."""
    if isinstance(exc, ConnectionError):
        log_lost_client(request, exc)
        return
    logger.error(
        "%s %s failed after its answer started; its connection is closed",
        request.method,
        request.path,
        exc_info=exc,
    )


def _kept_headers(exc: web.HTTPException) -> dict[str, str]:
    return {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
