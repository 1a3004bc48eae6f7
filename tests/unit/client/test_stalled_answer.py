"""A PATCH answered 408 (its body stalled at the server) is a network failure to the
client, so the upload resumes from the server's offset instead of failing for good."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, cast

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from geodrop.client import _tus
from geodrop.errors import BodyStalled, NetworkError, error_for_status
from geodrop.web.error_responses import error_response

if TYPE_CHECKING:
    from geodrop.client._client import Client


def test_408_stands_for_a_body_that_stalled() -> None:
    error = error_for_status(408, "the body brought no byte for 60 s")
    assert isinstance(error, BodyStalled)
    assert isinstance(error, ConnectionError)


async def _stalled(request: web.Request) -> web.Response:
    await request.content.readany()
    return error_response(408, "body_stalled", "the body brought no byte for 60 s")


async def test_a_patch_answered_408_is_a_network_failure(tmp_path: Path) -> None:
    data = tmp_path / "data.bin"
    data.write_bytes(b"x" * 1000)
    app = web.Application()
    app.router.add_patch("/tus/u", _stalled)
    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as session:
        client = cast("Client", SimpleNamespace(session=session))
        with pytest.raises(NetworkError, match="no byte for 60 s"):
            await _tus._patch(
                client, str(server.make_url("/tus/u")), data, 0, 0, 1000, lambda done: None
            )
