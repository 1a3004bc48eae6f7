"""CORS for both services, on aiohttp: the decisions are :mod:`geodrop.protocol.cors`.

The front door (:mod:`geodrop.web.frontdoor`) uses both halves:

- :func:`preflight_answer` answers a CORS preflight before routing, rate limits or tus
  handling see it (``OPTIONS /tus`` without ``Access-Control-Request-Method`` still
  reaches tus discovery).
- :func:`add_response_headers` runs on every answer just before its headers go out
  (``on_response_prepare``), so errors, redirects raised as exceptions and streamed
  answers a handler prepared itself (blob downloads, the inbox event stream) all carry
  ``Access-Control-Allow-Origin`` and ``Vary: Origin``.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web

from geodrop.protocol import cors
from geodrop.web.error_responses import REQUEST_ID_HEADER, error_response


def policy_for(origins: Iterable[str]) -> cors.CorsPolicy:
    """The policy of a service allowing ``origins`` (``ClusterConfig.allowed_origins``)."""
    return cors.policy_for(origins, extra_exposed=[REQUEST_ID_HEADER])


def preflight_answer(policy: cors.CorsPolicy, request: web.Request) -> web.Response | None:
    """The answer to a CORS preflight (204 when allowed, else 403 with the reason);
    None for any other request."""
    if not cors.is_preflight(request.method, request.headers):
        return None
    decision = cors.preflight(
        policy,
        request.headers.get("Origin"),
        request.headers.get("Access-Control-Request-Method"),
        request.headers.get("Access-Control-Request-Headers"),
    )
    if not decision.allowed:
        return error_response(403, "forbidden", f"CORS preflight refused: {decision.reason}")
    return web.Response(status=204, headers={**decision.headers, "Cache-Control": "no-store"})


def add_response_headers(
    policy: cors.CorsPolicy, request: web.BaseRequest, response: web.StreamResponse
) -> None:
    """Give an answer its CORS headers and ``Vary: Origin`` (see the module docstring)."""
    # Most requests come without Origin (no browser page): nothing to decide then.
    origin = request.headers.get("Origin")
    # A preflight's answer has the headers its decision gave it (none when refused).
    if origin is not None and not cors.is_preflight(request.method, request.headers):
        for name, value in cors.response_headers(policy, origin).items():
            response.headers.setdefault(name, value)
    vary = response.headers.get("Vary")
    response.headers["Vary"] = "Origin" if vary is None else cors.vary_with_origin(vary)
