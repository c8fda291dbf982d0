"""A jobconfig's Macros, Schedules and YAML tabs in a real browser, other hosts blocked.

Debian's Chromium through Playwright against a ``jobyard up`` server: a secure macro
added through the form shows masked and its value is nowhere in the page; the cron
field previews the next fire times as it is typed (htmx, no reload) and shows the API's
error for a wrong expression next to the field; a YAML change is planned, applied and
seen on the jobconfig's page. Each page is checked with axe-core and screenshotted
(``var/test-artifacts/web/config-*.png``), in light and dark and at phone width.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.browser import UI_TIMEOUT_MS, Watch, open_page, shot
from tests.support.server import RunningServer, server_fixture

server = server_fixture(scope="module", workers=1)

PASSWORD = "config-pass-1"
SECRET = "Tr0ub4dor-never-shown"


def _api(server: RunningServer) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.token}"}, timeout=30
    )


@pytest.fixture(scope="module")
def editor(server: RunningServer) -> str:
    """A user ``editor`` who may edit the jobconfig ``nightly`` (no admin)."""
    with _api(server) as api:
        r = api.post("/api/v1/users", json={"name": "editor", "role": "user", "password": PASSWORD})
        assert r.status_code == 201, r.text
        uid = r.json()["id"]
        r = api.post(
            "/api/v1/jobconfigs",
            json={
                "name": "nightly",
                "description": "the nightly report",
                "command": ["/bin/sh", "-c", "echo report"],
                "timeout": 5,
            },
        )
        assert r.status_code == 201, r.text
        body = {"action": "edit", "resource": "jobconfigs", "selector": str(r.json()["id"])}
        assert api.post(f"/api/v1/users/{uid}/policies", json=body).status_code == 201
    return "editor"


def _jobconfig_id(server: RunningServer) -> int:
    with _api(server) as api:
        found = api.get("/api/v1/jobconfigs", params={"name": "nightly"}).json()["items"]
    return int(found[0]["id"])


def _signed_in(
    browser: Browser, server: RunningServer, name: str, **options: Any
) -> tuple[Page, Watch]:
    page, watch = open_page(browser, server.url, **options)
    page.goto(f"{server.url}/login")
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{server.url}/")
    return page, watch


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_a_secure_macro_is_added_and_shown_masked(
    browser: Browser, server: RunningServer, editor: str, scheme: str
) -> None:
    jc = _jobconfig_id(server)
    page, watch = _signed_in(browser, server, editor, color_scheme=scheme)
    page.goto(f"{server.url}/jobconfigs/{jc}")
    tabs = page.get_by_role("navigation", name="Jobconfig nightly")
    expect(tabs.get_by_role("link", name="Overview")).to_have_attribute("aria-current", "page")
    tabs.get_by_role("link", name="Macros").click()
    expect(page).to_have_url(f"{server.url}/jobconfigs/{jc}/macros")
    expect(tabs.get_by_role("link", name="Macros")).to_have_attribute("aria-current", "page")
    # An editor (no admin) may change the jobconfig's and its own levels, not the account's.
    expect(page.get_by_role("heading", name="Account macros")).to_be_visible()
    expect(page.get_by_role("button", name="Add macro (account macros)")).to_have_count(0)

    name = f"DB_PASSWORD_{scheme.upper()}"
    level = page.locator("section", has=page.get_by_role("heading", name="Jobconfig macros"))
    add = page.get_by_role("form", name="Add a macro (jobconfig macros)")
    add.get_by_label("Name").fill(name)
    add.get_by_label("Value").fill(SECRET)
    add.get_by_label("Secure (write-only)").check()
    add.get_by_role("button", name="Add macro (jobconfig macros)").click()
    expect(page.get_by_role("status")).to_have_text("Macro saved.")
    row = level.locator("tr", has=page.locator("th", has_text=name))
    expect(row).to_contain_text("••••• secure, write-only")
    resolved = page.locator("section[aria-labelledby=resolved-title]")
    expect(resolved.locator("tr", has=page.locator("th", has_text=name))).to_contain_text("*****")
    # The form to set a new value never holds the old one.
    row.get_by_text("Set a new value").click()
    field = row.get_by_label(f"New secure value of {name}")
    expect(field).to_have_attribute("type", "password")
    expect(field).to_have_value("")
    assert SECRET not in page.content()
    shot(page, f"config-macros-{scheme}", fits_the_window=True)
    page.set_viewport_size({"width": 375, "height": 800})
    shot(page, f"config-macros-phone-{scheme}", fits_the_window=True)
    page.set_viewport_size({"width": 1280, "height": 720})

    # A plain macro of the user's own level, changed and deleted again.
    mine = page.locator("section", has=page.get_by_role("heading", name="Your user macros"))
    add_mine = page.get_by_role("form", name="Add a macro (your user macros)")
    add_mine.get_by_label("Name").fill(f"REGION_{scheme.upper()}")
    add_mine.get_by_label("Value").fill("eu-west")
    add_mine.get_by_role("button", name="Add macro (your user macros)").click()
    expect(page.get_by_role("status")).to_have_text("Macro saved.")
    expect(mine.locator("tr", has_text=f"REGION_{scheme.upper()}")).to_contain_text("eu-west")
    mine.get_by_role("button", name=f"Delete REGION_{scheme.upper()}").click()
    expect(page.get_by_role("status")).to_have_text("Macro deleted.")
    expect(mine.locator("tr", has_text=f"REGION_{scheme.upper()}")).to_have_count(0)

    # A wrong name: the API's message, next to nothing saved.
    add.get_by_label("Name").fill("JOB_ID")
    add.get_by_label("Value").fill("1")
    add.get_by_role("button", name="Add macro (jobconfig macros)").click()
    expect(page.get_by_role("alert")).to_contain_text("set by jobyard for every job")
    assert all("status of 422" in e for e in watch.errors), watch.errors
    watch.errors.clear()
    with _api(server) as api:
        stored = api.get(f"/api/v1/jobconfigs/{jc}/macros").json()["items"]
    assert {m["name"]: m["secure"] for m in stored}[name] is True
    page.context.close()
    watch.check()


def test_the_cron_field_previews_as_you_type(
    browser: Browser, server: RunningServer, editor: str
) -> None:
    jc = _jobconfig_id(server)
    page, watch = _signed_in(browser, server, editor)
    page.goto(f"{server.url}/jobconfigs/{jc}/schedules")
    page.evaluate("window.notReloaded = true")
    cron = page.get_by_label("Cron expression", exact=False)
    preview = page.locator("#cron-preview")
    expect(preview).to_have_attribute("aria-live", "polite")
    cron.press_sequentially("0 0 12 ? * MON-FRI", delay=20)
    times = preview.locator("ol.fire-times li")
    expect(times).to_have_count(5)
    expect(times.first).to_contain_text("12:00:00 +00:00")
    # Another zone: the times follow it.
    zone = page.get_by_label("Time zone (IANA name)")
    zone.fill("Asia/Kolkata")
    expect(times.first).to_contain_text("12:00:00 +05:30")
    # A wrong expression: the API's friendly error, inline, next to the field.
    cron.fill("0 0 12 * * MON")
    error = preview.locator(".field-error")
    expect(error).to_contain_text("did you mean '0 0 12 ? * MON'?")
    expect(times).to_have_count(0)
    shot(page, "config-schedules-cron-error", fits_the_window=True)
    cron.fill("0 30 6 ? * MON-FRI")
    expect(times).to_have_count(5)
    expect(times.first).to_contain_text("06:30:00 +05:30")
    assert page.evaluate("window.notReloaded === true")  # htmx swapped, no reload

    page.get_by_role("button", name="Add schedule").click()
    expect(page.get_by_role("status")).to_have_text("Schedule added.")
    row = page.locator("tbody tr", has_text="0 30 6 ? * MON-FRI")
    expect(row).to_contain_text("Asia/Kolkata")
    expect(row).to_contain_text("yes")
    expect(row.locator("time")).to_have_attribute("data-local", "1")
    shot(page, "config-schedules", fits_the_window=True)
    row.get_by_role("button", name="Disable").click()
    expect(page.get_by_role("status")).to_have_text("Schedule disabled.")
    expect(row).to_contain_text("no (paused)")
    page.set_viewport_size({"width": 375, "height": 800})
    shot(page, "config-schedules-phone", fits_the_window=True)
    row.get_by_role("button", name="Delete").click()
    expect(page.get_by_role("status")).to_have_text("Schedule deleted.")
    expect(page.locator("tbody tr", has_text="0 30 6 ? * MON-FRI")).to_have_count(0)
    page.context.close()
    watch.check()


def test_a_yaml_change_is_planned_applied_and_seen(
    browser: Browser, server: RunningServer, editor: str
) -> None:
    jc = _jobconfig_id(server)
    page, watch = _signed_in(browser, server, editor, color_scheme="dark")
    page.goto(f"{server.url}/jobconfigs/{jc}")
    page.get_by_role("navigation", name="Jobconfig nightly").get_by_role(
        "link", name="YAML"
    ).click()
    document = page.get_by_label("Document (YAML)")
    text = document.input_value()
    assert "name: nightly" in text and "timeout: 5" in text
    shot(page, "config-yaml", fits_the_window=True)
    document.fill(text.replace("timeout: 5", "timeout: 45"))
    expect(page.get_by_role("button", name="Apply")).to_have_count(0)  # plan first
    page.get_by_role("button", name="Plan").click()
    plan = page.locator("section.plan")
    expect(plan.get_by_role("heading", name="Plan: what Apply would do")).to_be_visible()
    change = plan.locator("tr", has=page.locator("th", has_text="timeout"))
    expect(change).to_contain_text("5")
    expect(change).to_contain_text("45")
    shot(page, "config-yaml-plan", fits_the_window=True)
    page.set_viewport_size({"width": 375, "height": 800})
    shot(page, "config-yaml-plan-phone", fits_the_window=True)
    page.set_viewport_size({"width": 1280, "height": 720})
    with _api(server) as api:  # a plan changes nothing
        assert api.get(f"/api/v1/jobconfigs/{jc}").json()["timeout"] == 5
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_role("status")).to_have_text("Applied.")
    expect(page.get_by_label("Document (YAML)")).to_have_value(
        text.replace("timeout: 5", "timeout: 45")
    )
    page.get_by_role("navigation", name="Jobconfig nightly").get_by_role(
        "link", name="Overview"
    ).click()
    timeout = page.locator(".facts div", has=page.locator("dt", has_text="Timeout"))
    expect(timeout.locator("dd")).to_have_text("45 min", timeout=UI_TIMEOUT_MS)

    # A broken document: the problem with its line, and no Apply.
    page.goto(f"{server.url}/jobconfigs/{jc}/yaml")
    broken = (
        page.get_by_label("Document (YAML)").input_value().replace("timeout: 45", "timeout: soon")
    )
    page.get_by_label("Document (YAML)").fill(broken)
    page.get_by_role("button", name="Plan").click()
    line = 1 + next(i for i, x in enumerate(broken.splitlines()) if "timeout: soon" in x)
    expect(page.get_by_role("alert")).to_contain_text(f"Line {line}:")
    expect(page.get_by_role("button", name="Apply")).to_have_count(0)
    shot(page, "config-yaml-error", fits_the_window=True)
    assert all("status of 422" in e for e in watch.errors), watch.errors
    watch.errors.clear()
    page.context.close()
    watch.check()
