"""Every way the web client reports an API refusal, each from a real server's answer.

One page, one cluster: a refused token at sign-in (401), a refused negotiation (400 bad
receiver, 413 too large), an upload whose URL stopped working (tus HEAD 410 after the
upload was deleted), a download of a file deleted after it reached the inbox (410), and
the sent list's statuses: not found (404), expired (410) and region down (503, with the
owning region's file server stopped).
"""

from __future__ import annotations

import asyncio
import time
import tomllib
from pathlib import Path
from typing import Final

import aiohttp
import pytest
from playwright.async_api import Page, expect

from support.browser import BrowserPages
from support.cluster import Cluster, user_token
from support.e2e_flows import negotiate_upload, send_file, write_random_file
from support.webclient import (
    require_web_client_build,
    set_sent_records,
    sign_in,
    stored_upload_urls,
    throttle_upload,
    wait_for_progress,
)

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

TUS_HEADERS: Final = {"Tus-Resumable": "1.0.0"}
# Well-formed ids that no server issued: one of north (404) and one of east (asked of east).
UNKNOWN_NORTH_FILE: Final = "north." + "a" * 26
EAST_FILE: Final = "east." + "b" * 26


async def send_error(page: Page) -> str:
    error = page.locator("#send-error")
    await expect(error).not_to_be_empty()
    return await error.inner_text()


async def test_error_messages(
    cluster: Cluster,
    browser_pages: BrowserPages,
    tmp_path: Path,
) -> None:
    require_web_client_build()
    page = await browser_pages.open("carol")

    # 401: a token the directory refuses.
    await page.goto(cluster.directory_url + "/")
    await page.get_by_label("User token").fill("not-a-token")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#sign-in-error")).to_contain_text("Your token was not accepted")
    await expect(page.locator("#app")).to_be_hidden()
    await sign_in(page, cluster, "carol")
    # Keyboard: from the receivers, Tab reaches the file chooser (the hidden input is skipped).
    await page.get_by_label("To", exact=True).focus()
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("button", name="Choose a file…")).to_be_focused()

    # 400 and 413: the access unit refuses the negotiation; its message is shown.
    small = tmp_path / "note.txt"
    small.write_bytes(b"hello bob\n")
    await page.get_by_label("To", exact=True).fill("bob, not a user!")
    await page.locator("#file").set_input_files(small)
    await page.get_by_role("button", name="Send", exact=True).click()
    text = await send_error(page)
    assert text.startswith("The request was refused: Receivers[1]: not a valid user id"), text
    # One byte over the cluster's limits.max_file_size, as a sparse file (no disk used).
    too_large = tomllib.loads(cluster.config_path.read_text())["limits"]["max_file_size"] + 1
    large = tmp_path / "huge.bin"
    with large.open("wb") as sparse:
        sparse.truncate(too_large)
    await page.get_by_label("To", exact=True).fill("bob")
    await page.locator("#file").set_input_files(large)
    await page.get_by_role("button", name="Send", exact=True).click()
    await expect(page.locator("#send-error")).to_contain_text(
        f"Too large: Size: {too_large} bytes is above the limit of {too_large - 1}."
    )
    await browser_pages.screenshot(page, "web-error-too-large")

    # An upload whose URL stopped working: deleted on the server while paused (tus 410).
    two_mb = await asyncio.to_thread(write_random_file, tmp_path / "draft.bin", 2_000_000)
    cdp = await page.context.new_cdp_session(page)
    await throttle_upload(cdp, 200_000)
    await page.locator("#file").set_input_files(two_mb.path)
    await page.get_by_role("button", name="Send", exact=True).click()
    await wait_for_progress(page, 1, seconds=20)
    await page.get_by_role("button", name="Pause").click()
    await expect(page.locator("#send-status")).to_contain_text("Paused")
    [upload_url] = await stored_upload_urls(page)
    async with (
        aiohttp.ClientSession() as anyone,
        anyone.delete(upload_url, headers=TUS_HEADERS) as deleted,
    ):
        assert deleted.status == 204
    await throttle_upload(cdp, -1)
    await page.get_by_role("button", name="Resume").click()
    await expect(page.locator("#send-error")).to_contain_text(
        "Expired: The upload expired or was deleted."
    )
    await expect(page.locator("#send-error")).to_contain_text("Send starts the upload")
    assert await stored_upload_urls(page) == []

    # 410 on a download: Dave's file reached Carol's inbox, then Dave deleted it.
    gift = await asyncio.to_thread(write_random_file, tmp_path / "gift.bin", 1000)
    async with aiohttp.ClientSession(
        headers={"Authorization": f"Bearer {user_token('dave')}"}
    ) as dave:
        offer = await negotiate_upload(dave, cluster.access_url("north"), gift, ["carol"])
        await send_file(dave, offer["upload_url"], gift)
        row = page.locator(f'#inbox-list li[data-file-id="{offer["file_id"]}"]')
        await expect(row.locator(".expiry")).to_contain_text("expires in")
        async with dave.delete(offer["upload_url"], headers=TUS_HEADERS) as deleted:
            assert deleted.status == 204
    await row.get_by_role("button", name="Download gift.bin from dave").click()
    await expect(row.locator(".row-message")).to_contain_text(
        "Expired: This file has expired and was deleted."
    )

    # The sent list: a file the server never had (404), Carol's deleted upload (410), and
    # a file of east while east's file server is down (503).
    records = [
        {"file_id": file_id, "name": name, "size": 1, "receivers": ["bob"], "sent_at": time.time()}
        for file_id, name in [
            (UNKNOWN_NORTH_FILE, "never.bin"),
            (await deleted_upload_of_carol(cluster, tmp_path), "deleted.bin"),
            (EAST_FILE, "far.bin"),
        ]
    ]
    await set_sent_records(page, "carol", records)
    cluster.stop("east")
    try:
        await page.get_by_role("button", name="Refresh").click()
        states = page.locator("#sent-list .sent-state")
        await expect(states.nth(0)).to_have_attribute("data-state", "missing")
        await expect(states.nth(0)).to_contain_text("Not found: No such file.")
        await expect(states.nth(1)).to_have_attribute("data-state", "expired")
        await expect(states.nth(1)).to_contain_text("Expired:")
        await expect(states.nth(2)).to_contain_text("Region down: Peer")
        await browser_pages.screenshot(page, "web-error-messages", full_page=True)
    finally:
        cluster.start("east")
    assert browser_pages.page_errors == []


async def deleted_upload_of_carol(cluster: Cluster, tmp_path: Path) -> str:
    """A file id Carol negotiated and then deleted (tus termination): 410 for her."""
    local = await asyncio.to_thread(write_random_file, tmp_path / "deleted.bin", 1)
    async with aiohttp.ClientSession(
        headers={"Authorization": f"Bearer {user_token('carol')}"}
    ) as carol:
        offer = await negotiate_upload(carol, cluster.access_url("north"), local, ["bob"])
        async with carol.delete(offer["upload_url"], headers=TUS_HEADERS) as deleted:
            assert deleted.status == 204
    return str(offer["file_id"])
