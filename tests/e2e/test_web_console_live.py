"""Live console pages in a real browser: Server-Sent Events, log search, output files,
workers, and the fallback to polling when a stream cannot be held.

Debian's Chromium through Playwright against a ``jobyard up`` server with one local
slot, every other host blocked (:mod:`tests.e2e.browser`). Each page screenshotted is
also checked with axe-core (no serious or critical violation); screenshots go to
``var/test-artifacts/web/``.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect

from tests.e2e.browser import UI_TIMEOUT_MS, Watch, open_page, shot
from tests.support.server import RunningServer, server_fixture

server = server_fixture(scope="module", workers=1)

PASSWORD = "live-browser-1"


def _api(server: RunningServer) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.token}"}, timeout=30
    )


@pytest.fixture(scope="module")
def operator(server: RunningServer) -> str:
    """A user ``operator`` (admin) with a password."""
    with _api(server) as api:
        body = {"name": "operator", "role": "admin", "password": PASSWORD}
        r = api.post("/api/v1/users", json=body)
        assert r.status_code == 201, r.text
    return "operator"


def _signed_in(browser: Browser, server: RunningServer, **options: Any) -> tuple[Page, Watch]:
    page, watch = open_page(browser, server.url, **options)
    page.goto(f"{server.url}/login")
    page.get_by_label("User name").fill("operator")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{server.url}/")
    return page, watch


def _wait_status(api: httpx.Client, job_id: int, want: set[str]) -> str:
    deadline = time.monotonic() + 60
    while (status := api.get(f"/api/v1/jobs/{job_id}").json()["status"]) not in want:
        assert time.monotonic() < deadline, f"job {job_id} stuck in {status}"
        time.sleep(0.1)
    return str(status)


def _submit(api: httpx.Client, script: str, **extra: Any) -> int:
    r = api.post("/api/v1/jobs", json={"command": ["/bin/sh", "-c", script], **extra})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def _row(page: Page, job_id: int) -> Any:
    return page.locator("#jobs-live tr", has=page.locator(f'a[href="/jobs/{job_id}"]'))


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_jobs_list_follows_jobs_live_and_sorts(
    browser: Browser, server: RunningServer, operator: str, scheme: str
) -> None:
    with _api(server) as api:
        page, watch = _signed_in(browser, server, color_scheme=scheme)
        page.goto(f"{server.url}/jobs")
        expect(page.locator("#jobs-live")).to_have_attribute("data-live-state", "live")
        page.evaluate("window.notReloaded = true")

        # A job submitted through the API appears, then goes through its states to the
        # end, in the open page (no reload, no polling: the stream carries it).
        job = _submit(api, "echo live-list; sleep 1")
        row = _row(page, job)
        expect(row).to_be_visible(timeout=UI_TIMEOUT_MS)
        expect(row).to_contain_text("FINISHED", timeout=UI_TIMEOUT_MS)
        expect(row.locator("time").first).to_have_attribute("data-local", "1")
        assert page.evaluate("window.notReloaded === true")
        expect(page.locator("#jobs-live")).to_have_attribute("data-live-state", "live")
        shot(page, f"jobs-live-{scheme}")

        # Sort the page by duration: the header says so (aria-sort), the stream follows
        # the same order.
        page.get_by_role("link", name="Duration").click()
        expect(page).to_have_url(re.compile(r"sort=-duration"))
        header = page.locator("th", has=page.get_by_role("link", name="Duration"))
        expect(header).to_have_attribute("aria-sort", "descending")
        expect(page.locator("#jobs-live")).to_have_attribute("data-live-state", "live")
        # A keyboard user's focus stays on their link while the rows are replaced.
        _row(page, job).get_by_role("link", name=f"#{job}").focus()
        short = _submit(api, "true")
        expect(_row(page, short)).to_contain_text("FINISHED", timeout=UI_TIMEOUT_MS)
        expect(_row(page, job).get_by_role("link", name=f"#{job}")).to_be_focused()
        ids = [int(n) for n in re.findall(r"#(\d+)", page.locator("#jobs-live tbody").inner_text())]
        assert ids.index(job) < ids.index(short), ids  # 1 s and more before ~0 s
        page.set_viewport_size({"width": 375, "height": 800})
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"the jobs list scrolls sideways by {overflow}px at phone width"
        shot(page, f"jobs-live-phone-{scheme}")
        page.context.close()
        watch.check()


def test_without_a_stream_the_list_falls_back_to_polling(
    browser: Browser, server: RunningServer, operator: str
) -> None:
    page, watch = _signed_in(browser, server, failed_loads_are_errors=False)
    refused: list[str] = []

    def refuse(route: Route) -> None:
        refused.append(route.request.url)
        route.fulfill(status=503, body="no streams here")

    # Only the list's stream: the dashboard just left may still try its own once.
    page.route("**/events/jobs*", refuse)
    page.goto(f"{server.url}/jobs")
    expect(page.locator("#jobs-live")).to_have_attribute(
        "data-live-state", "polling", timeout=UI_TIMEOUT_MS
    )
    page.evaluate("window.notReloaded = true")
    with _api(server) as api:
        job = _submit(api, "true", hold=True)
    expect(_row(page, job)).to_contain_text("WAITING", timeout=UI_TIMEOUT_MS)
    assert page.evaluate("window.notReloaded === true")
    assert len(refused) == 3  # the first try and two more, then polling
    page.context.close()
    watch.errors = [e for e in watch.errors if "EventSource" not in e and "503" not in e]
    watch.check()


def test_a_running_job_shows_its_log_live_with_search_then_cancel_and_abort(
    browser: Browser, server: RunningServer, operator: str
) -> None:
    ticking = "i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.2; done"
    with _api(server) as api:
        running = _submit(api, ticking)
        _wait_status(api, running, {"RUNNING"})
        queued = _submit(api, "true")  # the only slot is taken: it waits in QUEUED
        assert _wait_status(api, queued, {"QUEUED"}) == "QUEUED"

        page, watch = _signed_in(browser, server)
        page.goto(f"{server.url}/jobs/{running}")
        expect(page.locator("#job-live")).to_have_attribute("data-live-state", "live")
        page.evaluate("window.notReloaded = true")
        log = page.locator("pre.log")
        expect(log).to_contain_text("tick-1")
        last = max(int(n) for n in re.findall(r"tick-(\d+)", log.inner_text()))
        expect(log).to_contain_text(f"tick-{last + 10}", timeout=UI_TIMEOUT_MS)
        assert page.evaluate("window.notReloaded === true")

        # Search: matches are highlighted, counted, and can be the only lines shown;
        # lines arriving meanwhile are searched too.
        page.get_by_label("Search the log").fill("tick-1")
        expect(log.locator("mark").first).to_have_text("tick-1")
        expect(page.locator("#log-count")).to_contain_text("matching line")
        page.get_by_label("Matching lines only").check()
        expect(log).not_to_contain_text("tick-2\n")
        shown = log.inner_text().splitlines()
        assert shown and all("tick-1" in line for line in shown), shown[:5]
        # Lines that arrive while a search is on are searched too: the count grows.
        page.get_by_label("Search the log").fill("tick")
        count = page.locator("#log-count")
        expect(count).to_contain_text("matching lines")
        before = count.inner_text()
        expect(count).not_to_have_text(before, timeout=UI_TIMEOUT_MS)
        page.get_by_label("Search the log").fill("tick-1")
        shot(page, "job-log-search")
        page.get_by_label("Matching lines only").uncheck()
        page.get_by_label("Search the log").fill("")
        expect(log.locator("mark")).to_have_count(0)

        # Cancel the queued job, abort the running one, from their pages.
        page.goto(f"{server.url}/jobs/{queued}")
        page.get_by_role("button", name="Cancel job").click()
        expect(page.get_by_role("status")).to_have_text("Job cancelled.")
        expect(page.get_by_role("heading", level=1)).to_contain_text("CANCELLED")
        assert api.get(f"/api/v1/jobs/{queued}").json()["status"] == "CANCELLED"

        page.goto(f"{server.url}/jobs/{running}")
        page.get_by_role("button", name="Abort job").click()
        expect(page.get_by_role("status")).to_contain_text("Abort requested")
        expect(page.get_by_role("heading", level=1)).to_contain_text(
            "FAILED", timeout=UI_TIMEOUT_MS
        )
        # The stream ended with the job (or the page came after the end: no stream).
        expect(page.locator('[data-live-state="live"], [data-live-state="polling"]')).to_have_count(
            0
        )
        expect(page.get_by_role("button", name="Abort job")).to_have_count(0)
        assert api.get(f"/api/v1/jobs/{running}").json()["status"] == "FAILED"
        page.context.close()
        watch.check()


def test_output_files_are_listed_and_download(
    browser: Browser, server: RunningServer, operator: str
) -> None:
    script = 'sleep 1; printf "a,b\\n1,2\\n" > "$LOCAL_JOB_OUT_DIR/table.csv"; echo wrote'
    with _api(server) as api:
        page, watch = _signed_in(browser, server)
        job = _submit(api, script)
        page.goto(f"{server.url}/jobs/{job}")
        # The files appear when the job ends, in the open page.
        link = page.get_by_role("link", name="table.csv")
        expect(link).to_be_visible(timeout=UI_TIMEOUT_MS)
        expect(page.locator("section[aria-labelledby=outputs-title]")).to_contain_text("8 Bytes")
        shot(page, "job-outputs")
        with page.expect_download() as info:
            link.click()
        download = info.value
        assert download.suggested_filename == "table.csv"
        assert Path(download.path()).read_text() == "a,b\n1,2\n"
        page.context.close()
        watch.check()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_workers_page_and_dashboard_box(
    browser: Browser, server: RunningServer, operator: str, scheme: str
) -> None:
    with _api(server) as api:
        busy = _submit(api, "sleep 30")
        _wait_status(api, busy, {"RUNNING"})
        page, watch = _signed_in(browser, server, color_scheme=scheme)
        box = page.locator("section[aria-labelledby=workers-title]")
        expect(box).to_contain_text("1 of 1 slot(s) in use", timeout=UI_TIMEOUT_MS)
        shot(page, f"dashboard-workers-{scheme}")
        box.get_by_role("link", name="worker details").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Workers")
        row = page.locator("tbody tr").first
        expect(row).to_contain_text("healthy")
        expect(row).to_contain_text("1 / 1")
        expect(row.get_by_role("link", name=f"#{busy}")).to_be_visible()
        shot(page, f"workers-{scheme}")
        api.post(f"/api/v1/jobs/{busy}/abort")
        _wait_status(api, busy, {"FAILED"})
        page.context.close()
        watch.check()
