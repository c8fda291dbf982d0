"""The workers page's Drain button, in a real browser.

Debian's Chromium, driven by Playwright against a ``jobyard up`` server with two worker
processes and every other host blocked: an admin opens the confirm of one worker,
drains it, reads the confirmation and sees it ``draining``, and then the worker itself
(its heartbeat) reports draining while the other one stays healthy. A user sees no
Drain button. The page is checked with axe-core and screenshotted.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from playwright.sync_api import Browser, Page, expect

from tests.e2e.browser import open_page, shot
from tests.support.server import RunningServer, server_fixture

server = server_fixture(
    scope="module",
    workers=2,
    env={"JOBYARD_WORKER_PROCESSES": "2", "JOBYARD_HEARTBEAT_SECONDS": "0.5"},
)

PASSWORD = "admin-browser-pass-1"


def _api(server: RunningServer) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.token}"}, timeout=30
    )


def _workers(server: RunningServer) -> list[dict[str, Any]]:
    with _api(server) as api:
        items: list[dict[str, Any]] = api.get("/api/v1/workers").json()["items"]
    return items


def _log_in(page: Page, server: RunningServer, name: str) -> None:
    page.goto(f"{server.url}/login")
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{server.url}/")


def test_an_admin_drains_a_worker_through_its_confirm(
    browser: Browser, server: RunningServer
) -> None:
    with _api(server) as api:
        for name, role in (("boss", "admin"), ("dana", "user")):
            r = api.post("/api/v1/users", json={"name": name, "role": role, "password": PASSWORD})
            assert r.status_code == 201, r.text
    deadline = time.monotonic() + 30
    while len([w for w in _workers(server) if w["health"] == "healthy"]) < 2:
        assert time.monotonic() < deadline, _workers(server)
        time.sleep(0.1)
    target, other = sorted(w["name"] for w in _workers(server))

    user, user_watch = open_page(browser, server.url)
    _log_in(user, server, "dana")
    user.goto(f"{server.url}/workers")
    expect(user.get_by_role("heading", name="Workers")).to_be_visible()
    expect(user.get_by_text(f"Drain “{target}”…")).to_have_count(0)
    user_watch.check()

    admin, watch = open_page(browser, server.url)
    _log_in(admin, server, "boss")
    admin.goto(f"{server.url}/workers")
    admin.get_by_text(f"Drain “{target}”…").click()
    confirm = admin.locator("tbody tr", has_text=target).get_by_text("takes no new ones")
    expect(confirm).to_be_visible()
    expect(confirm).to_contain_text("then stays idle until this server restarts")
    admin.get_by_role("button", name=f"Yes, drain “{target}”").click()
    expect(admin.get_by_role("status")).to_contain_text(f"Worker {target} was asked to drain")
    row = admin.locator("tbody tr", has_text=target)
    expect(row).to_contain_text("draining")
    expect(row).to_contain_text("asked to drain")
    expect(admin.locator("tbody tr", has_text=other)).to_contain_text("healthy")
    shot(admin, "workers-drained")
    watch.check()

    # The worker heard it: its own heartbeat now says draining; the other is untouched.
    deadline = time.monotonic() + 20
    while not next(w for w in _workers(server) if w["name"] == target)["draining"]:
        assert time.monotonic() < deadline, _workers(server)
        time.sleep(0.1)
    assert next(w for w in _workers(server) if w["name"] == other)["health"] == "healthy"
