"""Editing in the console, in a real browser: from a package file to a job's live page.

Debian's Chromium, driven by Playwright against a ``jobyard up`` server with every other
host blocked, logs in as an ordinary user, uploads a package (a tar.gz made here, whose
manifest's entry point prints lines with pauses, under ``/bin/sh``), creates a jobconfig
from it (a refused form first: it comes back as typed, saying what to fix; the entry
point select follows the package chosen, through htmx), runs it with a payload file and
watches the job's page go from SEQUENCED to RUNNING to FINISHED without a reload,
reading a line of its log before the job has ended; then changes its settings. Every
page is screenshotted to ``var/test-artifacts/web/`` and checked with axe-core.
"""

from __future__ import annotations

import io
import tarfile
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.browser import UI_TIMEOUT_MS, Watch, open_page, shot
from tests.support.server import RunningServer, server_fixture

server = server_fixture(scope="module", workers=1)

PASSWORD = "editor-pass-1"
#: The job: a line, the payload, a pause long enough for the page to poll (every 2 s)
#: while it runs, then the rest.
SLOW_SCRIPT = b"""echo first-line
echo "payload: $(cat "$JOB_PAYLOAD_DIR/input.txt")"
sleep 5
echo second-line
sleep 1
echo last-line
"""
MANIFEST = b"""
[entrypoints.quick]
command = ["/bin/sh", "-c", "echo quick"]

[entrypoints.slow]
command = ["/bin/sh", "slow.sh"]
"""

#: Records, in the page, every status the job's block shows (and whether its log held
#: the first line by then): the block is swapped by htmx polling, never reloaded.
RECORD_STATUSES = """() => {
  window.notReloaded = true;
  window.seen = [];
  const note = () => {
    const badge = document.querySelector('#job-live h1 .status');
    const log = document.querySelector('#job-live pre.log');
    if (!badge) return;
    const status = badge.textContent.trim();
    const early = !!log && log.textContent.includes('first-line');
    const last = window.seen[window.seen.length - 1];
    if (!last || last.status !== status || last.early !== early) {
      window.seen.push({status: status, early: early});
    }
  };
  note();
  new MutationObserver(note).observe(document.querySelector('main'),
    {childList: true, subtree: true, characterData: true});
}"""


def _package(path: Path) -> Path:
    """A tar.gz with a manifest of two entry points and the slow script."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in (("jobyard.toml", MANIFEST), ("slow.sh", SLOW_SCRIPT)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(out.getvalue())
    return path


@pytest.fixture(scope="module")
def editor(server: RunningServer) -> str:
    """An ordinary user (no policies): it may upload and create, and edits its own."""
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.token}"}, timeout=30
    ) as api:
        r = api.post("/api/v1/users", json={"name": "editor", "role": "user", "password": PASSWORD})
        assert r.status_code == 201, r.text
    return "editor"


def _run_first(server: RunningServer, jobconfig_id: int) -> int:
    """A first job of the jobconfig, RUNNING (about 6 s) when this returns: with one job
    of it at a time, the next one waits SEQUENCED behind it."""
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.token}"}, timeout=30
    ) as api:
        r = api.post(f"/api/v1/jobconfigs/{jobconfig_id}/run", json={})
        assert r.status_code == 201, r.text
        job_id = int(r.json()["id"])
        deadline = time.monotonic() + 60
        while (status := api.get(f"/api/v1/jobs/{job_id}").json()["status"]) != "RUNNING":
            assert time.monotonic() < deadline, f"job {job_id} stuck in {status}"
            time.sleep(0.05)
    return job_id


def _log_in(page: Page, server: RunningServer, name: str) -> None:
    page.goto(f"{server.url}/login")
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{server.url}/")


def _refused_loads_only(watch: Watch, status: int) -> None:
    """A refused form answers ``status``, which Chromium reports; nothing else failed."""
    assert all(f"status of {status}" in e for e in watch.errors), watch.errors
    watch.errors.clear()


def test_upload_create_run_with_payload_and_watch_it_live(
    browser: Browser, server: RunningServer, editor: str, tmp_path: Path
) -> None:
    archive = _package(tmp_path / "slow-demo.tar.gz")
    payload = tmp_path / "input.txt"
    payload.write_text("hello from the payload\n")
    page, watch = open_page(browser, server.url)
    _log_in(page, server, editor)

    # Upload the package from the jobconfigs list's "Packages" link.
    page.get_by_role("link", name="Jobconfigs", exact=True).click()
    page.get_by_role("link", name="Packages").click()
    expect(page.get_by_role("heading", name="Packages", level=1)).to_be_visible()
    shot(page, "packages")
    page.get_by_label("Package file").set_input_files(str(archive))
    page.get_by_role("button", name="Upload").click()
    expect(page.get_by_role("status")).to_have_text("Package uploaded.")
    expect(page.get_by_role("heading", level=1)).to_contain_text("slow-demo.tar.gz")
    entry_points = page.locator("section[aria-labelledby=entrypoints-title] tbody tr")
    expect(entry_points).to_have_count(2)
    expect(entry_points.nth(1)).to_contain_text("/bin/sh slow.sh")
    sha = page.locator("code.hash").inner_text()
    assert len(sha) == 64
    shot(page, "package")

    # A new jobconfig: picking the package fills the entry points from its manifest.
    page.goto(f"{server.url}/jobconfigs")
    page.get_by_role("link", name="New jobconfig").click()
    expect(page.get_by_role("heading", name="New jobconfig", level=1)).to_be_visible()
    entry = page.get_by_label("Entry point")
    expect(entry.locator("option")).to_have_count(1)  # "choose a package first"
    package_select = page.get_by_label("Package", exact=True)
    package_select.select_option(label=package_select.locator("option").nth(1).inner_text())
    expect(entry.locator("option")).to_have_text(["quick", "slow"])  # swapped in by htmx
    entry.select_option("slow")
    page.get_by_label("Name").fill("slow-demo")
    page.get_by_label("Description").fill("prints, pauses, prints")
    page.get_by_label("Timeout (minutes)").fill("soon")
    page.get_by_role("button", name="Create jobconfig").click()
    # Refused (422): the form comes back as typed, saying what to fix at the field.
    expect(page.get_by_role("alert")).to_contain_text("timeout (minutes) must be a whole number")
    expect(page.get_by_label("Timeout (minutes)")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Name")).to_have_value("slow-demo")
    expect(page.get_by_label("Entry point")).to_have_value("slow")
    _refused_loads_only(watch, 422)
    shot(page, "jobconfig-new-refused")
    page.get_by_label("Timeout (minutes)").fill("10")
    page.get_by_label("Max concurrency").fill("1")
    page.get_by_role("button", name="Create jobconfig").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Jobconfig slow-demo")
    jobconfig_id = int(page.url.rstrip("/").rsplit("/", 1)[1])
    expect(page.locator("dl.facts")).to_contain_text("entry point slow")
    shot(page, "jobconfig-run-form")

    # Run it with a payload while a first job of it runs (one at a time), so the job's
    # page shows it SEQUENCED first; the page then follows it live: no reload, no
    # navigation.
    blocker = _run_first(server, jobconfig_id)
    page.get_by_label("Payload file (optional)").set_input_files(str(payload))
    page.get_by_role("button", name="Run slow-demo").click()
    expect(page.get_by_role("status")).to_have_text("Job submitted.")
    job_url = page.url
    page.evaluate(RECORD_STATUSES)
    expect(page.get_by_role("heading", level=1)).to_contain_text("FINISHED", timeout=UI_TIMEOUT_MS)
    seen = page.evaluate("window.seen")
    statuses = [s["status"] for s in seen]
    assert page.evaluate("window.notReloaded === true"), "the page was reloaded"
    assert page.url == job_url
    print(f"statuses the page showed: {statuses} (blocker job {blocker})")
    assert statuses[0] == "SEQUENCED", statuses
    assert "RUNNING" in statuses and statuses[-1] == "FINISHED", statuses
    assert statuses.index("RUNNING") < statuses.index("FINISHED"), statuses
    # A line printed before the pause was in the page's log while the job still ran.
    assert {"status": "RUNNING", "early": True} in seen, seen
    log = page.locator("pre.log")
    expect(log).to_contain_text("payload: hello from the payload")
    expect(log).to_contain_text("last-line")
    timeline = page.locator("section[aria-labelledby=timeline-title] tbody")
    for status in ("WAITING", "SEQUENCED", "RUNNING", "FINISHED"):
        expect(timeline).to_contain_text(status)
    shot(page, "job-finished-from-console")

    # Its settings: the owner edits them; saved, and shown again.
    page.get_by_role("link", name="Jobconfigs", exact=True).click()
    page.get_by_role("link", name="slow-demo").click()
    page.get_by_role("link", name="Settings").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Settings of slow-demo")
    expect(page.get_by_label("Entry point")).to_have_value("slow")
    expect(page.get_by_label("Max concurrency")).to_have_value("1")
    page.get_by_label("Max concurrency").fill("4")
    page.get_by_label("Keep jobs for (days)").fill("14")
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_role("status")).to_have_text("Settings saved.")
    expect(page.get_by_label("Max concurrency")).to_have_value("4")
    expect(page.get_by_label("Keep jobs for (days)")).to_have_value("14")
    shot(page, "jobconfig-settings")

    # Phone width, dark: the form is still usable without sideways scrolling.
    page.set_viewport_size({"width": 375, "height": 800})
    page.emulate_media(color_scheme="dark")
    page.goto(f"{server.url}/jobconfigs/new")
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"the form scrolls sideways by {overflow}px at phone width"
    shot(page, "jobconfig-new-phone-dark")
    page.context.close()
    watch.check()
