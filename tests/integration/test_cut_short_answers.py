"""A handler that fails after its answer's head went out, on a real aiohttp server.

No second answer may follow a head already sent: the front door closes the connection,
so the client sees the body cut short (fewer bytes than its Content-Length, or a chunked
body with no last chunk), and the access log says what was sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import BaseTestServer, TestServer

from geodrop.config import LoggingConfig
from geodrop.web.accesslog import AccessLog, count_body_bytes
from geodrop.web.cors import policy_for
from geodrop.web.frontdoor import FrontDoor

PART = b"x" * 100_000
LENGTH = 3 * len(PART)


async def _fails_mid_body(request: web.Request) -> web.StreamResponse:
    """Sends a third of a body, then its storage fails."""
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    if request.query.get("framing") == "length":
        response.content_length = LENGTH
    await response.prepare(request)
    await response.write(PART)
    count_body_bytes(request, len(PART))
    raise OSError("the disk went away")


@pytest.fixture
async def server() -> AsyncIterator[BaseTestServer]:
    app = web.Application()
    FrontDoor(AccessLog(LoggingConfig(), ()), policy_for([]), None).install(app)
    app.router.add_get("/body", _fails_mid_body)
    async with TestServer(app, host="127.0.0.1") as test_server:
        yield test_server


async def _everything_sent(server: BaseTestServer, framing: str) -> bytes:
    """What the server sends for one GET on a keep-alive connection, until it closes it
    (a connection kept open fails here: the read times out)."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(f"GET /body?framing={framing} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


@pytest.mark.parametrize("framing", ["length", "chunked"])
async def test_a_body_cut_short_is_never_followed_by_an_error_answer(
    server: BaseTestServer, framing: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    sent = await _everything_sent(server, framing)
    head, _, body = sent.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert sent.count(b"HTTP/1.1 ") == 1  # no error answer inside the body
    if framing == "length":
        assert f"Content-Length: {LENGTH}".encode() in head
        assert body == PART  # and then the connection closed: fewer bytes than announced
    else:
        assert b"Transfer-Encoding: chunked" in head
        assert PART in body
        assert not body.endswith(b"0\r\n\r\n")  # no last chunk: the client sees it cut
    [failure] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "failed after its answer started" in failure.getMessage()
    [line] = [r for r in caplog.records if r.name == "geodrop.access"]
    assert line.access["status"] == 200  # type: ignore[attr-defined]
    assert line.access["bytes"] == len(PART)  # type: ignore[attr-defined]
