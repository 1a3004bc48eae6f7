"""A region whose file server stops beating is routed around, and comes back when it beats again."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from support.cluster import Cluster, client_address, running_cluster
from support.e2e_flows import locate
from support.http import session_from

pytestmark = pytest.mark.e2e


async def _locate_until(
    session: aiohttp.ClientSession,
    cluster: Cluster,
    region: str,
    match: str,
    seconds: float,
    started: float,
) -> tuple[dict[str, Any], float]:
    """Locate until the answer is ``region``/``match``, at most ``seconds`` after ``started``.

    Returns:
        The answer, and how long after ``started`` it came.
    """
    answer = await locate(session, cluster)
    while (answer["region"], answer["match"]) != (region, match):
        assert time.monotonic() - started < seconds, (
            f"{answer['region']}/{answer['match']} after {seconds} s, not {region}/{match}"
        )
        await asyncio.sleep(0.1)
        answer = await locate(session, cluster)
    return answer, time.monotonic() - started


async def test_region_fallback(tmp_path: Path, layout_options: dict[str, Any]) -> None:
    # A cluster of its own: no other test may see east down. Scaled out, the directory
    # is two processes sharing region health in PostgreSQL.
    with running_cluster(tmp_path, **layout_options) as cluster:
        async with (
            session_from(client_address("east", "mobile")) as east_client,
            session_from(client_address("north", "telecom")) as north_client,
        ):
            home = await locate(east_client, cluster)
            assert (home["region"], home["carrier"], home["match"]) == (
                "east",
                "mobile",
                "override",
            )
            assert home["access_url"] == cluster.access_url("east")

            stopped = time.monotonic()
            await asyncio.to_thread(cluster.stop, "east")
            away, took = await _locate_until(
                east_client, cluster, "north", "fallback", cluster.heartbeat_timeout + 2, stopped
            )
            # Not before the heartbeat timeout could have run out (east's last beat came at
            # most one interval before it was told to stop): one late beat drops no region.
            assert took > cluster.heartbeat_timeout - cluster.heartbeat_interval - 0.5, took
            assert away["access_url"] == cluster.access_url("north")
            assert away["carrier"] == "mobile"
            # The region is still read from the address; only the answer falls back.
            assert away["client_ip"] == client_address("east", "mobile")
            # Other regions' clients do not notice.
            north = await locate(north_client, cluster)
            assert (north["region"], north["match"]) == ("north", "override")

            restarted = time.monotonic()
            await asyncio.to_thread(cluster.start, "east")
            back, _ = await _locate_until(east_client, cluster, "east", "override", 25, restarted)
            assert back["access_url"] == cluster.access_url("east")
