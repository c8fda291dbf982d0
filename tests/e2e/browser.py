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


#: Where the console's browser tests save their screenshots (gitignored ``var/``).
ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "test-artifacts" / "web"
#: axe-core, vendored for the tests only (tests/e2e/vendor/README.md, MPL-2.0).
AXE = Path(__file__).with_name("vendor") / "axe.min.js"
#: Elements sticking out of the window on the right (a page that scrolls sideways).
WIDER_THAN_THE_WINDOW = """
Array.from(document.querySelectorAll("body *"))
  .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1)
  .map((e) => `${e.tagName}.${e.className}#${e.id}`)
  .slice(0, 15)
"""
#: True once every stylesheet the page links is loaded and applied.
STYLED = """() => document.readyState === "complete" &&
  Array.from(document.querySelectorAll('link[rel="stylesheet"]')).every((l) => l.sheet)"""


def styled(page: Page) -> None:
    """Wait until the page's stylesheets apply: unstyled text on a dark canvas fails
    contrast, and a form's answer may show its text before its styles."""
    page.wait_for_load_state("load")
    page.wait_for_function(STYLED)


def accessible(page: Page) -> None:
    """axe-core on the styled page (injected through DevTools, which the page's CSP does
    not govern): fail on any serious or critical violation, saying where and, for
    contrast, what axe measured."""
    styled(page)
    page.evaluate(AXE.read_text(encoding="utf-8"))
    result = page.evaluate(
        "axe.run(document, {runOnly: ['wcag2a', 'wcag2aa', 'wcag21aa', 'best-practice']})"
    )
    bad = [
        f"{v['id']} ({v['impact']}): {v['help']} at {_where(v['nodes'])}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert not bad, f"accessibility violations on {page.url}: {bad}"


def _where(nodes: list[dict[str, Any]]) -> list[Any]:
    """The first few elements of a violation, with what axe measured (contrast ratios)."""
    return [(n["target"], n["any"][0].get("data") if n["any"] else None) for n in nodes[:3]]


def shot(page: Page, name: str, *, fits_the_window: bool = False) -> Path:
    """Check the page with axe (:func:`accessible`), then screenshot it to
    ``ARTIFACTS/<name>.png`` (printed; run with ``-s``). ``fits_the_window``: also fail
    when the page scrolls sideways (phone widths)."""
    accessible(page)
    if fits_the_window:
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        wide = page.evaluate(WIDER_THAN_THE_WINDOW)
        assert overflow <= 1, f"{page.url} scrolls sideways by {overflow}px: {wide}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path
