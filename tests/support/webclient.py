"""Driving the web client's page (src/geodrop/directory/static) in the browser tests."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Final

from playwright.async_api import CDPSession, Page, expect

from support.cluster import Cluster, user_token

TUS_CLIENT: Final = Path(__file__).resolve().parents[2] / "src/geodrop/directory/static/tus.min.js"


def require_web_client_build() -> None:
    """The page needs tus-js-client, which `make web` fetches from npm (not in git)."""
    assert TUS_CLIENT.is_file(), "tus-js-client is missing from the web client: run `make web`"


async def sign_in(page: Page, cluster: Cluster, user: str) -> None:
    """Open the web client and sign in as ``user`` with a fresh token."""
    await page.goto(cluster.directory_url + "/")
    await page.get_by_label("User token").fill(user_token(user))
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#who-name")).to_have_text(user)


async def throttle_upload(cdp: CDPSession, bytes_per_second: int) -> None:
    """Chromium's network emulation: uploads at ``bytes_per_second`` (-1: unthrottled)."""
    await cdp.send("Network.enable")
    await cdp.send(
        "Network.emulateNetworkConditions",
        {
            "offline": False,
            "latency": 0,
            "downloadThroughput": -1,
            "uploadThroughput": bytes_per_second,
        },
    )


async def wait_for_progress(page: Page, percent: int, seconds: float) -> None:
    """Wait until the page's upload progress bar reaches ``percent``.

    Polled from here: Playwright's wait_for_function evaluates strings, which the page's
    Content-Security-Policy (no 'unsafe-eval') rightly forbids.
    """
    progress = page.locator("#progress")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while await progress.evaluate("(bar) => bar.value") < percent:
        assert loop.time() < deadline, f"the upload did not reach {percent}% in {seconds} s"
        await asyncio.sleep(0.05)


async def stored_upload_urls(page: Page) -> list[str]:
    """The upload URLs tus-js-client keeps for resuming (its URL storage, in localStorage)."""
    urls = await page.evaluate(
        """() => Object.keys(localStorage)
             .filter((key) => key.startsWith('tus::'))
             .map((key) => JSON.parse(localStorage.getItem(key)).uploadUrl)"""
    )
    assert isinstance(urls, list)
    return [str(url) for url in urls]


async def sent_records(page: Page, user: str) -> list[dict[str, Any]]:
    """The page's list of files ``user`` sent from this browser."""
    text = await page.evaluate(f"localStorage.getItem('geodrop.sent.v1.{user}')")
    records: list[dict[str, Any]] = json.loads(text or "[]")
    return records


async def set_sent_records(page: Page, user: str, records: list[dict[str, Any]]) -> None:
    """Replace the page's list of files ``user`` sent (as if sent earlier from this browser)."""
    await page.evaluate(
        "([key, value]) => localStorage.setItem(key, value)",
        [f"geodrop.sent.v1.{user}", json.dumps(records)],
    )
