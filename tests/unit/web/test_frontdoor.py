"""Tests of geodrop.web.frontdoor on mocked requests (no sockets)."""

from __future__ import annotations

import json

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from aiohttp.typedefs import Handler

from geodrop.config import LoggingConfig
from geodrop.errors import NotFound, Unauthorized
from geodrop.web.accesslog import REQUEST_ID, AccessLog
from geodrop.web.cors import policy_for
from geodrop.web.frontdoor import FrontDoor
from geodrop.web.request_limits import RequestRateLimit
from support.limits import small_limits

PAGE = "https://app.example"
ONE_REQUEST_A_MINUTE = small_limits(requests_per_minute_per_user=1, requests_per_minute_per_ip=1)


def _door(rate_limit: RequestRateLimit | None = None) -> FrontDoor:
    return FrontDoor(
        AccessLog(LoggingConfig(access_log=False), ()),
        policy_for([PAGE]),
        rate_limit,
        path_headers=[("/tus", {"Tus-Resumable": "1.0.0"}), ("/blobs", {"X-Fixed": "yes"})],
    )


async def _through(door: FrontDoor, request: web.Request, handler: Handler) -> web.Response:
    response = await door.middleware()(request, handler)
    assert isinstance(response, web.Response)
    return response


async def _missing(request: web.Request) -> web.StreamResponse:
    raise NotFound("no such thing")


async def _cached(request: web.Request) -> web.StreamResponse:
    return web.Response(text="ok", headers={"Cache-Control": "max-age=60"})


@pytest.mark.parametrize(
    ("path", "fixed"),
    [("/tus/x", {"Tus-Resumable": "1.0.0"}), ("/blobs/x", {"X-Fixed": "yes"}), ("/v1/x", {})],
)
async def test_errors_carry_their_paths_fixed_headers(path: str, fixed: dict[str, str]) -> None:
    answer = await _through(_door(), make_mocked_request("GET", path), _missing)
    assert answer.status == 404
    assert isinstance(answer.body, bytes)
    assert json.loads(answer.body)["error"]["code"] == "not_found"
    assert answer.headers["Cache-Control"] == "no-store"
    for name in ("Tus-Resumable", "X-Fixed"):
        assert answer.headers.get(name) == fixed.get(name)


async def test_a_handlers_own_cache_control_is_kept() -> None:
    answer = await _through(_door(), make_mocked_request("GET", "/v1/x"), _cached)
    assert answer.headers["Cache-Control"] == "max-age=60"


async def test_redirects_pass_through_untouched() -> None:
    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("http://127.1.1.1/blobs/x")

    with pytest.raises(web.HTTPFound):
        await _door().middleware()(make_mocked_request("GET", "/v1/files/x"), redirect)


def _identify(request: web.Request) -> str:
    raise Unauthorized("no users here")


async def test_preflights_are_answered_before_rate_limits() -> None:
    door = _door(RequestRateLimit(ONE_REQUEST_A_MINUTE, (), _identify))
    preflight = {"Origin": PAGE, "Access-Control-Request-Method": "POST"}
    statuses = []
    for _ in range(3):
        request = make_mocked_request("OPTIONS", "/tus", headers=preflight)
        statuses.append((await _through(door, request.clone(remote="192.0.2.1"), _missing)).status)
    for _ in range(2):
        request = make_mocked_request("GET", "/v1/x").clone(remote="192.0.2.1")
        statuses.append((await _through(door, request, _cached)).status)
    assert statuses == [204, 204, 204, 200, 429]


async def test_every_answer_names_its_request_and_varies_by_origin() -> None:
    door = _door()
    request = make_mocked_request("GET", "/v1/x", headers={"Origin": PAGE})
    request[REQUEST_ID] = "rid-1"
    response = web.Response(text="ok", headers={"Vary": "Accept"})
    await door.prepare(request, response)
    assert response.headers["X-Request-Id"] == "rid-1"
    assert response.headers["Vary"] == "Accept, Origin"
    assert response.headers["Access-Control-Allow-Origin"] == PAGE
    other = make_mocked_request("GET", "/v1/x", headers={"Origin": "https://elsewhere.example"})
    refused = web.Response(text="ok")
    await door.prepare(other, refused)
    assert "Access-Control-Allow-Origin" not in refused.headers
    assert "X-Request-Id" not in refused.headers  # aiohttp's own answer, before the door
    assert refused.headers["Vary"] == "Origin"
