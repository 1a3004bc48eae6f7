"""Debian's Chromium, headless, driven by Playwright: fixtures of the browser tests.

A test module that uses them runs its tests in the module's event loop (the browser is
started once per module) and carries the ``browser`` mark::

    pytestmark = [
        pytest.mark.e2e,
        pytest.mark.browser,
        pytest.mark.asyncio(loop_scope="module"),
    ]

    async def test_page(cluster: Cluster, browser_pages: BrowserPages) -> None:
        page = await browser_pages.open("alice")            # a context of its own per user
        await page.goto(cluster.directory_url + "/")
        await browser_pages.screenshot(page, "front-page")  # test-output/screenshots/...

The fixtures are registered for every test by ``pytest_plugins`` in tests/conftest.py.
Chromium is never downloaded by Playwright: the tests use the one Debian installs
(scripts/install-system-deps.sh), and fail, never skip, when it is missing.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import pytest
import pytest_asyncio
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Error,
    Page,
    ViewportSize,
    async_playwright,
)

DESKTOP: Final = ViewportSize(width=1280, height=800)
PHONE: Final = ViewportSize(width=390, height=844)
# Screenshots of every test run, for people to look at (gitignored).
SCREENSHOT_ROOT: Final = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
# Playwright's own waits (expect, clicks) give up after this long unless told otherwise.
DEFAULT_TIMEOUT_MS: Final = 15_000


def chromium_path() -> str:
    """Debian's Chromium (``apt-get install chromium``); the test fails if it is missing."""
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("chromium is not installed: run `make system-deps` (apt-get install chromium)")
    return path


@dataclass
class BrowserPages:
    """Pages of one test: a new browser context (own storage, cookies) per user."""

    browser: Browser
    screenshot_dir: Path
    contexts: list[BrowserContext] = field(default_factory=list)
    # Uncaught exceptions in any page, and console errors, as "user: text".
    page_errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    async def open(
        self, user: str, viewport: ViewportSize = DESKTOP, *, mobile: bool = False
    ) -> Page:
        """A page in a new context for ``user`` (downloads accepted)."""
        context = await self.browser.new_context(
            viewport=viewport, accept_downloads=True, is_mobile=mobile, has_touch=mobile
        )
        context.set_default_timeout(DEFAULT_TIMEOUT_MS)
        self.contexts.append(context)
        page = await context.new_page()

        def page_error(error: Error) -> None:
            self.page_errors.append(f"{user}: {error}")

        def console(message: ConsoleMessage) -> None:
            if message.type == "error":
                self.console_errors.append(f"{user}: {message.text}")

        page.on("pageerror", page_error)
        page.on("console", console)
        return page

    async def screenshot(self, page: Page, name: str, *, full_page: bool = False) -> Path:
        """Save a PNG of ``page`` as ``name``.png in the run's screenshot folder."""
        path = self.screenshot_dir / f"{name}.png"
        await page.screenshot(path=str(path), full_page=full_page)
        return path

    async def close(self) -> None:
        for context in self.contexts:
            await context.close()
        self.contexts.clear()


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    """``test-output/screenshots`` at the repository's root, created if missing."""
    SCREENSHOT_ROOT.mkdir(parents=True, exist_ok=True)
    return SCREENSHOT_ROOT


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    """One headless Chromium for a test module."""
    executable = chromium_path()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


@pytest_asyncio.fixture(loop_scope="module")
async def browser_pages(browser: Browser, screenshot_dir: Path) -> AsyncIterator[BrowserPages]:
    """A test's pages; their contexts are closed when it ends."""
    pages = BrowserPages(browser, screenshot_dir)
    try:
        yield pages
    finally:
        await pages.close()
