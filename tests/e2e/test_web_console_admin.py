"""Users, policies, tokens and the audit log in the console, in a real browser.

Debian's Chromium, driven by Playwright against a ``jobyard up`` server with every other
host blocked: an admin creates a user through the Users page; that user, without any
policy, sees neither of the admin's two jobconfigs (in the list, nor at their direct
URLs); the admin grants them ``view`` on one by name; the user now sees that one only,
creates a personal token and sees its value once (not after a reload), and revokes it
through its confirm; the admin finds those actions in the audit page through its
filters. Every page is checked with axe-core (no serious or critical violation) and
screenshotted into ``var/test-artifacts/web/`` (light, dark and phone width).
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.browser import Watch, open_page, shot
from tests.support.server import RunningServer, server_fixture

server = server_fixture(scope="module", workers=1)

PASSWORD = "admin-browser-pass-1"
USER_PASSWORD = "dana-browser-pass-1"


def _api(server: RunningServer) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.token}"}, timeout=30
    )


def _open(browser: Browser, server: RunningServer, **options: Any) -> tuple[Page, Watch]:
    return open_page(browser, server.url, **options)


def _log_in(page: Page, server: RunningServer, name: str, password: str) -> None:
    page.goto(f"{server.url}/login")
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{server.url}/")


def _expected_errors(watch: Watch, *statuses: int) -> None:
    """Chromium reports pages answered with an error status; those we asked for are fine."""
    wanted = tuple(f"status of {s}" for s in statuses)
    assert all(any(w in e for w in wanted) for e in watch.errors), watch.errors
    watch.errors.clear()


@pytest.fixture(scope="module")
def setup(server: RunningServer) -> dict[str, int]:
    """An admin ``boss`` with a password; two jobconfigs of the bootstrap admin."""
    ids: dict[str, int] = {}
    with _api(server) as api:
        r = api.post("/api/v1/users", json={"name": "boss", "role": "admin", "password": PASSWORD})
        assert r.status_code == 201, r.text
        for name in ("shared-report", "private-report"):
            r = api.post(
                "/api/v1/jobconfigs",
                json={"name": name, "description": "owned by admin", "command": ["/bin/true"]},
            )
            assert r.status_code == 201, r.text
            ids[name] = int(r.json()["id"])
    return ids


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_admin_creates_a_user_grants_a_policy_and_audits_the_user(
    browser: Browser, server: RunningServer, setup: dict[str, int], scheme: str
) -> None:
    dana = f"dana-{scheme}"
    admin, admin_watch = _open(browser, server, color_scheme=scheme)
    _log_in(admin, server, "boss", PASSWORD)

    # The admin's nav has the admin pages; the Users page creates a user.
    nav = admin.get_by_role("navigation", name="Main")
    for link in ("Users", "Policies", "Audit", "Tokens", "My account"):
        expect(nav.get_by_role("link", name=link, exact=True)).to_be_visible()
    nav.get_by_role("link", name="Users", exact=True).click()
    expect(admin.get_by_role("heading", name="Users", level=1)).to_be_visible()
    admin.get_by_label("User name").fill(dana)
    admin.get_by_label("Role").select_option("user")
    admin.get_by_label("Password (empty: tokens only)").fill("short")
    admin.get_by_label("Repeat it").fill("short")
    # The browser's own check (minlength) stops a short password before it is sent.
    admin.get_by_role("button", name="Create user").click()
    expect(admin).to_have_url(f"{server.url}/users")
    admin.get_by_label("Password (empty: tokens only)").fill(USER_PASSWORD)
    admin.get_by_label("Repeat it").fill(USER_PASSWORD + "x")
    admin.get_by_role("button", name="Create user").click()
    expect(admin.get_by_role("alert")).to_contain_text("the two passwords differ")
    _expected_errors(admin_watch, 422)
    shot(admin, f"users-error-{scheme}")
    admin.get_by_label("Password (empty: tokens only)").fill(USER_PASSWORD)
    admin.get_by_label("Repeat it").fill(USER_PASSWORD)
    admin.get_by_role("button", name="Create user").click()
    expect(admin.get_by_role("status")).to_have_text("User created.")
    expect(admin.get_by_role("heading", level=1)).to_have_text(f"User {dana}")
    expect(admin.get_by_text("None: ")).to_be_visible()  # no policy yet
    shot(admin, f"user-{scheme}")
    admin.get_by_role("link", name="Users", exact=True).click()
    expect(admin.get_by_role("link", name=dana, exact=True)).to_be_visible()
    shot(admin, f"users-{scheme}")

    # The new user, without any policy, sees none of the admin's jobconfigs: neither in
    # the list nor at their direct URLs (the 404 of a missing one); no admin pages.
    user, user_watch = _open(browser, server, color_scheme=scheme)
    _log_in(user, server, dana, USER_PASSWORD)
    user_nav = user.get_by_role("navigation", name="Main")
    for link in ("Users", "Policies", "Audit"):
        expect(user_nav.get_by_role("link", name=link, exact=True)).to_have_count(0)
    user.goto(f"{server.url}/jobconfigs")
    expect(user.get_by_text("No jobconfig yet")).to_be_visible()
    for name in ("shared-report", "private-report"):
        user.goto(f"{server.url}/jobconfigs/{setup[name]}")
        expect(user.get_by_role("heading", level=1)).to_have_text("Not found")
        expect(user.get_by_role("alert")).not_to_contain_text(name)
    user.goto(f"{server.url}/jobconfigs/999999")
    expect(user.get_by_role("heading", level=1)).to_have_text("Not found")
    user.goto(f"{server.url}/audit")
    expect(user.get_by_role("heading", level=1)).to_have_text("Refused")
    expect(user.get_by_role("alert")).to_contain_text("for admins only")
    _expected_errors(user_watch, 404, 403)

    # The admin grants view on one of them, by name, on the Policies page.
    admin.get_by_role("link", name="Policies", exact=True).click()
    admin.get_by_label("User", exact=True).first.fill(dana)
    admin.get_by_label("May").select_option("view")
    admin.get_by_label("Resource").select_option("jobconfigs")
    admin.get_by_label("Which").fill("shared-report")
    admin.get_by_role("button", name="Grant").click()
    expect(admin.get_by_role("status")).to_have_text("Policy granted.")
    row = admin.locator("tbody tr", has_text=dana)
    expect(row).to_have_count(1)
    expect(row).to_contain_text(str(setup["shared-report"]))
    shot(admin, f"policies-{scheme}")

    # Now the user sees that one, and still not the other.
    user.goto(f"{server.url}/jobconfigs")
    expect(user.locator("tbody tr")).to_have_count(1)
    expect(user.get_by_role("link", name="shared-report")).to_be_visible()
    user.goto(f"{server.url}/jobconfigs/{setup['shared-report']}")
    expect(user.get_by_role("heading", level=1)).to_have_text("Jobconfig shared-report")
    user.goto(f"{server.url}/jobconfigs/{setup['private-report']}")
    expect(user.get_by_role("heading", level=1)).to_have_text("Not found")
    _expected_errors(user_watch, 404)

    # The user makes a personal token: its value is shown once, then never again.
    user.get_by_role("link", name="Tokens", exact=True).click()
    expect(user.get_by_text("No token yet.")).to_be_visible()
    user.get_by_label("Name (what it is for)").fill("laptop")
    user.get_by_label("Expires in (days; empty: never)").fill("30")
    user.get_by_role("button", name="Create token").click()
    secret = user.locator("#new-token").inner_text().strip()
    assert re.fullmatch(r"[A-Za-z0-9_\-.]{32,}", secret), secret
    expect(user.get_by_text("it is shown this once")).to_be_visible()
    assert secret not in user.url
    shot(user, f"token-created-{scheme}")
    with httpx.Client(base_url=server.url, timeout=30) as raw:
        me = raw.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
        assert me.status_code == 200 and me.json()["name"] == dana
    user.goto(f"{server.url}/tokens")
    expect(user.get_by_role("cell", name="laptop", exact=True)).to_be_visible()
    # The call above is its last use (column 5), shown in the browser's zone.
    used = user.locator("tbody tr", has_text="laptop").locator("td").nth(4).locator("time")
    expect(used).to_have_attribute("data-local", "1")
    assert secret not in user.content()
    shot(user, f"tokens-{scheme}")
    # Revoked through its confirm.
    user.get_by_text("Revoke “laptop”…").click()
    user.get_by_role("button", name="Yes, revoke “laptop”").click()
    expect(user.get_by_role("status")).to_have_text("Token revoked.")
    expect(user.locator("tbody tr", has_text="laptop")).to_contain_text("revoked")
    with httpx.Client(base_url=server.url, timeout=30) as raw:
        me = raw.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
        assert me.status_code == 401

    # Their own account page; a new password.
    user.get_by_role("link", name="My account", exact=True).click()
    expect(user.get_by_role("heading", name="My account", level=1)).to_be_visible()
    user.get_by_label("New password").fill(USER_PASSWORD + "2")
    user.get_by_label("Repeat it").fill(USER_PASSWORD + "2")
    user.get_by_role("button", name="Change password").click()
    expect(user.get_by_role("status")).to_have_text("Password changed.")
    shot(user, f"me-{scheme}")
    user.context.close()
    user_watch.check()

    # The admin finds all of it in the audit log, through the filters.
    admin.get_by_role("link", name="Audit", exact=True).click()
    expect(admin.get_by_role("heading", name="Audit log", level=1)).to_be_visible()
    admin.get_by_label("Actor").fill(dana)
    admin.get_by_role("button", name="Filter").click()
    rows = admin.locator("tbody tr")
    expect(rows.first).to_contain_text("user.update")  # newest first: the password
    expect(admin.locator("tbody")).to_contain_text("token.revoke")
    expect(admin.locator("tbody")).to_contain_text("token.create")
    expect(admin.locator("tbody")).not_to_contain_text("policy.grant")  # the admin's
    assert secret not in admin.content()
    shot(admin, f"audit-{scheme}")
    admin.get_by_label("Actor").fill("boss")
    admin.get_by_label("Action starts with").fill("policy.")
    admin.get_by_role("button", name="Filter").click()
    expect(rows.first).to_contain_text("policy.grant")
    expect(rows.first).to_contain_text(str(setup["shared-report"]))
    admin.get_by_label("Action starts with").fill("")
    admin.get_by_label("Object kind").fill("user")
    admin.get_by_label("Until (UTC)").fill("2000-01-01T00:00")
    admin.get_by_role("button", name="Filter").click()
    expect(admin.get_by_text("No entry matches these filters.")).to_be_visible()

    # Phone width: the admin pages do not scroll sideways.
    admin.set_viewport_size({"width": 375, "height": 800})
    for path in ("/users", "/policies", "/audit", "/me", "/tokens"):
        admin.goto(f"{server.url}{path}")
        overflow = admin.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{path} scrolls sideways by {overflow}px at phone width"
    shot(admin, f"tokens-phone-{scheme}")
    admin.context.close()
    admin_watch.check()
