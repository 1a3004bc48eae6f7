"""CORS for both services: preflights answered up front, CORS headers on every answer.

The decisions are :mod:`geodrop.protocol.cors`; this module puts them on aiohttp.
Two hooks, because answers leave a server two ways:

- :func:`preflight_middleware`, outermost, answers a CORS preflight before routing,
  rate limits or tus handling see it (``OPTIONS /tus`` without
  ``Access-Control-Request-Method`` still reaches tus discovery).
- :func:`install` adds an ``on_response_prepare`` hook: it runs on every answer just
  before its headers go out, so errors from any middleware, redirects raised as
  exceptions and streamed answers a handler prepared itself (blob downloads, the inbox
  event stream) all carry ``Access-Control-Allow-Origin`` and ``Vary: Origin``.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from geodrop.protocol import cors
from geodrop.web.middleware import REQUEST_ID_HEADER, error_response


def policy_for(origins: Iterable[str]) -> cors.CorsPolicy:
    """The policy of a service allowing ``origins`` (``ClusterConfig.allowed_origins``)."""
    return cors.policy_for(origins, extra_exposed=[REQUEST_ID_HEADER])


def preflight_middleware(policy: cors.CorsPolicy) -> Middleware:
    """A middleware answering CORS preflights: 204 when allowed, else 403 with the reason."""

    @web.middleware
    async def answer_preflight(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not cors.is_preflight(request.method, request.headers):
            return await handler(request)
        decision = cors.preflight(
            policy,
            request.headers.get("Origin"),
            request.headers.get("Access-Control-Request-Method"),
            request.headers.get("Access-Control-Request-Headers"),
        )
        if not decision.allowed:
            return error_response(403, "forbidden", f"CORS preflight refused: {decision.reason}")
        return web.Response(status=204, headers={**decision.headers, "Cache-Control": "no-store"})

    return answer_preflight


def install(app: web.Application, policy: cors.CorsPolicy) -> None:
    """Give every answer of ``app`` its CORS headers (see the module docstring)."""

    async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
        # Most requests come without Origin (no browser page): nothing to decide then.
        origin = request.headers.get("Origin")
        # A preflight's answer has the headers its decision gave it (none when refused).
        if origin is not None and not cors.is_preflight(request.method, request.headers):
            for name, value in cors.response_headers(policy, origin).items():
                response.headers.setdefault(name, value)
        vary = response.headers.get("Vary")
        response.headers["Vary"] = "Origin" if vary is None else cors.vary_with_origin(vary)

    app.on_response_prepare.append(add_headers)
