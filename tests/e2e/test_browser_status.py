"""The operator status page in a real Chromium, against a real cluster.

An operator signs in and watches: a slow upload through north's telecom link makes that
link's active count and rate move on the page; stopping east's file server turns east
red, with its clients shown going to its first fallback, within the heartbeat timeout.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from typing import Final

import aiohttp
import pytest
from playwright.async_api import Locator, Page, expect

from support.browser import PHONE, BrowserPages
from support.cluster import user_token
from support.observability import OPERATOR, OperatedCluster, running_operated_cluster
from support.transfer_checks import TUS_VERSION, negotiate_upload, unique_user

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

CHUNK: Final = 16 * 1024
SIZE: Final = 4 * 1024 * 1024
# The slow part of the upload: a chunk this often (about 320 kB/s) until the page has
# shown it, and at most this many chunks, so a page that never shows it fails in time.
CHUNK_INTERVAL: Final = 0.05
MAX_SLOW_CHUNKS: Final = 600
# The page reads /v1/status once a second.
POLL_SECONDS: Final = 1.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatedCluster]:
    with running_operated_cluster(tmp_path_factory.mktemp("status-page")) as running:
        yield running


async def _signed_in(page: Page, cluster: OperatedCluster, summary: str) -> None:
    await page.goto(cluster.directory_url + "/status")
    await page.get_by_label("Operator token").fill(user_token(OPERATOR))
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("status")).to_have_text(summary)


def _region(page: Page, name: str) -> Locator:
    return page.get_by_role("article", name=name)


def _cell(page: Page, region: str, link: str, field: str) -> Locator:
    table = page.get_by_role("table", name=f"Links of {region}")
    return table.locator(f'tr[data-link="{link}"] [data-field="{field}"]')


async def _slow_body(seen: asyncio.Event) -> AsyncIterator[bytes]:
    """The upload's bytes: slowly until ``seen`` is set, then the rest at once."""
    sent = 0
    for _ in range(MAX_SLOW_CHUNKS):
        if seen.is_set():
            break
        yield os.urandom(CHUNK)
        sent += CHUNK
        await asyncio.sleep(CHUNK_INTERVAL)
    while sent < SIZE:
        yield os.urandom(min(CHUNK * 64, SIZE - sent))
        sent += min(CHUNK * 64, SIZE - sent)


async def _patch(url: str, body: AsyncIterator[bytes]) -> int:
    headers = {
        "Tus-Resumable": TUS_VERSION,
        "Upload-Offset": "0",
        "Content-Type": "application/offset+octet-stream",
    }
    async with (
        aiohttp.ClientSession() as session,
        session.patch(url, data=body, headers=headers) as r,
    ):
        await r.read()
        return r.status


async def test_status_page_shows_a_transfer_and_a_region_going_down(
    cluster: OperatedCluster, browser_pages: BrowserPages
) -> None:
    page = await browser_pages.open(OPERATOR)
    await _signed_in(page, cluster, "All 3 regions up")
    north = _region(page, "north")
    await expect(north).to_have_class("region up")
    await expect(north.get_by_text("Up", exact=True)).to_be_visible()
    await expect(_cell(page, "north", "telecom", "active")).to_have_text("0")
    await expect(_cell(page, "north", "telecom", "rate")).to_have_text("0 B/s")

    # A slow upload through north's telecom link.
    upload = await negotiate_upload(cluster, "status-alice", [unique_user("status-bob")], SIZE)
    assert upload.link == "telecom"
    seen = asyncio.Event()
    sending = asyncio.create_task(_patch(upload.url, _slow_body(seen)))
    try:
        await expect(_cell(page, "north", "telecom", "active")).to_have_text("1")
        await expect(_cell(page, "north", "telecom", "rate")).not_to_have_text("0 B/s")
        first_rate = await _cell(page, "north", "telecom", "rate").text_content()
        # The rate keeps moving while bytes flow; the other links stay idle.
        await expect(_cell(page, "north", "telecom", "rate")).not_to_have_text(first_rate or "")
        await expect(_cell(page, "north", "unicom", "active")).to_have_text("0")
        await expect(_cell(page, "north", "mobile", "rate")).to_have_text("0 B/s")
        await browser_pages.screenshot(page, "status-during-upload")
    finally:
        seen.set()
        status = await asyncio.wait_for(sending, timeout=60)
    assert status == 204
    await expect(_cell(page, "north", "telecom", "active")).to_have_text("0")

    # East's file server stops: within the heartbeat timeout (plus one poll) it is red,
    # and its clients go to its first fallback, north.
    east = _region(page, "east")
    await expect(east).to_have_class("region up")
    stopped_at = time.monotonic()
    await asyncio.to_thread(cluster.stop, "east")
    limit_ms = (cluster.heartbeat_timeout + POLL_SECONDS + 2 * cluster.heartbeat_interval) * 1000
    await expect(east).to_have_class("region down", timeout=limit_ms + 2000)
    took = time.monotonic() - stopped_at
    assert took * 1000 < limit_ms, f"east turned red {took:.1f} s after it stopped"
    await expect(east.get_by_text("Down", exact=True)).to_be_visible()
    await expect(east.locator('[data-field="fallback"]')).to_have_text("north (fallback)")
    await expect(page.get_by_role("status")).to_have_text("1 of 3 regions down: east → north")
    await expect(_region(page, "north")).to_have_class("region up")
    await browser_pages.screenshot(page, "status-region-down")

    phone = await browser_pages.open(OPERATOR, PHONE, mobile=True)
    await _signed_in(phone, cluster, "1 of 3 regions down: east → north")
    await expect(_region(phone, "east")).to_have_class("region down")
    await browser_pages.screenshot(phone, "status-phone", full_page=True)

    assert browser_pages.page_errors == []
    assert browser_pages.console_errors == []


async def test_a_user_who_is_not_an_operator_is_told_so(
    cluster: OperatedCluster, browser_pages: BrowserPages
) -> None:
    page = await browser_pages.open("alice")
    await page.goto(cluster.directory_url + "/status")
    await page.get_by_label("Operator token").fill(user_token("alice"))
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert").first).to_contain_text("not one of the cluster")
    await expect(page.get_by_label("Operator token")).to_be_visible()
    assert await page.evaluate("sessionStorage.getItem('geodrop.operatorToken')") is None
