"""The web client: static pages the directory serves at ``/`` and ``/app/{name}``.

The pages are plain HTML, CSS and JavaScript modules in ``static/`` (no build step at
run time); ``tus.min.js`` is tus-js-client, copied there unmodified from npm by
``make web`` (scripts/build-web.sh). The page talks to the directory (same origin) and,
across origins, to the access units and links, which allow it by CORS.
"""

from __future__ import annotations

import logging
from typing import Final
from urllib.parse import urlsplit

from aiohttp import web

from geodrop.config import ClusterConfig
from geodrop.web.static import StaticFiles

logger = logging.getLogger(__name__)

STATIC_FOLDER: Final = "static"
INDEX: Final = "index.html"
TUS_CLIENT: Final = "tus.min.js"
ASSET_ROUTE: Final = r"/app/{name:[A-Za-z0-9_.-]+}"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def api_origins(config: ClusterConfig) -> list[str]:
    """Every origin the page calls besides its own: access units and links, in config order."""
    origins: list[str] = []
    for region in config.regions:
        for url in [region.access_url, *(link.url for link in region.links)]:
            origin = _origin(url)
            if origin not in origins:
                origins.append(origin)
    return origins


def security_headers(config: ClusterConfig) -> dict[str, str]:
    """Headers of every page answer: a CSP allowing only this cluster, no framing, no referrer.

    Scripts and styles come only from the directory itself (no inline code); the page may
    connect only to the directory, the access units and the links. Downloads are plain
    navigations to signed link URLs, which CSP does not restrict.
    """
    connect = " ".join(["'self'", *api_origins(config)])
    policy = (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src {connect}; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
    return {
        "Content-Security-Policy": policy,
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
    }


def add_routes(app: web.Application, config: ClusterConfig) -> None:
    """Serve the web client: ``GET /`` the page, ``GET /app/{name}`` its scripts and styles."""
    files = StaticFiles("geodrop.directory", STATIC_FOLDER, security_headers(config))
    if TUS_CLIENT not in files.files:
        # The page still loads and says what is missing; uploads need it.
        logger.warning("web client: %s is missing; run `make web` to fetch it", TUS_CLIENT)
    app.router.add_get("/", files.file_handler(INDEX))
    app.router.add_get(ASSET_ROUTE, files.folder_handler("name"))
