"""CORS: which browser origins may call geodrop, and what to answer them (pure).

The rules are the Fetch standard's CORS protocol (https://fetch.spec.whatwg.org/#http-cors-protocol).
A browser page on another origin (the web client is served by the directory; the access
units and links are other origins) may read an answer only if it carries
``Access-Control-Allow-Origin`` naming the page's origin, and may send a non-simple
request (PATCH, ``Authorization``, ``Tus-Resumable`` …) only after a preflight
``OPTIONS`` whose answer allows that method and those headers. Response headers other
than the CORS-safelisted ones are hidden from the page unless exposed: tus-js-client
must read ``Location`` and ``Upload-Offset``, a Range download ``Content-Range``.

CORS is not access control: a refused origin only keeps a browser page from reading the
answer. Tokens and signed URLs protect the data; CORS keeps other sites' pages from
using a signed-in user's browser as a client.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

ALLOWED_METHODS: Final = ("GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS")
# What tus-js-client, a Range download and the web client's own requests send.
ALLOWED_HEADERS: Final = (
    "Authorization",
    "Content-Type",
    "Accept",
    "Last-Event-ID",
    "Tus-Resumable",
    "Upload-Length",
    "Upload-Offset",
    "Upload-Metadata",
    "Upload-Checksum",
    "Upload-Concat",
    "Upload-Defer-Length",
    "Range",
    "If-Range",
    "X-HTTP-Method-Override",
)
# What a page may read beyond the safelisted response headers.
EXPOSED_HEADERS: Final = (
    "Location",
    "Upload-Offset",
    "Upload-Length",
    "Upload-Metadata",
    "Tus-Resumable",
    "Tus-Version",
    "Tus-Extension",
    "Tus-Max-Size",
    "Upload-Expires",
    "Content-Range",
    "Content-Length",
    "Content-Disposition",
    "Accept-Ranges",
    "ETag",
    "Retry-After",
)
# How long a browser may reuse a preflight answer (Chromium caps it at 2 hours): one
# preflight per signed upload URL and not one per tus PATCH.
MAX_AGE_SECONDS: Final = 600


@dataclass(frozen=True, slots=True)
class CorsPolicy:
    """The origins allowed to call a service from a browser, and what they may do."""

    origins: frozenset[str]
    methods: tuple[str, ...] = ALLOWED_METHODS
    allow_headers: tuple[str, ...] = ALLOWED_HEADERS
    expose_headers: tuple[str, ...] = EXPOSED_HEADERS
    max_age: int = MAX_AGE_SECONDS

    def allows(self, origin: str | None) -> bool:
        """Whether a page of ``origin`` (an ``Origin`` header's value) may read answers.

        Origins are compared as the browser serializes them (RFC 6454 §6.2), exactly:
        the configuration normalizes the allowed ones the same way.
        """
        return origin is not None and origin in self.origins


@dataclass(frozen=True, slots=True)
class Preflight:
    """The answer to a preflight: allowed (with its headers) or refused (with why)."""

    allowed: bool
    headers: dict[str, str]
    reason: str = ""


def policy_for(origins: Iterable[str], extra_exposed: Iterable[str] = ()) -> CorsPolicy:
    """A policy allowing ``origins``, exposing also ``extra_exposed`` (e.g. a request-id header)."""
    exposed = EXPOSED_HEADERS + tuple(h for h in extra_exposed if h not in EXPOSED_HEADERS)
    return CorsPolicy(origins=frozenset(origins), expose_headers=exposed)


def is_preflight(method: str, headers: Mapping[str, str]) -> bool:
    """A CORS preflight: ``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``.

    A plain ``OPTIONS`` (tus discovery, say) lacks the latter and is not one.
    """
    return (
        method == "OPTIONS" and "Origin" in headers and "Access-Control-Request-Method" in headers
    )


def _header_names(value: str | None) -> list[str]:
    if not value:
        return []
    return [name.strip() for name in value.split(",") if name.strip()]


def preflight(
    policy: CorsPolicy,
    origin: str | None,
    requested_method: str | None,
    requested_headers: str | None,
) -> Preflight:
    """Decide a preflight request.

    Args:
        policy: what is allowed.
        origin: the ``Origin`` header.
        requested_method: ``Access-Control-Request-Method``.
        requested_headers: ``Access-Control-Request-Headers`` (comma-separated, any case).

    Returns:
        Allowed, with ``Access-Control-Allow-*`` headers listing everything the policy
        allows (so one cached answer serves every request of the page); or refused, with
        no CORS header at all (the browser then refuses the real request) and the reason.
    """
    if not policy.allows(origin):
        return Preflight(False, {}, f"origin {origin or '(none)'} is not allowed")
    assert origin is not None  # for mypy: allows() is False for None
    if requested_method not in policy.methods:
        return Preflight(False, {}, f"method {requested_method} is not allowed")
    allowed = {name.lower() for name in policy.allow_headers}
    refused = [name for name in _header_names(requested_headers) if name.lower() not in allowed]
    if refused:
        return Preflight(False, {}, f"header {refused[0]} is not allowed")
    return Preflight(
        True,
        {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": ", ".join(policy.methods),
            "Access-Control-Allow-Headers": ", ".join(policy.allow_headers),
            "Access-Control-Max-Age": str(policy.max_age),
        },
    )


def response_headers(policy: CorsPolicy, origin: str | None) -> dict[str, str]:
    """The CORS headers of an actual (non-preflight) answer to a page of ``origin``.

    Empty for a request without ``Origin`` or from an origin not allowed. No
    ``Access-Control-Allow-Credentials``: geodrop's credentials are bearer tokens and
    signed URLs, never cookies.
    """
    if not policy.allows(origin):
        return {}
    assert origin is not None
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Expose-Headers": ", ".join(policy.expose_headers),
    }


def vary_with_origin(vary: str | None) -> str:
    """A ``Vary`` value that includes ``Origin`` (the answer depends on it for caches).

    RFC 9110 §12.5.5: a list of field names, case-insensitive; ``*`` already covers it.
    """
    names = _header_names(vary)
    if any(name == "*" or name.lower() == "origin" for name in names):
        return ", ".join(names)
    return ", ".join([*names, "Origin"])
