"""aiohttp client sessions that appear as a user of a given region and carrier."""

from __future__ import annotations

import aiohttp


def session_from(source_address: str, token: str | None = None) -> aiohttp.ClientSession:
    """A session whose connections come from ``source_address`` (as curl's ``--interface``)."""
    connector = aiohttp.TCPConnector(local_addr=(source_address, 0), force_close=True)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return aiohttp.ClientSession(connector=connector, headers=headers)
