"""Least authority for what runs inside a job, tried as an attacker would, against real
servers.

The escalations run from INSIDE real jobs: a probe script run by ``/usr/bin/python3``
calls the API at ``$JOBYARD_API_URL`` with ``Authorization: Bearer $SESSION_ID`` and
prints every answer's status on one ``RESULT`` line of its log, which the test reads
through the API. The probe's plan travels as an argument of its command (a job reads no
file of the test's ``tmp_path``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.conftest import ENGINES
from tests.integration.conftest import TERMINAL, Env, ServerFactory
from tests.integration.conftest import start_server as start_server

API = "/api/v1"
PASSWORD = "correct horse battery"
PYTHON = "/usr/bin/python3"

#: The probe: runs ``[label, method, path, body]`` calls with the job's SESSION_ID and
#: prints ``RESULT {label: [status, text]}``. A body ``{"__file__": name}`` is sent as a
#: multipart upload of a small file named ``name``.
PROBE = r"""
import json, os, sys, urllib.error, urllib.request
api, token = os.environ["JOBYARD_API_URL"], os.environ["SESSION_ID"]
out = {}
for label, method, path, body in json.loads(sys.argv[1]):
    headers = {"Authorization": "Bearer " + token}
    data = None
    if isinstance(body, dict) and "__file__" in body:
        b = "probe-boundary"
        data = (f"--{b}\r\nContent-Disposition: form-data; name=\"file\"; "
                f"filename=\"{body['__file__']}\"\r\nContent-Type: application/octet-stream"
                f"\r\n\r\necho pwned\n\r\n--{b}--\r\n").encode()
        headers["Content-Type"] = "multipart/form-data; boundary=" + b
    elif body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(api + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    out[label] = [status, text[:2500]]
print("RESULT " + json.dumps(out), flush=True)
"""

Call = tuple[str, str, str, Any]


def probe(calls: list[Call]) -> list[str]:
    """The command of a job that makes ``calls`` with its SESSION_ID."""
    return [PYTHON, "-c", PROBE, json.dumps(calls)]


def ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, f"{r.request.method} {r.request.url}: {r.text}"
    return r.json() if r.content else None


@dataclass
class Site:
    """A server, its admin client and the users made for a test."""

    env: Env
    clients: dict[str, httpx.AsyncClient] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)

    @property
    def admin(self) -> httpx.AsyncClient:
        return self.env.client

    async def user(self, name: str) -> httpx.AsyncClient:
        """Create user ``name`` and log in as them."""
        body = {"name": name, "role": "user", "password": PASSWORD}
        self.ids[name] = ok(await self.admin.post(f"{API}/users", json=body), 201)["id"]
        async with httpx.AsyncClient(base_url=self.env.url) as anon:
            login = {"name": name, "password": PASSWORD}
            token = ok(await anon.post(f"{API}/login", json=login))["access_token"]
        client = httpx.AsyncClient(
            base_url=self.env.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        self.clients[name] = client
        return client

    async def grant(self, name: str, action: str, resource: str, selector: str) -> None:
        body = {"action": action, "resource": resource, "selector": selector}
        ok(await self.admin.post(f"{API}/users/{self.ids[name]}/policies", json=body), 201)

    async def jobconfig(self, client: httpx.AsyncClient, name: str, **body: Any) -> Any:
        body.setdefault("command", ["/bin/sh", "-c", "true"])
        return ok(await client.post(f"{API}/jobconfigs", json={"name": name, **body}), 201)

    async def run(self, client: httpx.AsyncClient, jobconfig_id: int, **body: Any) -> Any:
        return ok(await client.post(f"{API}/jobconfigs/{jobconfig_id}/run", json=body), 201)

    async def ended(self, job_id: int, timeout: float = 60.0) -> Any:
        return await self.env.wait_status(job_id, TERMINAL, timeout=timeout)

    async def results(self, job_id: int) -> dict[str, tuple[int, str]]:
        """The RESULT line of a probe job (after it ended FINISHED)."""
        job = await self.ended(job_id)
        log = (await self.admin.get(f"{API}/jobs/{job_id}/log")).text
        assert job["status"] == "FINISHED", f"probe job {job_id}: {job}\n{log}"
        for line in log.splitlines():
            if " RESULT " in line:
                found = json.loads(line.split(" RESULT ", 1)[1])
                return {k: (int(v[0]), str(v[1])) for k, v in found.items()}
        raise AssertionError(f"probe job {job_id} printed no RESULT:\n{log}")

    async def close(self) -> None:
        for client in self.clients.values():
            await client.aclose()


@pytest.fixture
async def site(start_server: ServerFactory) -> AsyncIterator[Site]:
    """One server on embedded SQLite."""
    made = Site(await start_server(workers=4))
    try:
        yield made
    finally:
        await made.close()


def statuses(found: dict[str, tuple[int, str]]) -> dict[str, int]:
    return {label: status for label, (status, _) in found.items()}


# -- finding 2: edit must not become the owner's authority ------------------------------


def _escalations(site: Site, jobconfig_id: int, hidden_id: int, shared_id: int) -> list[Call]:
    """What the editor's code tries with the admin's SESSION_ID, and what it may do."""
    eve = site.ids["eve"]
    grant = {"action": "edit", "resource": "jobconfigs", "selector": "*"}
    return [
        ("create_user", "POST", f"{API}/users", {"name": "mallory", "role": "admin"}),
        ("list_users", "GET", f"{API}/users", None),
        ("grant_policy", "POST", f"{API}/users/{eve}/policies", grant),
        ("account_macro", "PUT", f"{API}/macros/account/OWNED", {"value": "1"}),
        ("jobconfig_macro", "PUT", f"{API}/jobconfigs/{jobconfig_id}/macros/X", {"value": "1"}),
        ("own_macro", "PUT", f"{API}/me/macros/X", {"value": "1"}),
        ("user_macro", "PUT", f"{API}/users/{eve}/macros/X", {"value": "1"}),
        ("mint_token", "POST", f"{API}/tokens", {"name": "forever"}),
        ("list_tokens", "GET", f"{API}/tokens", None),
        ("audit", "GET", f"{API}/audit", None),
        ("policies", "GET", f"{API}/users/{eve}/policies", None),
        ("create_jobconfig", "POST", f"{API}/jobconfigs", {"name": "evil", "command": ["id"]}),
        ("change_jobconfig", "PATCH", f"{API}/jobconfigs/{shared_id}", {"command": ["id"]}),
        ("create_template", "POST", f"{API}/templates", {"name": "evil-t", "command": ["id"]}),
        (
            "create_schedule",
            "POST",
            f"{API}/jobconfigs/{jobconfig_id}/schedules",
            {"interval_minutes": 1},
        ),
        ("upload_package", "POST", f"{API}/packages", {"__file__": "evil.sh"}),
        ("adhoc_job", "POST", f"{API}/jobs", {"command": ["id"]}),
        # jobs: only of jobconfigs the admin AND eve may execute
        ("run_hidden", "POST", f"{API}/jobconfigs/{hidden_id}/run", {"hold": True}),
        ("read_hidden", "GET", f"{API}/jobconfigs/{hidden_id}", None),
        ("run_shared", "POST", f"{API}/jobconfigs/{shared_id}/run", {"hold": True}),
        ("read_own", "GET", f"{API}/jobconfigs/{jobconfig_id}", None),
        ("me", "GET", f"{API}/me", None),
        # the admin's private macros: eve may not read them, so neither may the job
        ("private_macros", "GET", f"{API}/me/macros", None),
        ("preview", "GET", f"{API}/jobconfigs/{jobconfig_id}/macros/resolved", None),
    ]


REFUSED = {
    "create_user": 403,
    "list_users": 403,
    "grant_policy": 403,
    "account_macro": 403,
    "jobconfig_macro": 403,
    "own_macro": 403,
    "user_macro": 403,
    "mint_token": 403,
    "list_tokens": 403,
    "audit": 403,
    "policies": 403,
    "create_jobconfig": 403,
    "change_jobconfig": 403,
    "create_template": 403,
    "create_schedule": 403,
    "upload_package": 403,
    "adhoc_job": 403,
    "run_hidden": 404,  # eve may not even see it: the 404 of a missing jobconfig
    "read_hidden": 404,
    "run_shared": 201,
    "read_own": 200,
    "me": 200,
    "private_macros": 403,
    "preview": 403,
}


async def _editor_rewrites_admin_jobconfig(site: Site) -> tuple[Any, Any, Any]:
    """The admin owns jobconfig ``nightly`` (and ``hidden``, ``shared``); eve may only
    edit ``nightly`` (and execute ``shared``), and rewrites its command into a probe.
    Returns ``nightly`` as created and as eve left it, and ``shared``."""
    jc = await site.jobconfig(site.admin, "nightly")
    hidden = await site.jobconfig(site.admin, "hidden")
    shared = await site.jobconfig(site.admin, "shared")
    eve = await site.user("eve")
    await site.grant("eve", "edit", "jobconfigs", str(jc["id"]))
    await site.grant("eve", "execute", "jobconfigs", str(shared["id"]))
    calls = _escalations(site, jc["id"], hidden["id"], shared["id"])
    changed = ok(await eve.patch(f"{API}/jobconfigs/{jc['id']}", json={"command": probe(calls)}))
    return jc, changed, shared


@pytest.mark.parametrize("engine", ENGINES)
async def test_an_editor_rewriting_an_admin_jobconfig_gains_no_authority(
    start_server: ServerFactory,
    request: pytest.FixtureRequest,
    engine: str,
) -> None:
    overrides: dict[str, Any] = {"workers": 4}
    if engine == "postgresql":
        overrides["database_url"] = request.getfixturevalue("pg_url")
    site = Site(await start_server(**overrides))
    try:
        jc, changed, shared = await _editor_rewrites_admin_jobconfig(site)
        run = await site.run(site.admin, jc["id"])
        found = await site.results(run["id"])
        assert statuses(found) == REFUSED, found
        assert "SESSION_ID" in found["create_user"][1]
        # Eve is the definer of what the admin's job ran: its token was bounded by her.
        assert jc["definition_changed_by"] == "admin"
        assert changed["definition_changed_by"] == "eve"
        assert changed["definition_changed_at"] is not None
        assert run["definers"] == ["eve"]
        # Nothing was made: no user, no policy, no macro, no definition.
        users = ok(await site.admin.get(f"{API}/users"))["items"]
        assert "mallory" not in {u["name"] for u in users}
        macros = ok(await site.admin.get(f"{API}/macros/account"))["items"]
        assert "OWNED" not in {m["name"] for m in macros}
        names = {j["name"] for j in ok(await site.admin.get(f"{API}/jobconfigs"))["items"]}
        assert "evil" not in names
        # The job it could submit is audited with the job that submitted it, and stays
        # bounded by eve (who shaped the job that submitted it).
        child = json.loads(found["run_shared"][1])
        assert child["jobconfig_id"] == shared["id"] and child["definers"] == ["eve"]
        audit = ok(await site.admin.get(f"{API}/audit", params={"action": "job.submit"}))
        entry = next(e for e in audit["items"] if e["object_id"] == str(child["id"]))
        assert entry["actor"] == "user:admin"
        assert entry["details"]["via_job"] == run["id"]
        events = ok(await site.admin.get(f"{API}/jobs/{child['id']}/events"))["items"]
        assert events[0]["reason"] == f"submitted (api) by job {run['id']}"
    finally:
        await site.close()


async def test_a_scheduled_firing_is_bounded_by_the_editor_too(
    start_server: ServerFactory,
) -> None:
    site = Site(await start_server(workers=2, scheduler={"allow_seconds": True}))
    try:
        jc = await site.jobconfig(site.admin, "hourly")
        hidden = await site.jobconfig(site.admin, "hidden")
        await site.user("eve")
        await site.grant("eve", "edit", "jobconfigs", str(jc["id"]))
        calls: list[Call] = [
            ("create_user", "POST", f"{API}/users", {"name": "mallory", "role": "admin"}),
            ("run_hidden", "POST", f"{API}/jobconfigs/{hidden['id']}/run", {"hold": True}),
            ("read_own", "GET", f"{API}/jobconfigs/{jc['id']}", None),
        ]
        eve = site.clients["eve"]
        ok(await eve.patch(f"{API}/jobconfigs/{jc['id']}", json={"command": probe(calls)}))
        body = {"cron": "* * * * * ?", "name": "every-second"}
        path = f"{API}/jobconfigs/{jc['id']}/schedules"
        schedule = ok(await site.admin.post(path, json=body), 201)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        fired: list[Any] = []
        while not fired:
            assert loop.time() < deadline, "the schedule did not fire"
            await asyncio.sleep(0.1)
            params = {"jobconfig_id": str(jc["id"])}
            fired = ok(await site.admin.get(f"{API}/jobs", params=params))["items"]
        path = f"{API}/jobconfigs/{jc['id']}/schedules/{schedule['id']}/pause"
        ok(await site.admin.post(path))
        job = fired[-1]
        assert (job["trigger"], job["submitted_by"], job["definers"]) == (
            "schedule",
            "admin",
            ["eve"],
        )
        found = await site.results(job["id"])
        assert statuses(found) == {"create_user": 403, "run_hidden": 404, "read_own": 200}
    finally:
        await site.close()


async def test_the_bound_is_snapshot_and_a_deactivated_definer_grants_nothing(site: Site) -> None:
    jc = await site.jobconfig(site.admin, "nightly")
    other = await site.jobconfig(site.admin, "other")
    eve = await site.user("eve")
    await site.grant("eve", "edit", "jobconfigs", str(jc["id"]))
    await site.grant("eve", "execute", "jobconfigs", str(other["id"]))
    calls: list[Call] = [
        ("read_own", "GET", f"{API}/jobconfigs/{jc['id']}", None),
        ("run_other", "POST", f"{API}/jobconfigs/{other['id']}/run", {"hold": True}),
        ("list", "GET", f"{API}/jobconfigs", None),
    ]
    ok(await eve.patch(f"{API}/jobconfigs/{jc['id']}", json={"command": probe(calls)}))
    # A job submitted now keeps eve as its bound, whatever happens to the jobconfig later
    # (a description is not what it runs: eve stays its definer meanwhile).
    first = await site.run(site.admin, jc["id"], hold=True)
    assert first["definers"] == ["eve"]
    base = f"{API}/jobconfigs/{jc['id']}"
    ok(await site.admin.patch(base, json={"description": "ok"}))
    assert ok(await site.admin.get(base))["definition_changed_by"] == "eve"
    changed = probe([*calls, ("again", "GET", base, None)])
    ok(await site.admin.patch(base, json={"command": changed}))
    assert ok(await site.admin.get(base))["definition_changed_by"] == "admin"
    # Eve is deactivated: a job she shaped can do nothing, not even read its jobconfig.
    ok(await site.admin.post(f"{API}/users/{site.ids['eve']}/deactivate"))
    ok(await site.admin.post(f"{API}/jobs/{first['id']}/release"))
    found = await site.results(first["id"])
    assert statuses(found) == {"read_own": 404, "run_other": 404, "list": 200}
    assert json.loads(found["list"][1])["items"] == []


# -- finding 3: execute only must not steer someone else's jobconfig --------------------


async def _execute_only_world(site: Site) -> tuple[Any, httpx.AsyncClient]:
    """Jobconfig ``etl`` of the admin (template ``base``) with a plain DB_HOST beside a
    secure DB_PASSWORD, parameter DAY, and secure macros at every other level; bob may
    only execute it, and keeps a secure macro of his own."""
    template = ok(await site.admin.post(f"{API}/templates", json={"name": "base"}), 201)
    command = [PYTHON, "-c", "import os; print('DAY=' + os.environ.get('DAY', ''))"]
    jc = await site.jobconfig(
        site.admin,
        "etl",
        command=command,
        template_id=template["id"],
        macros={"DB_HOST": "db.internal"},
        parameters=["DAY"],
    )
    secret = {"value": "s3cret-value", "secure": True}
    for base in (
        f"{API}/jobconfigs/{jc['id']}/macros/DB_PASSWORD",
        f"{API}/templates/{template['id']}/macros/TPL_KEY",
        f"{API}/macros/account/ACCT_KEY",
    ):
        ok(await site.admin.put(base, json=secret))
    bob = await site.user("bob")
    await site.grant("bob", "execute", "jobconfigs", str(jc["id"]))
    ok(await bob.put(f"{API}/me/macros/BOB_KEY", json=secret))
    return jc, bob


def _refusal(r: httpx.Response) -> str:
    assert r.status_code == 422, r.text
    message: str = r.json()["error"]["message"]
    return message


async def test_execute_only_may_set_parameters_and_nothing_that_steers_or_leaks(
    site: Site,
) -> None:
    jc, bob = await _execute_only_world(site)
    run = f"{API}/jobconfigs/{jc['id']}/run"

    async def refused(macros: dict[str, str], client: httpx.AsyncClient = bob) -> str:
        return _refusal(await client.post(run, json={"macros": macros, "hold": True}))

    job = ok(await bob.post(run, json={"macros": {"DAY": "monday"}}), 201)
    assert (await site.ended(job["id"]))["status"] == "FINISHED"
    assert "DAY=monday" in (await site.admin.get(f"{API}/jobs/{job['id']}/log")).text

    # A plain macro beside a secure one is not a parameter: not settable with execute.
    message = await refused({"DB_HOST": "attacker.example"})
    assert "DB_HOST" in message and "parameter" in message and "DAY" in message
    # Names that steer loaders and interpreters: refused for everyone.
    for name, value in (
        ("PATH", "/tmp/evilbin:/usr/bin:/bin"),
        ("LD_PRELOAD", "/tmp/evil.so"),
        ("LD_LIBRARY_PATH", "/tmp"),
        ("PYTHONPATH", "/tmp/evil"),
        ("PYTHONSTARTUP", "/tmp/evil.py"),
        ("BASH_ENV", "/tmp/evil.sh"),
        ("NODE_OPTIONS", "--require /tmp/evil.js"),
    ):
        message = await refused({name: value})
        assert name in message and "run time" in message, message
        message = await refused({name: value}, site.admin)  # owners and admins too
        assert name in message, message
    # Secure names at every level: refused, naming where to change them.
    levels = {
        "DB_PASSWORD": f"jobconfig level: change it there (PUT /api/v1/jobconfigs/{jc['id']}"
        "/macros/DB_PASSWORD)",
        "TPL_KEY": f"template level: change it there (PUT /api/v1/templates/{jc['template_id']}"
        "/macros/TPL_KEY)",
        "ACCT_KEY": "account level: change it there (PUT /api/v1/macros/account/ACCT_KEY)",
        "BOB_KEY": "user level: change it there (PUT /api/v1/me/macros/BOB_KEY)",
    }
    for name, where in levels.items():
        message = await refused({name: "guess"})
        assert f"{name} is a secure macro of the {where}" in message, message
        assert "s3cret-value" not in message
    # Execution macros cannot be set either.
    for name in ("SESSION_ID", "JOBYARD_API_URL", "JOB_ID"):
        assert name in await refused({name: "x"}, site.admin)
    # Caps: count and bytes, whoever asks.
    many = {f"M{i}": "x" for i in range(101)}
    assert "at most 100" in await refused(many, site.admin)
    big = {f"B{i}": "y" * 10_000 for i in range(7)}
    assert f"at most {64 * 1024} bytes" in await refused(big, site.admin)
    # Nothing was submitted by the refusals.
    jobs = ok(await site.admin.get(f"{API}/jobs", params={"jobconfig_id": str(jc["id"])}))
    assert [j["id"] for j in jobs["items"]] == [job["id"]]


async def test_an_editor_may_set_any_name_but_loader_and_secure_ones(site: Site) -> None:
    jc, _bob = await _execute_only_world(site)
    carol = await site.user("carol")
    await site.grant("carol", "edit", "jobconfigs", str(jc["id"]))
    await site.grant("carol", "execute", "jobconfigs", str(jc["id"]))
    run = f"{API}/jobconfigs/{jc['id']}/run"
    body = {"macros": {"DB_HOST": "db2.internal", "EXTRA": "1", "TMPDIR": "/tmp"}, "hold": True}
    ok(await carol.post(run, json=body), 201)
    assert "PATH" in _refusal(await carol.post(run, json={"macros": {"PATH": "/x"}}))
    message = _refusal(await carol.post(run, json={"macros": {"DB_PASSWORD": "x"}}))
    assert "DB_PASSWORD is a secure macro of the jobconfig level" in message


async def test_a_job_token_follows_the_run_time_rules(site: Site) -> None:
    """From inside bob's job: his SESSION_ID may pass parameters, nothing else."""
    jc, bob = await _execute_only_world(site)
    run = f"{API}/jobconfigs/{jc['id']}/run"
    calls: list[Call] = [
        ("parameter", "POST", run, {"macros": {"DAY": "tuesday"}, "hold": True}),
        ("plain", "POST", run, {"macros": {"DB_HOST": "attacker.example"}, "hold": True}),
        ("loader", "POST", run, {"macros": {"LD_PRELOAD": "/tmp/x.so"}, "hold": True}),
        ("secure", "POST", run, {"macros": {"DB_PASSWORD": "guess"}, "hold": True}),
    ]
    prober = await site.jobconfig(bob, "bob-probe", command=probe(calls))
    job = await site.run(bob, prober["id"])
    found = await site.results(job["id"])
    assert statuses(found) == {"parameter": 201, "plain": 422, "loader": 422, "secure": 422}
    assert "jobconfig level" in found["secure"][1]


# -- finding 4: a viewer does not see the submitter's private macros ----------------------


async def test_a_viewer_of_a_job_does_not_see_the_submitters_private_macros(site: Site) -> None:
    dave = await site.user("dave")
    victor = await site.user("victor")
    ok(await dave.put(f"{API}/me/macros/DAVE_PRIVATE", json={"value": "dave-only"}))
    command = [PYTHON, "-c", "print('ran')"]
    jc = await site.jobconfig(dave, "daves", command=command, macros={"SHARED": "visible"})
    await site.grant("victor", "view", "jobconfigs", str(jc["id"]))
    job = await site.run(dave, jc["id"])
    assert (await site.ended(job["id"]))["status"] == "FINISHED"

    def by_name(r: httpx.Response) -> dict[str, Any]:
        return {i["name"]: i for i in ok(r)["items"]}

    seen = by_name(await victor.get(f"{API}/jobs/{job['id']}/macros"))
    assert seen["DAVE_PRIVATE"] == {
        "name": "DAVE_PRIVATE",
        "value": None,
        "level": "user",
        "secure": False,
    }
    assert seen["SHARED"]["value"] == "visible"
    assert (await victor.get(f"{API}/users/{site.ids['dave']}/macros")).status_code == 404
    for client in (dave, site.admin):
        own = by_name(await client.get(f"{API}/jobs/{job['id']}/macros"))
        assert own["DAVE_PRIVATE"]["value"] == "dave-only"


async def test_a_job_shaped_by_someone_else_gets_no_private_macros_of_its_submitter(
    site: Site,
) -> None:
    bob = await site.user("bob")
    eve = await site.user("eve")
    ok(await bob.put(f"{API}/me/macros/BOB_PLAIN", json={"value": "bob-plain"}))
    secure = {"value": "bob-secret-value", "secure": True}
    ok(await bob.put(f"{API}/me/macros/BOB_SECRET", json=secure))
    # Prints the values reversed: masking would not hide them.
    show = (
        "import os; print('plain=' + os.environ.get('BOB_PLAIN', '-')[::-1]); "
        "print('secret=' + os.environ.get('BOB_SECRET', '-')[::-1])"
    )
    eves = await site.jobconfig(eve, "eves", command=[PYTHON, "-c", show])
    admins = await site.jobconfig(site.admin, "admins", command=[PYTHON, "-c", show])
    for jc in (eves, admins):
        await site.grant("bob", "execute", "jobconfigs", str(jc["id"]))
    bobs = await site.jobconfig(bob, "bobs", command=[PYTHON, "-c", show])

    async def run_as_bob(jobconfig_id: int) -> tuple[str, Any]:
        job = await site.run(bob, jobconfig_id)
        assert (await site.ended(job["id"]))["status"] == "FINISHED"
        log = (await site.admin.get(f"{API}/jobs/{job['id']}/log")).text
        record = ok(await site.admin.get(f"{API}/jobs/{job['id']}/macros"))["items"]
        return log, {m["name"] for m in record}

    log, names = await run_as_bob(eves["id"])
    assert "plain=-" in log and "secret=-" in log, log
    assert "eulav-terces-bob" not in log and "nialp-bob" not in log
    assert "user-level macros of bob not given to this job" in log and "eve" in log
    assert not names & {"BOB_PLAIN", "BOB_SECRET"}
    for trusted in (admins, bobs):  # shaped by an admin, or by bob himself: they are his
        log, names = await run_as_bob(trusted["id"])
        assert "plain=nialp-bob" in log and "secret=eulav-terces-bob" in log, log
        assert {"BOB_PLAIN", "BOB_SECRET"} <= names


async def test_an_editor_of_the_submitters_own_jobconfig_gets_none_of_their_macros(
    site: Site,
) -> None:
    """The level withheld from the submitter must not come back as the owner's own: here
    the owner IS the submitter, and an editor decided what the job runs."""
    bob = await site.user("bob")
    eve = await site.user("eve")
    ok(await bob.put(f"{API}/me/macros/BOB_PLAIN", json={"value": "bob-plain"}))
    bobs = await site.jobconfig(bob, "bobs-shared", command=["/bin/sh", "-c", "true"])
    await site.grant("eve", "edit", "jobconfigs", str(bobs["id"]))
    show = "import os; print('plain=' + os.environ.get('BOB_PLAIN', '-')[::-1])"
    ok(await eve.patch(f"{API}/jobconfigs/{bobs['id']}", json={"command": [PYTHON, "-c", show]}))

    job = await site.run(bob, bobs["id"])

    assert (await site.ended(job["id"]))["status"] == "FINISHED"
    log = (await site.admin.get(f"{API}/jobs/{job['id']}/log")).text
    assert "plain=-" in log and "nialp-bob" not in log, log
    assert "user-level macros of bob not given to this job" in log
    record = ok(await site.admin.get(f"{API}/jobs/{job['id']}/macros"))["items"]
    assert "BOB_PLAIN" not in {m["name"] for m in record}


# -- ad-hoc jobs ------------------------------------------------------------------------


async def test_adhoc_jobs_need_admin_or_the_adhoc_policy(site: Site) -> None:
    alice = await site.user("alice")
    body = {"command": [PYTHON, "-c", "print('adhoc')"]}
    r = await alice.post(f"{API}/jobs", json=body)
    assert r.status_code == 403, r.text
    assert "jobyard policies grant alice execute adhoc '*'" in r.json()["error"]["message"]
    uid = site.ids["alice"]
    for bad in (
        {"action": "view", "resource": "adhoc", "selector": "*"},
        {"action": "execute", "resource": "adhoc", "selector": "1"},
    ):
        r = await site.admin.post(f"{API}/users/{uid}/policies", json=bad)
        assert r.status_code == 422, r.text
        assert "only action 'execute' with selector '*'" in r.json()["error"]["message"]
    await site.grant("alice", "execute", "adhoc", "*")
    job = ok(await alice.post(f"{API}/jobs", json=body), 201)
    assert (await site.ended(job["id"]))["status"] == "FINISHED"
    audit = ok(await site.admin.get(f"{API}/audit", params={"action": "job.submit"}))
    entry = next(e for e in audit["items"] if e["object_id"] == str(job["id"]))
    assert entry["actor"] == "user:alice" and entry["details"]["adhoc"] is True
    # Rerunning an ad-hoc job is an ad-hoc submission: it needs the right as well.
    policies = ok(await site.admin.get(f"{API}/users/{uid}/policies"))["items"]
    ok(await site.admin.delete(f"{API}/users/{uid}/policies/{policies[0]['id']}"), 204)
    r = await alice.post(f"{API}/jobs/{job['id']}/rerun")
    assert r.status_code == 403, r.text


# -- legitimate use still works ---------------------------------------------------------


async def test_a_job_token_reads_its_jobconfig_and_runs_what_its_user_may(site: Site) -> None:
    ursula = await site.user("ursula")
    target = await site.jobconfig(ursula, "target", command=[PYTHON, "-c", "print('target ran')"])
    calls: list[Call] = [
        ("read_own", "GET", f"{API}/jobconfigs/JC_SELF", None),
        ("run_target", "POST", f"{API}/jobconfigs/{target['id']}/run", {}),
        ("jobs", "GET", f"{API}/jobs", None),
    ]
    prober = await site.jobconfig(ursula, "prober", command=["/bin/true"])
    calls[0] = ("read_own", "GET", f"{API}/jobconfigs/{prober['id']}", None)
    ok(await ursula.patch(f"{API}/jobconfigs/{prober['id']}", json={"command": probe(calls)}))
    job = await site.run(ursula, prober["id"])
    assert job["definers"] == []
    found = await site.results(job["id"])
    assert statuses(found) == {"read_own": 200, "run_target": 201, "jobs": 200}
    assert json.loads(found["read_own"][1])["name"] == "prober"
    child = json.loads(found["run_target"][1])
    assert (await site.ended(child["id"]))["status"] == "FINISHED"
    assert "target ran" in (await site.admin.get(f"{API}/jobs/{child['id']}/log")).text


# -- definers: who decided what a job runs ----------------------------------------------


async def test_definers_follow_real_changes_of_what_runs(site: Site) -> None:
    template = ok(
        await site.admin.post(f"{API}/templates", json={"name": "t", "command": ["true"]}), 201
    )
    jc = await site.jobconfig(
        site.admin, "child", command=None, template_id=template["id"], parameters=["B", "A"]
    )
    assert (jc["definition_changed_by"], jc["parameters"]) == ("admin", ["A", "B"])
    eve = await site.user("eve")
    await site.grant("eve", "edit", "jobconfigs", str(jc["id"]))
    await site.grant("eve", "edit", "templates", str(template["id"]))
    base = f"{API}/jobconfigs/{jc['id']}"

    async def definer() -> str:
        return str(ok(await site.admin.get(base))["definition_changed_by"])

    # Changes of fields that do not decide what runs leave the definer alone ...
    ok(await eve.patch(base, json={"description": "new", "max_concurrent": 3}))
    ok(await eve.patch(base, json={"parameters": ["A", "B"]}))  # the same set
    assert await definer() == "admin"
    # ... a real change of a plain macro makes eve the definer.
    ok(await eve.put(f"{base}/macros/REGION", json={"value": "eu"}))
    assert await definer() == "eve"
    ok(await site.admin.put(f"{base}/macros/REGION", json={"value": "eu"}))  # unchanged value
    assert await definer() == "eve"
    ok(await site.admin.patch(base, json={"parameters": ["A"]}))
    assert await definer() == "admin"
    # A schedule's macros count as the jobconfig's.
    body = {"interval_minutes": 60, "paused": True, "macros": {"MODE": "full"}}
    ok(await eve.post(f"{base}/schedules", json=body), 201)
    assert await definer() == "eve"
    ok(await site.admin.patch(base, json={"command": ["/bin/true"]}))
    assert await definer() == "admin"
    # The template's definer bounds its children's jobs too.
    ok(await eve.patch(f"{API}/templates/{template['id']}", json={"command": ["/bin/false"]}))
    t = ok(await site.admin.get(f"{API}/templates/{template['id']}"))
    assert t["definition_changed_by"] == "eve"
    job = await site.run(site.admin, jc["id"], hold=True)
    assert job["definers"] == ["eve"]
    # Template export and import carry the parameters.
    exported = ok(await site.admin.get(f"{API}/templates/{template['id']}/export"))
    assert exported["jobconfigs"][0]["parameters"] == ["A"]
    exported["jobconfigs"][0]["parameters"] = ["Z", "A"]
    report = ok(await site.admin.post(f"{API}/templates/import", json=exported))
    assert report["jobconfigs"][0]["action"] == "updated"
    assert ok(await site.admin.get(base))["parameters"] == ["A", "Z"]
    # Parameters naming what can never be set at run time are refused.
    for name in ("PATH", "SESSION_ID", "LD_AUDIT"):
        r = await site.admin.patch(base, json={"parameters": [name]})
        assert r.status_code == 422 and name in r.json()["error"]["message"], r.text
