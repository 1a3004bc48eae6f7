"""Bigger socket reads while a body arrives, on a real aiohttp server over loopback."""

from __future__ import annotations

import io

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer, make_mocked_request

from geodrop.web.bodyreads import BODY_READ_BYTES, larger_reads

BODY = bytes(range(256)) * 16 * 1024  # 4 MiB


async def _body_and_read_sizes(request: web.Request) -> web.Response:
    default = getattr(request.transport, "max_size", None)
    received = bytearray()
    with larger_reads(request):
        during = getattr(request.transport, "max_size", None)
        async for chunk in request.content.iter_any():
            received += chunk
    after = getattr(request.transport, "max_size", None)
    return web.json_response(
        {"default": default, "during": during, "after": after, "intact": received == BODY}
    )


async def test_reads_grow_for_the_body_and_shrink_back_after() -> None:
    app = web.Application()
    app.router.add_put("/", _body_and_read_sizes)
    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as session:
        for _ in range(2):  # the same connection, a second time
            async with session.put(server.make_url("/"), data=io.BytesIO(BODY)) as answer:
                sizes = await answer.json()
            assert sizes["default"] is not None
            assert sizes["default"] < BODY_READ_BYTES
            assert sizes["during"] == BODY_READ_BYTES
            assert sizes["after"] == sizes["default"]
            assert sizes["intact"] is True


class _TransportWithoutReadSize:
    """A transport that has no read-size setting (not asyncio's selector transport)."""

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default


def test_a_transport_without_a_read_size_is_left_alone() -> None:
    transport = _TransportWithoutReadSize()
    request = make_mocked_request("PUT", "/", transport=transport)
    with larger_reads(request):
        assert not hasattr(transport, "max_size")
    assert not hasattr(transport, "max_size")
