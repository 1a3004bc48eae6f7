"""Building and running one region's file server (access unit + storage unit)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Final

from aiohttp import web

from geodrop.config import ClusterConfig, ListenAddress
from geodrop.fileserver import access_handlers, background, blob_handlers, tus_handlers
from geodrop.fileserver.allocator import keep_freed_buffers
from geodrop.fileserver.context import FILE_SERVER, FileServer
from geodrop.fileserver.links import LinkMeters
from geodrop.fileserver.metrics import FILE_SERVER_METRICS, FileServerMetrics
from geodrop.fileserver.transferurls import arrival_link
from geodrop.geo.locator import Locator
from geodrop.metadata.backends import open_transfer_store
from geodrop.protocol import tus
from geodrop.storage.backends import open_blob_store
from geodrop.web import cors
from geodrop.web.accesslog import AccessLog
from geodrop.web.auth import authenticated_user
from geodrop.web.frontdoor import FrontDoor
from geodrop.web.metrics import METRICS_PATH, metrics_handler
from geodrop.web.openapi import spec_handler
from geodrop.web.peerclient import PeerClient
from geodrop.web.request_limits import RequestRateLimit
from geodrop.web.serve import serve

logger = logging.getLogger(__name__)

RESTART_DELAY_SECONDS: Final = 1.0


def build_file_server(config: ClusterConfig, region_name: str) -> FileServer:
    """The file server of ``region_name``, with its storage and metadata opened.

    Raises:
        KeyError: no such region.
        ConfigError: a geo database cannot be opened.
    """
    region = config.region(region_name)
    return FileServer(
        config=config,
        region=region,
        store=open_blob_store(region.storage),
        transfers=open_transfer_store(region.metadata),
        meters=LinkMeters(region.links),
        locator=Locator(config.geo),
        peers=PeerClient(
            f"region:{region.name}",
            config.keys.peer.encode(),
            ssl_context=config.tls.client_context() if config.tls else None,
        ),
    )


def build_app(server: FileServer) -> web.Application:
    """The aiohttp application serving the access unit and the links."""
    config = server.config
    app = web.Application(client_max_size=64 * 1024)
    FrontDoor(
        AccessLog(config.logging, config.geo.trusted_proxies, partial(arrival_link, server)),
        # The web client (another origin) negotiates, uploads by tus and downloads here.
        cors.policy_for(config.allowed_origins),
        RequestRateLimit(
            config.limits,
            config.geo.trusted_proxies,
            partial(authenticated_user, keys=config.keys),
        ),
        path_headers=[
            # Every answer on a tus path, errors included, says which tus version it speaks.
            (tus_handlers.TUS_PATH_PREFIX, {"Tus-Resumable": tus.TUS_VERSION}),
            (blob_handlers.BLOB_PATH_PREFIX, blob_handlers.SERVED_CONTENT_HEADERS),
        ],
    ).install(app)
    app[FILE_SERVER] = server
    metrics = app[FILE_SERVER_METRICS] = FileServerMetrics(server)
    app.router.add_post("/v1/uploads", access_handlers.negotiate_upload)
    app.router.add_post("/v1/downloads", access_handlers.negotiate_download)
    app.router.add_get("/v1/files/{file_id}", access_handlers.download_redirect)
    app.router.add_get("/v1/files/{file_id}/status", access_handlers.file_status)
    app.router.add_post("/v1/peer/download-address", access_handlers.peer_download_address)
    app.router.add_post("/v1/peer/status", access_handlers.peer_file_status)
    app.router.add_get("/v1/status", access_handlers.status)
    app.router.add_get("/healthz", access_handlers.health)
    app.router.add_get(METRICS_PATH, metrics_handler(metrics.registry, metrics.refresh))
    app.router.add_get(
        "/openapi.json", spec_handler("geodrop.fileserver", server.region.access_url)
    )
    app.router.add_route("OPTIONS", "/tus", tus_handlers.options)
    app.router.add_route("OPTIONS", "/tus/{upload_id}", tus_handlers.options)
    app.router.add_post("/tus", tus_handlers.create)
    app.router.add_head("/tus/{upload_id}", tus_handlers.head)
    app.router.add_patch("/tus/{upload_id}", tus_handlers.patch)
    app.router.add_delete("/tus/{upload_id}", tus_handlers.terminate)
    app.router.add_get("/blobs/{file_id}", blob_handlers.blob)  # GET also answers HEAD
    app.cleanup_ctx.append(_background_work)
    return app


async def _supervised(name: str, work: Callable[[], Awaitable[None]]) -> None:
    """Run a background loop forever: an unexpected failure is logged and the loop restarted."""
    while True:
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("background task %s failed; restarting it", name)
            await asyncio.sleep(RESTART_DELAY_SECONDS)


async def _background_work(app: web.Application) -> AsyncIterator[None]:
    server = app[FILE_SERVER]
    loops = {
        "heartbeats": background.heartbeats,
        "announcements": background.announcements,
        "expiry": background.expiry,
        "link loads": background.link_load_sharing,
    }
    tasks = [
        asyncio.create_task(_supervised(name, partial(loop, server)), name=name)
        for name, loop in loops.items()
    ]
    yield
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await server.peers.close()
    await server.transfers.close()
    await server.store.close()
    server.locator.close()


def listen_addresses(server: FileServer) -> list[ListenAddress]:
    addresses = [server.region.listen]
    addresses += [link.listen for link in server.region.links if link.listen not in addresses]
    return addresses


async def run_file_server(config: ClusterConfig, region_name: str) -> None:
    """Serve one region until SIGINT or SIGTERM (HTTPS on every address when ``tls`` is set)."""
    keep_freed_buffers()
    ssl_context = config.tls.server_context() if config.tls else None
    server = build_file_server(config, region_name)
    await serve(
        build_app(server),
        listen_addresses(server),
        f"fileserver {region_name}",
        ssl_context=ssl_context,
        reuse_port=server.region.access_units > 1,
    )
