"""Tests of request ids, the access log and its formats, on mocked requests (no sockets)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from aiohttp.typedefs import Handler, Middleware

from geodrop.config import LoggingConfig
from geodrop.errors import BodyStalled, NotFound
from geodrop.web.accesslog import CLIENT_CLOSED, AccessLog, request_id_for
from geodrop.web.cors import policy_for
from geodrop.web.error_responses import request_id
from geodrop.web.frontdoor import FrontDoor
from geodrop.web.logformat import TEXT_FORMAT, AccessLines, JsonLineFormatter, RequestIdFilter

SIGNED = "/tus/north.abc?u=alice&exp=1700000000&sig=SECRET-SIGNATURE"


def _front_door(config: LoggingConfig, link: str | None = None) -> Middleware:
    """The servers' front door (no rate limits), with the given access log."""
    access_log = AccessLog(config, (), (lambda request: link) if link else None)
    return FrontDoor(access_log, policy_for([]), None).middleware()


def _chain(config: LoggingConfig, handler: Handler, link: str | None = None) -> Handler:
    """``handler`` behind the front door."""
    front_door = _front_door(config, link)

    async def answer(request: web.Request) -> web.StreamResponse:
        return await front_door(request, handler)

    return answer


async def _not_found(request: web.Request) -> web.StreamResponse:
    raise NotFound("no such upload")


def _access_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "geodrop.access"]


@pytest.mark.parametrize("header", ["abc", "A1._:-z", "x" * 64, "0123456789abcdef"])
def test_a_sane_request_id_is_kept(header: str) -> None:
    assert request_id_for(header) == header


@pytest.mark.parametrize(
    "header", [None, "", "x" * 65, "two words", "-lead", ".lead", 'q"uote', "tab\t", "é"]
)
def test_any_other_request_id_is_replaced_by_a_new_one(header: str | None) -> None:
    made = request_id_for(header)
    assert made != header
    assert len(made) == 16
    assert int(made, 16) >= 0
    assert request_id_for(header) != made


async def test_an_error_and_its_access_line_carry_the_same_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="geodrop.access")
    handler = _chain(LoggingConfig(format="json"), _not_found, link="telecom")
    request = make_mocked_request("PATCH", SIGNED, headers={"X-Request-Id": "given-1"})
    response = await handler(request)
    assert isinstance(response, web.Response)
    assert response.status == 404
    assert isinstance(response.body, bytes)
    body = json.loads(response.body)
    assert body["error"] == {
        "code": "not_found",
        "message": "no such upload",
        "request_id": "given-1",
    }
    [line] = _access_lines(caplog)
    fields = line.access  # type: ignore[attr-defined]
    assert fields["path"] == "/tus/north.abc"
    assert (fields["method"], fields["status"], fields["link"]) == ("PATCH", 404, "telecom")
    assert fields["bytes"] == len(response.body)
    assert fields["user"] is None
    assert "SECRET" not in line.getMessage()
    assert request_id.get() == "-"  # reset once the request is over


async def test_the_path_is_logged_as_sent_so_no_line_can_be_forged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="geodrop.access")
    handler = _chain(LoggingConfig(), _not_found)
    await handler(make_mocked_request("GET", "/v1/files/x%0A2026-01-01%20fake%20line?q=%0A"))
    [line] = _access_lines(caplog)
    assert line.access["path"] == "/v1/files/x%0A2026-01-01%20fake%20line"  # type: ignore[attr-defined]
    assert "\n" not in line.getMessage()


async def test_no_line_when_the_access_log_is_off(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="geodrop.access")
    handler = _chain(LoggingConfig(access_log=False), _not_found)
    response = await handler(make_mocked_request("GET", "/v1/locate"))
    assert response.status == 404
    assert _access_lines(caplog) == []


async def test_redirects_and_lost_clients_are_logged_with_their_status(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="geodrop.access")

    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("http://127.1.1.1/blobs/x?sig=SECRET")

    async def lost(request: web.Request) -> web.StreamResponse:
        raise ConnectionResetError("gone")

    async def stalled(request: web.Request) -> web.StreamResponse:
        raise BodyStalled("the body brought no byte for 60 s")

    async def cancelled(request: web.Request) -> web.StreamResponse:
        raise asyncio.CancelledError

    log = _front_door(LoggingConfig())
    with pytest.raises(web.HTTPFound):
        await log(make_mocked_request("GET", "/v1/files/x?access_token=SECRET"), redirect)
    # A client whose connection failed while its body was read is gone: nginx's 499, and
    # its connection is ended (the answer aiohttp is handed never goes out).
    lost_request = make_mocked_request("PATCH", "/tus/x")
    answer = await log(lost_request, lost)
    assert not answer.keep_alive
    lost_request.transport.close.assert_called_once()  # type: ignore[union-attr]
    # A body that stalled is answered (its client may still be there to hear it): 408.
    answer = await log(make_mocked_request("PATCH", "/tus/y"), stalled)
    assert answer.status == 408
    assert isinstance(answer, web.Response)
    assert isinstance(answer.body, bytes)
    assert json.loads(answer.body)["error"]["code"] == "body_stalled"
    assert not answer.keep_alive  # the rest of its body is never read
    with pytest.raises(asyncio.CancelledError):
        await log(make_mocked_request("GET", "/blobs/x"), cancelled)
    lines = [r.access for r in _access_lines(caplog)]  # type: ignore[attr-defined]
    assert [(a["path"], a["status"]) for a in lines] == [
        ("/v1/files/x", 302),
        ("/tus/x", CLIENT_CLOSED),
        ("/tus/y", 408),
        ("/blobs/x", CLIENT_CLOSED),
    ]
    assert lines[1]["bytes"] == 0
    assert all("SECRET" not in r.getMessage() for r in caplog.records)


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord("geodrop.access", logging.INFO, __file__, 1, "GET %s", ("/x",), None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_lines_carry_the_role_the_request_id_and_the_access_fields() -> None:
    token = request_id.set("rid-7")
    try:
        record = _record(access={"method": "GET", "status": 200, "user": None})
        assert RequestIdFilter().filter(record)
    finally:
        request_id.reset(token)
    line = json.loads(JsonLineFormatter("fileserver-north").format(record))
    assert line["ts"].endswith("Z")
    assert (line["level"], line["role"], line["logger"]) == (
        "INFO",
        "fileserver-north",
        "geodrop.access",
    )
    assert (line["request_id"], line["message"]) == ("rid-7", "GET /x")
    assert (line["method"], line["status"], line["user"]) == ("GET", 200, None)


def test_text_lines_name_the_role_and_the_request() -> None:
    record = _record(request_id="rid-8")
    text = logging.Formatter(TEXT_FORMAT.format(role="directory")).format(record)
    assert text.endswith("directory INFO [rid-8] geodrop.access: GET /x")


def test_direct_text_lines_look_like_the_handlers_lines() -> None:
    stream = io.StringIO()
    AccessLines("directory", json_format=False, stream=stream)("rid-9", "GET /x", {})
    record = _record(request_id="rid-9")
    expected = logging.Formatter(TEXT_FORMAT.format(role="directory")).format(record)
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
    rest = r" directory INFO \[rid-9\] geodrop.access: GET /x"
    assert re.fullmatch(stamp + rest + "\n", stream.getvalue())
    assert re.fullmatch(stamp + rest, expected)


def test_direct_json_lines_carry_the_same_keys_as_the_formatter() -> None:
    stream = io.StringIO()
    fields = {"method": "GET", "status": 200, "user": "alice"}
    AccessLines("fileserver-east", json_format=True, stream=stream)("rid-3", "GET /x", fields)
    line = json.loads(stream.getvalue())
    record = _record(request_id="rid-3", access=fields)
    formatted = json.loads(JsonLineFormatter("fileserver-east").format(record))
    assert line.keys() == formatted.keys()
    assert {k: v for k, v in line.items() if k != "ts"} == {
        k: v for k, v in formatted.items() if k != "ts"
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["ts"])


class _CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


async def test_lines_of_one_loop_turn_are_written_together_after_it() -> None:
    stream = _CountingStream()
    lines = AccessLines("directory", json_format=False, stream=stream)
    for n in range(5):
        lines(f"rid-{n}", f"GET /{n}", {})
    assert stream.getvalue() == ""  # not yet: the turn is not over
    await asyncio.sleep(0)
    assert stream.writes == 1
    assert [line.rsplit(" ", 1)[-1] for line in stream.getvalue().splitlines()] == [
        f"/{n}" for n in range(5)
    ]
