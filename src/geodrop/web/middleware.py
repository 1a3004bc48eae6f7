"""The one place errors become HTTP responses, and every request gets an id."""

from __future__ import annotations

import contextvars
import json
import logging
import secrets
from typing import Any, Final

from aiohttp import web
from aiohttp.typedefs import Handler

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


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into ``{"error": {"code", "message", "request_id"}}`` with the right
    status (the request id is the access-log middleware's, or a new one without it)."""
    token = request_id.set(secrets.token_hex(8)) if request_id.get() == "-" else None
    try:
        response = await handler(request)
    except GeodropError as exc:
        response = error_response(exc.status, exc.code, exc.message, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _AIOHTTP_CODES.get(exc.status, "http_error")
        response = error_response(exc.status, code, exc.reason, _kept_headers(exc))
    except ConnectionError as exc:
        # The client went away mid-request (a dropped PATCH is normal for resumable
        # uploads); what reached storage is kept, and nobody is left to answer.
        logger.info("client disconnected during %s %s: %s", request.method, request.path, exc)
        response = error_response(400, "client_disconnected", "the connection was lost")
    except Exception:
        logger.exception("unhandled error in %s %s", request.method, request.path)
        response = error_response(500, "internal", "internal server error")
    finally:
        if token is not None:
            request_id.reset(token)
    if not response.prepared:
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def _kept_headers(exc: web.HTTPException) -> dict[str, str]:
    return {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
