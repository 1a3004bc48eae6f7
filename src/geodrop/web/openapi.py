"""Serving a service's OpenAPI description at ``GET /openapi.json``.

Each service ships its description as ``openapi.json`` beside its code (package
data); it is read once, when the application is built, and served with
``servers`` naming the URL the service is configured at.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any, Final

from aiohttp import web
from aiohttp.typedefs import Handler

SPEC_FILE: Final = "openapi.json"


def load_spec(package: str) -> dict[str, Any]:
    """The OpenAPI document shipped in ``package`` (e.g. ``geodrop.directory``).

    Raises:
        FileNotFoundError: the package ships no description.
        ValueError: the file is not a JSON object.
    """
    spec = json.loads(resources.files(package).joinpath(SPEC_FILE).read_text(encoding="utf-8"))
    if not isinstance(spec, dict):
        raise ValueError(f"{package}/{SPEC_FILE} is not a JSON object")
    return spec


def spec_handler(package: str, server_url: str) -> Handler:
    """A handler answering ``package``'s OpenAPI document, with ``servers`` set to ``server_url``.

    Args:
        package: The package that ships ``openapi.json``.
        server_url: The URL the service is configured at (``directory.url``, a region's
            ``access_url``).
    """
    spec = load_spec(package)
    spec["servers"] = [{"url": server_url}]
    body = json.dumps(spec, ensure_ascii=False).encode()

    async def openapi(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type="application/json")

    return openapi
