"""Building and running the directory (the global server)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from functools import partial

from aiohttp import web

from geodrop.config import ClusterConfig
from geodrop.directory import handlers, inbox_handlers, status, webclient
from geodrop.directory.context import DIRECTORY, Directory
from geodrop.directory.health import RegionHealth
from geodrop.directory.inbox import Inboxes
from geodrop.directory.metrics import DIRECTORY_METRICS, DirectoryMetrics
from geodrop.geo.locator import Locator
from geodrop.metadata.backends import open_inbox_store
from geodrop.web import cors
from geodrop.web.accesslog import AccessLog
from geodrop.web.auth import authenticated_user
from geodrop.web.frontdoor import FrontDoor
from geodrop.web.metrics import METRICS_PATH, metrics_handler
from geodrop.web.openapi import spec_handler
from geodrop.web.request_limits import RequestRateLimit
from geodrop.web.serve import serve


def build_directory(config: ClusterConfig) -> Directory:
    """The directory with its locator and inbox store opened."""
    store = open_inbox_store(config.directory.metadata)
    return Directory(
        config=config,
        locator=Locator(config.geo),
        health=RegionHealth(config.region_names, config.directory.heartbeat_timeout_seconds, store),
        inboxes=Inboxes(store),
    )


def build_app(directory: Directory) -> web.Application:
    config = directory.config
    app = web.Application(client_max_size=64 * 1024)
    FrontDoor(
        AccessLog(config.logging, config.geo.trusted_proxies),
        # Pages of other allowed origins may call the directory too (CORS).
        cors.policy_for(config.allowed_origins),
        RequestRateLimit(
            config.limits,
            config.geo.trusted_proxies,
            partial(authenticated_user, keys=config.keys),
        ),
    ).install(app)
    app[DIRECTORY] = directory
    metrics = app[DIRECTORY_METRICS] = DirectoryMetrics(directory)
    app.router.add_get("/v1/locate", handlers.locate)
    app.router.add_get("/v1/files/{file_id}", handlers.file_redirect)
    app.router.add_get("/v1/inbox", inbox_handlers.inbox)
    app.router.add_get("/v1/inbox/events", inbox_handlers.inbox_events)
    app.router.add_get("/v1/regions", handlers.regions)
    app.router.add_post("/v1/peer/heartbeat", handlers.heartbeat)
    app.router.add_post("/v1/peer/inbox", inbox_handlers.add_inbox_entry)
    app.router.add_post("/v1/peer/inbox/entries", inbox_handlers.add_inbox_entries)
    app.router.add_post("/v1/peer/inbox/remove", inbox_handlers.remove_inbox_entries)
    app.router.add_get("/v1/status", status.status)
    status.add_page_routes(app)
    app.router.add_get(METRICS_PATH, metrics_handler(metrics.registry))
    app.router.add_get("/healthz", handlers.health)
    webclient.add_routes(app, config)
    app.router.add_get(
        "/openapi.json", spec_handler("geodrop.directory", directory.config.directory.url)
    )
    app.on_shutdown.append(_release_waiters)
    app.cleanup_ctx.append(_lifecycle)
    return app


async def _release_waiters(app: web.Application) -> None:
    await app[DIRECTORY].inboxes.close_waiters()


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    directory = app[DIRECTORY]
    # What other directory processes sharing the store do reaches this one through these:
    # their inbox entries wake its waiters, their heartbeats count in its region health.
    refresh = min(0.5, directory.config.heartbeat_interval_seconds / 2)
    background = [
        asyncio.create_task(directory.inboxes.listen(), name="inbox notifications"),
        asyncio.create_task(directory.health.keep_fresh(refresh), name="region health"),
    ]
    yield
    for task in background:
        task.cancel()
    await asyncio.gather(*background, return_exceptions=True)
    await directory.inboxes.store.close()
    directory.locator.close()


async def run_directory(config: ClusterConfig) -> None:
    """Serve the directory until SIGINT or SIGTERM (HTTPS when ``tls`` is set)."""
    ssl_context = config.tls.server_context() if config.tls else None
    directory = build_directory(config)
    await serve(
        build_app(directory),
        [config.directory.listen],
        "directory",
        ssl_context=ssl_context,
        # Several directory processes share the address (config.directory.instances).
        reuse_port=config.directory.instances > 1,
    )
