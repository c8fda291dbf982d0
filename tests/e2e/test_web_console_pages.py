"""Every main page of the console under axe-core, in light and in dark.

One walk through the console as an admin, once per colour scheme: the login page, the
dashboard, the jobs list, a running job's page (its Abort button is the one red button
with text on it), the jobconfigs, each tab of a jobconfig (Jobs included), packages,
the new-jobconfig form, users, a user, my account, tokens, policies, audit, workers, and
the error page. Disclosures (``<details>``: the confirms of revoke and deactivate) are
opened first, so the buttons they hide are checked too. Nothing may be loaded from
another host. Screenshots: ``var/test-artifacts/web/pages-*.png``.

Then the dashboard follows its stream: a job submitted through the API shows in its
counts, and leaves them, without a reload.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.browser import UI_TIMEOUT_MS, open_page, shot, styled
from tests.support.server import RunningServer, server_fixture

server = server_fixture(scope="module", workers=1)

PASSWORD = "pages-pass-1"
OPEN_DISCLOSURES = "document.querySelectorAll('details').forEach((d) => { d.open = true; })"


def _api(server: RunningServer) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.token}"}, timeout=30
    )


@pytest.fixture(scope="module")
def world(server: RunningServer) -> Iterator[dict[str, int]]:
    """An admin ``walker`` with a token and a policy to list, a jobconfig with a macro and
    a schedule, and a job of it running (so its page shows Abort)."""
    with _api(server) as api:
        r = api.post(
            "/api/v1/users", json={"name": "walker", "role": "admin", "password": PASSWORD}
        )
        assert r.status_code == 201, r.text
        walker = int(r.json()["id"])
        r = api.post("/api/v1/users", json={"name": "other", "role": "user", "password": PASSWORD})
        other = int(r.json()["id"])
        r = api.post(
            "/api/v1/jobconfigs",
            json={"name": "walked", "command": ["/bin/sh", "-c", "echo walking; sleep 600"]},
        )
        assert r.status_code == 201, r.text
        jc = int(r.json()["id"])
        r = api.post(
            f"/api/v1/users/{other}/policies",
            json={"action": "view", "resource": "jobconfigs", "selector": str(jc)},
        )
        assert r.status_code == 201, r.text
        r = api.post(f"/api/v1/jobconfigs/{jc}/run", json={})
        job = int(r.json()["id"])
        deadline = time.monotonic() + 60
        while (status := api.get(f"/api/v1/jobs/{job}").json()["status"]) != "RUNNING":
            assert time.monotonic() < deadline, f"job {job} stuck in {status}"
            time.sleep(0.1)
        yield {"walker": walker, "other": other, "jc": jc, "job": job}
        api.post(f"/api/v1/jobs/{job}/abort")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_main_page_passes_axe(
    browser: Browser, server: RunningServer, world: dict[str, int], scheme: str
) -> None:
    page, watch = open_page(browser, server.url, failed_loads_are_errors=False, color_scheme=scheme)
    page.goto(f"{server.url}/login")
    shot(page, f"pages-login-{scheme}")
    page.get_by_label("User name").fill("walker")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{server.url}/")

    jc, job = world["jc"], world["job"]
    pages = {
        "dashboard": "/",
        "jobs": "/jobs",
        "job-running": f"/jobs/{job}",
        "jobconfigs": "/jobconfigs",
        "jobconfig": f"/jobconfigs/{jc}",
        "jobconfig-settings": f"/jobconfigs/{jc}/settings",
        "jobconfig-macros": f"/jobconfigs/{jc}/macros",
        "jobconfig-schedules": f"/jobconfigs/{jc}/schedules",
        "jobconfig-yaml": f"/jobconfigs/{jc}/yaml",
        "jobconfig-jobs": f"/jobs?jobconfig={jc}",
        "packages": "/packages",
        "jobconfig-new": "/jobconfigs/new",
        "users": "/users",
        "user": f"/users/{world['other']}",
        "me": "/me",
        "tokens": "/tokens?all=1",
        "policies": "/policies",
        "audit": "/audit",
        "workers": "/workers",
    }
    for name, path in pages.items():
        answer = page.goto(f"{server.url}{path}")
        assert answer is not None and answer.status == 200, (path, answer)
        styled(page)
        page.evaluate(OPEN_DISCLOSURES)
        if name == "job-running":  # the red button with text, in both schemes
            expect(page.get_by_role("button", name="Abort job")).to_be_visible()
        shot(page, f"pages-{name}-{scheme}")

    answer = page.goto(f"{server.url}/jobs/987654321")
    assert answer is not None and answer.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
    shot(page, f"pages-error-{scheme}")
    watch.check()


def test_the_dashboard_follows_its_stream_without_a_reload(
    browser: Browser, server: RunningServer, world: dict[str, int]
) -> None:
    page, watch = open_page(browser, server.url)
    page.goto(f"{server.url}/login")
    page.get_by_label("User name").fill("walker")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{server.url}/")
    live = page.locator("#dash-live")
    expect(live).to_have_attribute("data-live-state", "live")
    # The jobconfig's one job runs; another waits SEQUENCED (one at a time).
    waiting = page.locator('a[href="/jobs?status=SEQUENCED"]')
    expect(waiting).to_have_text("0")
    page.evaluate("window.stillTheSamePage = true")
    with _api(server) as api:
        r = api.post(f"/api/v1/jobconfigs/{world['jc']}/run", json={})
        assert r.status_code in (200, 201, 202), r.text
        job = int(r.json()["id"])
        assert api.get(f"/api/v1/jobs/{job}").json()["status"] == "SEQUENCED"
        expect(waiting).to_have_text("1", timeout=UI_TIMEOUT_MS)
        assert page.evaluate("window.stillTheSamePage") is True  # swapped, not reloaded
        api.post(f"/api/v1/jobs/{job}/cancel")
    expect(waiting).to_have_text("0", timeout=UI_TIMEOUT_MS)
    shot(page, "pages-dashboard-live")
    watch.check()
