"""The front door of both services: the one middleware and the one response hook that
every request passes.

The middleware, for each request, in this order:

1. gives it its id (:func:`~geodrop.web.accesslog.request_id_for`), kept in the
   :data:`~geodrop.web.error_responses.request_id` context variable while it runs;
2. answers a CORS preflight itself (:func:`~geodrop.web.cors.preflight_answer`), before
   rate limits, routing or tus handling see it;
3. counts it against its address's and user's request rates
   (:class:`~geodrop.web.request_limits.RequestRateLimit`);
4. runs its handler; every failure, a refused rate included, becomes the JSON error of
   DESIGN.md §7 (:func:`~geodrop.web.error_responses.answer_to_error`), unless the
   handler had started its answer (a download, an event stream): no second answer may
   follow a head already sent, so the connection is closed and the client sees the
   body cut short (:func:`~geodrop.web.error_responses.log_cut_short`), or unless the
   client went away before any answer (its connection failed while the body was
   read): its connection is ended, nobody being left to read an answer; an answer the
   handler did not send itself gets ``Cache-Control: no-store`` unless it says otherwise,
   and the fixed headers of its path (tus's ``Tus-Resumable`` under ``/tus``, the
   served-content headers under ``/blobs``), errors included; and ``Connection: close``
   if the handler left the connection unable to carry another request
   (:data:`CLOSES_CONNECTION`);
5. writes its access-log line once the answer is known
   (:class:`~geodrop.web.accesslog.AccessLog`), redirects raised as exceptions and
   clients gone mid-request included. As nginx logs them: a client gone before any
   answer with 499, an answer cut short with the status it was sent with and the body
   bytes that went out.

The hook (``on_response_prepare``) runs on every answer just before its headers go out,
answers a handler streamed itself included: it names the request (``X-Request-Id``) and
adds the CORS headers and ``Vary: Origin`` (:func:`~geodrop.web.cors.add_response_headers`).

Why one middleware: as five aiohttp middlewares and two hooks, with the locate's own
latency metric, these steps made a locate request cost 1.76x the instructions of a bare
aiohttp JSON handler (callgrind, 16 connections: 402k a request vs 228k); as one, with
the client's address and its text worked out once per request and rate-limit buckets
swept for idle ones at most once a second, 1.60x (365k).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from geodrop.errors import GeodropError
from geodrop.protocol.cors import CorsPolicy
from geodrop.web.accesslog import (
    CLIENT_CLOSED,
    REQUEST_ID,
    AccessLog,
    cut_short_bytes,
    request_id_for,
    response_bytes,
)
from geodrop.web.cors import add_response_headers, preflight_answer
from geodrop.web.error_responses import (
    REQUEST_ID_HEADER,
    answer_to_error,
    log_cut_short,
    log_lost_client,
    request_id,
)
from geodrop.web.request_limits import RequestRateLimit

PathHeaders = tuple[str, Mapping[str, str]]
"""Headers every answer under a path prefix carries, unless the handler set its own."""

CLOSES_CONNECTION: Final = web.RequestKey("geodrop_closes_connection", bool)
"""Request key a handler sets when the connection can carry no other request after this
one (it read the body past aiohttp): the answer, an error included, closes it."""

ANSWER_STARTED: Final = web.RequestKey("geodrop_answer_started", web.StreamResponse)
"""Request key the response hook sets: the answer whose head is going out."""


class FrontDoor:
    """What every request of one service passes through (see the module docstring).

    Args:
        access_log: writes the access-log lines.
        cors_policy: the origins whose pages may call the service.
        rate_limit: the per-address and per-user request rates (None: no limits).
        path_headers: fixed headers of the answers under some path prefixes.
    """

    __slots__ = ("_access_log", "_cors_policy", "_path_headers", "_rate_limit")

    def __init__(
        self,
        access_log: AccessLog,
        cors_policy: CorsPolicy,
        rate_limit: RequestRateLimit | None,
        path_headers: Sequence[PathHeaders] = (),
    ) -> None:
        self._access_log = access_log
        self._cors_policy = cors_policy
        self._rate_limit = rate_limit
        self._path_headers = tuple(path_headers)

    def install(self, app: web.Application) -> None:
        """Put the front door before every handler of ``app`` (before it starts)."""
        app.middlewares.append(self.middleware())
        app.on_response_prepare.append(self.prepare)

    def middleware(self) -> Middleware:
        """The middleware (see the module docstring)."""
        access_log = self._access_log
        cors_policy = self._cors_policy
        rate_limit = self._rate_limit
        path_headers = self._path_headers

        @web.middleware
        async def front_door(request: web.Request, handler: Handler) -> web.StreamResponse:
            rid = request_id_for(request.headers.get(REQUEST_ID_HEADER))
            request[REQUEST_ID] = rid
            token = request_id.set(rid)
            started = time.perf_counter()
            link = access_log.link(request)
            status, nbytes = 500, 0
            failure: _FailureAnswer | None = None
            try:
                preflight = None
                if request.method == "OPTIONS":
                    preflight = preflight_answer(cors_policy, request)
                if preflight is not None:
                    response: web.StreamResponse = preflight
                else:
                    try:
                        if rate_limit is not None:
                            rate_limit.check(request)
                        response = await handler(request)
                    except web.HTTPException as exc:
                        if exc.status < 400:
                            raise
                        failure = _answer_to_failure(request, exc)
                        response = failure.response
                    except Exception as exc:
                        failure = _answer_to_failure(request, exc)
                        response = failure.response
                    if not response.prepared:
                        _add_fixed_headers(request, response, path_headers)
                        if request.get(CLOSES_CONNECTION):
                            response.force_close()
                if failure is not None:
                    status, nbytes = failure.status, failure.nbytes
                else:
                    status = response.status
                    if access_log.enabled:
                        nbytes = response_bytes(request, response)
                return response
            except web.HTTPException as exc:
                # Redirects are raised; aiohttp sends them after this returns.
                status = exc.status
                nbytes = len(exc.body) if isinstance(exc.body, bytes) else 0
                raise
            except BaseException as exc:
                answer: web.StreamResponse | None = request.get(ANSWER_STARTED)
                if answer is not None:  # e.g. cancelled while its body went out
                    status, nbytes = answer.status, cut_short_bytes(request)
                else:
                    closed = isinstance(exc, ConnectionError | asyncio.CancelledError)
                    status = CLIENT_CLOSED if closed else 500
                raise
            finally:
                if access_log.enabled:
                    access_log.write(rid, request, link, status, nbytes, started)
                request_id.reset(token)

        return front_door

    async def prepare(self, request: web.BaseRequest, response: web.StreamResponse) -> None:
        """The ``on_response_prepare`` hook (see the module docstring)."""
        rid = request.get(REQUEST_ID)
        if rid is not None:  # None: an answer aiohttp made before the front door saw it
            response.headers[REQUEST_ID_HEADER] = rid
        add_response_headers(self._cors_policy, request, response)
        request[ANSWER_STARTED] = response


@dataclass(frozen=True, slots=True)
class _FailureAnswer:
    """The answer to a handler's failure, and what its access-log line says of it."""

    response: web.StreamResponse
    status: int  # the line's status
    nbytes: int  # the line's body bytes


def _answer_to_failure(request: web.Request, exc: Exception) -> _FailureAnswer:
    """The answer to a handler's failure.

    The JSON error, logged with its status; unless the handler had started its answer.
    Then that answer stands, cut short: its connection is closed, so that neither an
    error's head nor the end of a chunked body can follow what was sent. A client gone
    before any answer (its connection failed while the body was read) is logged as
    nginx logs it, 499, and its connection ended: nobody is left to read an answer.
    """
    started: web.StreamResponse | None = request.get(ANSWER_STARTED)
    if started is not None:
        log_cut_short(request, exc)
        _end_connection(request, started)
        return _FailureAnswer(started, started.status, cut_short_bytes(request))
    if isinstance(exc, ConnectionError) and not isinstance(exc, GeodropError):
        log_lost_client(request, exc)
        unsent = web.Response(status=CLIENT_CLOSED)  # aiohttp needs one; it never goes out
        _end_connection(request, unsent)
        return _FailureAnswer(unsent, CLIENT_CLOSED, 0)
    response = answer_to_error(request, exc)
    return _FailureAnswer(response, response.status, response_bytes(request, response))


def _end_connection(request: web.Request, response: web.StreamResponse) -> None:
    """Close the request's connection now: nothing more of ``response`` goes out."""
    response.force_close()
    if request.transport is not None:
        request.transport.close()


def _add_fixed_headers(
    request: web.Request, response: web.StreamResponse, path_headers: tuple[PathHeaders, ...]
) -> None:
    """``Cache-Control: no-store`` and the path's fixed headers, where the handler set none."""
    headers = response.headers
    headers.setdefault("Cache-Control", "no-store")
    path = request.path
    for prefix, fixed in path_headers:
        if path.startswith(prefix):
            for name, value in fixed.items():
                headers.setdefault(name, value)
