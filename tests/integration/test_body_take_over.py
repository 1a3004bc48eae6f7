"""take_over_body on a real aiohttp server and a real loopback connection.

Taking a body from the connection leans on aiohttp's internals, so it happens only under
the aiohttp releases it was verified with (recvfile.TAKE_OVER_VERIFIED); under any
other, the body is read through aiohttp as usual and the connection stays reusable.
"""

from __future__ import annotations

import asyncio
import io
import os
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from geodrop.fileserver import recvfile

BODY = os.urandom(recvfile.DIRECT_BODY_BYTES + 12345)


async def _receive(request: web.Request) -> web.Response:
    """Takes the body over if it may, then reads the rest of it either way."""
    taken = recvfile.take_over_body(request, room=len(BODY))
    if taken is None:
        body = await request.read()
        return web.json_response({"taken": False, "intact": body == BODY})
    received = bytearray(taken.buffered)
    loop = asyncio.get_running_loop()
    with socket.socket(fileno=os.dup(taken.sock.fileno())) as sock:
        sock.setblocking(False)
        while len(received) < len(BODY) and (chunk := await loop.sock_recv(sock, 1 << 20)):
            received += chunk
    return web.json_response({"taken": True, "intact": bytes(received) == BODY})


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    app = web.Application(client_max_size=len(BODY) * 2)
    app.router.add_put("/body", _receive)
    test_server = TestServer(app, host="127.0.0.1")
    await test_server.start_server()
    try:
        yield test_server
    finally:
        await test_server.close()


async def _put_twice(server: TestServer) -> list[dict[str, bool]]:
    """The answers to two PUTs of the body, one after the other on one session."""
    answers = []
    async with aiohttp.ClientSession() as session:
        for _ in range(2):
            async with session.put(server.make_url("/body"), data=io.BytesIO(BODY)) as response:
                assert response.status == 200
                answers.append(await response.json())
    return answers


def test_the_installed_aiohttp_is_one_the_take_over_was_verified_with() -> None:
    # A newer aiohttp must be verified (this suite's big-body, resume and crash tests)
    # and added to TAKE_OVER_VERIFIED, or big uploads silently lose their fast path.
    assert aiohttp.__version__.startswith(recvfile.TAKE_OVER_VERIFIED)
    assert recvfile.take_over_verified


async def test_a_big_body_is_taken_over_under_a_verified_aiohttp(server: TestServer) -> None:
    answers = await _put_twice(server)
    assert answers == [{"taken": True, "intact": True}] * 2


async def test_under_an_unverified_aiohttp_bodies_are_read_through_it(
    server: TestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recvfile, "take_over_verified", False)
    answers = await _put_twice(server)
    assert answers == [{"taken": False, "intact": True}] * 2
