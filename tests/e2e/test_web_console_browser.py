"""The web console in a real browser, with every other host unreachable.

Debian's Chromium, driven by Playwright, logs in to a ``jobyard up`` server, finds an
ERROR job created through the API on the dashboard, opens it and the jobs list, and logs
out. Every request to another host is aborted and fails the test (htmx and the console's
files are vendored in the package), and so does a script error or a
Content-Security-Policy violation (reported as console errors). Screenshots of every
page go to ``var/test-artifacts/web/`` (the path is printed).

``make test`` installs Chromium (``make system-deps``); the test is not skipped without
it, it fails saying how to install it.
"""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.browser import UI_TIMEOUT_MS, Watch, open_page, shot
from tests.support.server import RunningServer, server_fixture

server = server_fixture(scope="module", workers=1)

PASSWORD = "browser-pass-1"


def _api(server: RunningServer) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.token}"}, timeout=30
    )


@pytest.fixture(scope="module")
def viewer(server: RunningServer) -> str:
    """A user ``viewer`` (admin) with a password."""
    with _api(server) as api:
        r = api.post(
            "/api/v1/users", json={"name": "viewer", "role": "admin", "password": PASSWORD}
        )
        assert r.status_code == 201, r.text
    return "viewer"


def _open(browser: Browser, server: RunningServer, **options: Any) -> tuple[Page, Watch]:
    """A new browser page that blocks (and records) other hosts and records errors."""
    return open_page(browser, server.url, **options)


def _log_in(page: Page, server: RunningServer, name: str) -> None:
    page.goto(f"{server.url}/login")
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{server.url}/")


def _wait_status(api: httpx.Client, job_id: int, want: set[str]) -> str:
    deadline = time.monotonic() + 60
    while (status := api.get(f"/api/v1/jobs/{job_id}").json()["status"]) not in want:
        assert time.monotonic() < deadline, f"job {job_id} stuck in {status}"
        time.sleep(0.1)
    return str(status)


def _error_job(server: RunningServer) -> int:
    """A job of the jobconfig ``broken-report`` that ends ERROR."""
    with _api(server) as api:
        r = api.post(
            "/api/v1/jobconfigs",
            json={
                "name": "broken-report",
                "description": "fails on purpose",
                "command": ["/bin/sh", "-c", "echo broken-on-purpose; exit 7"],
            },
        )
        assert r.status_code == 201, r.text
        r = api.post(f"/api/v1/jobconfigs/{r.json()['id']}/run", json={})
        assert r.status_code in (200, 201, 202), r.text
        job_id = int(r.json()["id"])
        deadline = time.monotonic() + 60
        while (status := api.get(f"/api/v1/jobs/{job_id}").json()["status"]) != "ERROR":
            assert status not in ("FINISHED", "FAILED", "CANCELLED"), status
            assert time.monotonic() < deadline, f"job {job_id} stuck in {status}"
            time.sleep(0.1)
        return job_id


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_log_in_see_an_error_on_the_dashboard_log_out(
    browser: Browser, server: RunningServer, viewer: str, scheme: str
) -> None:
    job_id = _error_job(server) if scheme == "light" else _existing_error(server)
    page, watch = _open(browser, server, color_scheme=scheme, timezone_id="Pacific/Auckland")

    # Not signed in: the dashboard sends us to the login page, which comes back to it.
    page.goto(f"{server.url}/")
    expect(page).to_have_url(f"{server.url}/login?next=%2F")
    page.get_by_label("User name").fill(viewer)
    page.get_by_label("Password").fill("wrong-password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong user name or password.")
    shot(page, f"login-error-{scheme}")
    # The refused login answers 401, which Chromium reports; nothing else went wrong.
    assert all("status of 401" in e for e in watch.errors), watch.errors
    watch.errors.clear()
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{server.url}/")
    expect(page.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()
    expect(page.get_by_text("Signed in as viewer")).to_be_visible()

    # The ERROR job is among the latest failures, with its reason; times are local.
    failures = page.locator("section[aria-labelledby=failures-title]")
    row = failures.locator("tr", has=page.locator(f'a[href="/jobs/{job_id}"]'))
    expect(row).to_contain_text("ERROR")
    expect(row).to_contain_text("exit code 7")
    expect(row).to_contain_text("broken-report")
    ended = row.locator("time")
    expect(ended).to_have_attribute("data-local", "1")  # console.js ran (CSP allows it)
    assert "UTC" in (ended.get_attribute("title") or "")
    assert "UTC" not in ended.inner_text()  # shown in the browser's zone (Auckland)
    expect(page.locator("figure.chart svg")).to_be_visible()
    shot(page, f"dashboard-{scheme}")

    # The job page: timeline and log.
    row.locator(f'a[href="/jobs/{job_id}"]').click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"Job #{job_id}")
    expect(page.locator("pre.log")).to_contain_text("broken-on-purpose")
    expect(page.locator("section[aria-labelledby=timeline-title] tbody tr")).to_have_count(5)
    expect(page.get_by_role("button", name="Abort job")).to_have_count(0)  # it has ended
    shot(page, f"job-{scheme}")

    # The jobs list, filtered by status through the form.
    page.get_by_role("link", name="Jobs", exact=True).click()
    page.get_by_label("Status").select_option("ERROR")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(f"{server.url}/jobs?status=ERROR&jobconfig=&user=&since=")
    expect(page.locator(f'a[href="/jobs/{job_id}"]')).to_be_visible()
    shot(page, f"jobs-{scheme}")

    # The jobconfigs: searched, with the status of the newest job; one's page.
    page.get_by_role("link", name="Jobconfigs", exact=True).click()
    page.get_by_label("Name or description contains").fill("BROKEN")
    page.get_by_role("button", name="Search").click()
    listed = page.locator("tbody tr")
    expect(listed).to_have_count(1)
    expect(listed).to_contain_text("ERROR")
    shot(page, f"jobconfigs-{scheme}")
    listed.get_by_role("link", name="broken-report").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Jobconfig broken-report")
    expect(page.locator(f'a[href="/jobs/{job_id}"]')).to_be_visible()
    shot(page, f"jobconfig-{scheme}")

    # Run it from its page; the new job's page follows it to its end; then Rerun.
    page.get_by_role("button", name="Run broken-report").click()
    expect(page.get_by_role("status")).to_have_text("Job submitted.")
    expect(page.get_by_role("heading", level=1)).to_contain_text(  # live, no reload
        "ERROR", timeout=UI_TIMEOUT_MS
    )
    first = page.url
    page.get_by_role("button", name="Rerun").click()
    expect(page.get_by_role("status")).to_have_text("Rerun submitted: this is the new job.")
    assert page.url != first
    expect(page.get_by_role("link", name=f"#{first.split('/')[-1].split('?')[0]}")).to_be_visible()

    # Phone width: still usable (no horizontal scrolling of the page itself).
    page.set_viewport_size({"width": 375, "height": 800})
    page.goto(f"{server.url}/")
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"the dashboard scrolls sideways by {overflow}px at phone width"
    shot(page, f"dashboard-phone-{scheme}")

    # Log out: back to the login page, and the dashboard needs a login again.
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(f"{server.url}/login")
    page.goto(f"{server.url}/")
    expect(page).to_have_url(f"{server.url}/login?next=%2F")
    page.context.close()
    watch.check()


def _existing_error(server: RunningServer) -> int:
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.token}"}, timeout=30
    ) as api:
        found = api.get("/api/v1/jobs", params={"status": "ERROR"}).json()["items"]
    assert found, "the light run creates the ERROR job"
    return int(found[0]["id"])


def test_a_running_job_updates_live_and_the_buttons_cancel_and_abort(
    browser: Browser, server: RunningServer, viewer: str
) -> None:
    """The job page follows a job without reloading; Cancel and Abort post through the
    console (CSRF token and all) and the API sees the result."""
    ticking = "i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.2; done"
    with _api(server) as api:
        r = api.post("/api/v1/jobs", json={"command": ["/bin/sh", "-c", ticking]})
        assert r.status_code == 201, r.text
        running = int(r.json()["id"])
        _wait_status(api, running, {"RUNNING"})
        # The only slot is taken: this one waits in QUEUED.
        r = api.post("/api/v1/jobs", json={"command": ["/bin/sh", "-c", "true"]})
        assert r.status_code == 201, r.text
        queued = int(r.json()["id"])
        assert _wait_status(api, queued, {"QUEUED"}) == "QUEUED"

        page, watch = _open(browser, server)
        _log_in(page, server, viewer)

        # The jobs list's first page shows a job submitted after it was loaded.
        page.goto(f"{server.url}/jobs")
        page.evaluate("window.notReloaded = true")
        r = api.post("/api/v1/jobs", json={"command": ["/bin/sh", "-c", "true"], "hold": True})
        assert r.status_code == 201, r.text
        held = page.locator("tr", has=page.locator(f'a[href="/jobs/{r.json()["id"]}"]'))
        expect(held).to_contain_text("WAITING", timeout=UI_TIMEOUT_MS)
        expect(held.locator("time").first).to_have_attribute("data-local", "1")
        assert page.evaluate("window.notReloaded === true")

        page.goto(f"{server.url}/jobs/{running}")
        page.evaluate("window.notReloaded = true")
        log = page.locator("pre.log")
        expect(log).to_contain_text("tick-1")
        last = max(int(n) for n in re.findall(r"tick-(\d+)", log.inner_text()))
        # Lines written after the page was loaded appear in it without a reload.
        expect(log).to_contain_text(f"tick-{last + 10}", timeout=UI_TIMEOUT_MS)
        assert page.evaluate("window.notReloaded === true")
        expect(page.get_by_role("button", name="Cancel job")).to_have_count(0)
        shot(page, "job-running")

        page.goto(f"{server.url}/jobs/{queued}")
        expect(page.get_by_role("button", name="Abort job")).to_have_count(0)
        page.get_by_role("button", name="Cancel job").click()
        expect(page.get_by_role("status")).to_have_text("Job cancelled.")
        expect(page.get_by_role("heading", level=1)).to_contain_text("CANCELLED")
        assert api.get(f"/api/v1/jobs/{queued}").json()["status"] == "CANCELLED"

        page.goto(f"{server.url}/jobs/{running}")
        page.get_by_role("button", name="Abort job").click()
        expect(page.get_by_role("status")).to_contain_text("Abort requested")
        # The page keeps polling until the job has ended, then shows FAILED.
        expect(page.get_by_role("heading", level=1)).to_contain_text(
            "FAILED", timeout=UI_TIMEOUT_MS
        )
        expect(page.get_by_role("button", name="Abort job")).to_have_count(0)
        assert api.get(f"/api/v1/jobs/{running}").json()["status"] == "FAILED"
        shot(page, "job-aborted")
        page.context.close()
        watch.check()
