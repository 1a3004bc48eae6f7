"""HTTP details shared by the client's modules."""

from __future__ import annotations

import contextlib

import aiohttp

from geodrop.errors import error_for_status


async def raise_for_error(answer: aiohttp.ClientResponse) -> None:
    """Raise the :class:`GeodropError` a failed response stands for."""
    if answer.status < 400:
        return
    message = f"{answer.method} {answer.url.path} answered {answer.status}"
    with contextlib.suppress(ValueError, aiohttp.ContentTypeError):
        body = await answer.json()
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            message = str(body["error"].get("message", message))
    raise error_for_status(answer.status, message)
