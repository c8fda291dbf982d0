"""``/docs`` and ``/redoc`` in a real browser, with every other host unreachable.

Debian's Chromium, driven by Playwright, loads the two pages of a ``jobyard up``
server. Every request to another host is aborted and fails the test (the viewers are
vendored in the package: nothing may come from a CDN), and so does a script error or a
Content-Security-Policy violation. In Swagger UI the test authorizes with a token and
runs "Try it out" on ``POST /api/v1/jobconfigs/{id}/run``; the job must exist afterwards.

``make test`` installs Chromium (``make system-deps``); the test is not skipped
without it, it fails saying how to install it.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from playwright.sync_api import Browser, Page, expect

from tests.e2e.browser import UI_TIMEOUT_MS, Watch, open_page
from tests.support.server import RunningServer, server_fixture

server = server_fixture(scope="module", workers=1)


def _open(browser: Browser, server: RunningServer) -> tuple[Page, Watch]:
    return open_page(browser, server.url, failed_loads_are_errors=False)


def _api(server: RunningServer) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.token}"}, timeout=30
    )


def _operation_id(server: RunningServer, method: str, path: str) -> str:
    document: dict[str, Any] = httpx.get(f"{server.url}/api/v1/openapi.json", timeout=30).json()
    return str(document["paths"][path][method]["operationId"])


def test_swagger_ui_try_it_out_runs_a_jobconfig(browser: Browser, server: RunningServer) -> None:
    with _api(server) as api:
        r = api.post(
            "/api/v1/jobconfigs", json={"name": "docs-try", "command": ["/bin/sh", "-c", "true"]}
        )
        assert r.status_code == 201, r.text
        jobconfig_id = r.json()["id"]
    op_id = _operation_id(server, "post", "/api/v1/jobconfigs/{jobconfig_id}/run")

    page, watch = _open(browser, server)
    page.goto(f"{server.url}/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text(
        "jobyard", timeout=UI_TIMEOUT_MS
    )

    # Authorize with the admin token (the bearerAuth scheme of the document).
    page.locator(".auth-wrapper button.authorize").click()
    dialog = page.locator(".dialog-ux")
    dialog.locator("input").first.fill(server.token)
    dialog.locator("button.modal-btn.authorize").click()
    dialog.locator("button.btn-done").click()

    operation = page.locator(f"#operations-jobconfigs-{op_id}")
    operation.locator(".opblock-summary").first.click()
    operation.locator("button.try-out__btn").click()
    operation.locator('tr[data-param-name="jobconfig_id"] input').fill(str(jobconfig_id))
    operation.locator("textarea.body-param__text").fill(json.dumps({"macros": {}}))
    operation.locator("button.execute").click()

    live = operation.locator(".live-responses-table tr.response .response-col_status").first
    expect(live).to_have_text("201", timeout=UI_TIMEOUT_MS)
    shown = json.loads(operation.locator(".live-responses-table .microlight").first.inner_text())
    assert shown["jobconfig_id"] == jobconfig_id

    with _api(server) as api:
        jobs = api.get("/api/v1/jobs", params={"jobconfig_id": jobconfig_id}).json()["items"]
    assert [j["id"] for j in jobs] == [shown["id"]]
    assert jobs[0]["submitted_by"] == "admin"
    watch.check()


def test_redoc_renders_offline(browser: Browser, server: RunningServer) -> None:
    page, watch = _open(browser, server)
    page.goto(f"{server.url}/redoc")
    expect(page.locator("h1").first).to_contain_text("jobyard", timeout=UI_TIMEOUT_MS)
    run = page.get_by_text("Submit a job of this jobconfig").first
    expect(run).to_be_attached(timeout=UI_TIMEOUT_MS)
    watch.check()
