"""Running one aiohttp application on several listening addresses until told to stop."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from collections.abc import Sequence

from aiohttp import web

from geodrop.config import ListenAddress

logger = logging.getLogger(__name__)


async def serve(
    app: web.Application,
    addresses: Sequence[ListenAddress],
    name: str,
    *,
    ssl_context: ssl.SSLContext | None = None,
    reuse_port: bool = False,
) -> None:
    """Serve ``app`` on every address until SIGINT or SIGTERM, then shut down cleanly.

    Args:
        app: the application.
        addresses: where to listen; every one serves the same application.
        name: the server's name in logs and in the ``ready`` line.
        ssl_context: serve HTTPS with this context on every address (plain HTTP if None).
        reuse_port: bind with SO_REUSEPORT, so several processes serving the same
            application share the addresses and the kernel spreads connections among them.
    """
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=5.0)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        for address in addresses:
            site = web.TCPSite(
                runner,
                address.host,
                address.port,
                reuse_address=True,
                reuse_port=reuse_port or None,
                ssl_context=ssl_context,
            )
            await site.start()
        logger.info(
            "%s listening on %s (%s)",
            name,
            ", ".join(str(a) for a in addresses),
            "https" if ssl_context else "http",
        )
        print(f"{name} ready", flush=True)
        await stop.wait()
        logger.info("%s stopping", name)
    finally:
        await runner.cleanup()
