"""Reading JSON request bodies with clear errors."""

from __future__ import annotations

import json
from typing import Any, Final

from aiohttp import web

from geodrop.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

MAX_JSON_BYTES: Final = 64 * 1024


def parse_json_object(body: bytes) -> dict[str, Any]:
    """Parse ``body`` as a JSON object.

    Raises:
        BadRequest: not valid JSON, or not an object.
    """
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("the body is not valid JSON") from None
    if not isinstance(value, dict):
        raise BadRequest("the body must be a JSON object")
    return value


async def json_object(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body.

    Raises:
        UnsupportedMediaType: the body is not declared as application/json (415).
        PayloadTooLarge: the body is over 64 KiB (413).
        BadRequest: not valid JSON, or not an object (400).
    """
    if request.content_type != "application/json":
        raise UnsupportedMediaType("send the body as application/json")
    if request.content_length is not None and request.content_length > MAX_JSON_BYTES:
        raise PayloadTooLarge("JSON bodies are limited to 64 KiB")
    body = await request.content.read(MAX_JSON_BYTES + 1)
    if len(body) > MAX_JSON_BYTES:
        raise PayloadTooLarge("JSON bodies are limited to 64 KiB")
    return parse_json_object(body)
