"""Playwright on Debian's Chromium for the browser tests, with every other host blocked.

``browser`` (a fixture, module scope; found by pytest through ``tests/e2e/conftest.py``)
launches ``/usr/bin/chromium`` headless, and fails saying how to install it when it is
missing (``make system-deps``). :class:`Watch` records what a page must not do: reach
another host, report a script error.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, Route, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
#: Generous for a loaded 2-core machine; a page normally renders in about a second.
UI_TIMEOUT_MS = 30_000


@dataclass
class Watch:
    """What a page did that it must not: requests to other hosts, script errors."""

    origin: str
    foreign: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def route(self, route: Route) -> None:
        """Let requests to the server through; abort (and record) any other."""
        url = route.request.url
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob") or f"{parts.scheme}://{parts.netloc}" == self.origin:
            route.continue_()
            return
        self.foreign.append(url)
        route.abort("blockedbyclient")

    def check(self) -> None:
        """Fail on any request to another host or any error the page reported."""
        assert not self.foreign, f"requests to other hosts: {self.foreign}"
        assert not self.errors, f"errors in the page: {self.errors}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium (``make system-deps`` installs it)."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: run `make system-deps` (apt-get install chromium)",
            pytrace=False,
        )
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield browser
        browser.close()


def open_page(
    browser: Browser, origin: str, *, failed_loads_are_errors: bool = True, **options: Any
) -> tuple[Page, Watch]:
    """A new page that blocks (and records) other hosts and records script errors.

    ``failed_loads_are_errors=False`` ignores the console's "Failed to load resource"
    lines (a blocked request is already recorded in :attr:`Watch.foreign`).
    """
    context = browser.new_context(**options)
    watch = Watch(origin=origin.rstrip("/"))
    context.route("**/*", watch.route)
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    page.on("pageerror", lambda exc: watch.errors.append(f"pageerror: {exc}"))

    def console(msg: Any) -> None:
        if msg.type != "error":
            return
        if not failed_loads_are_errors and "Failed to load resource" in msg.text:
            return
        watch.errors.append(f"console: {msg.text}")

    page.on("console", console)
    return page, watch
