"""The authorization matrix: every API route x every persona -> the expected status.

One real server for the module; its users, tokens and objects are built through the
API (admin creates users and grants policies; the owner creates the objects). Two
tables: ENFORCED (routes that already comply: asserted) and PENDING (the rule they
must follow; strict xfail, so a route that starts complying fails until it is moved
to ENFORCED). A route in neither table fails ``test_every_route_has_a_rule``.

Targets: template T and jobconfig J (child of T) owned by ``owner``; policies:
``view``/``execute``/``edit`` personas hold that action on ``jobconfigs template:T``
and on ``templates T`` (so ``template:<id>`` and id selectors are both exercised).
Destructive routes get fresh objects per call. The job-token personas are the
SESSION_IDs of two jobs that run for the whole module: one of the admin's, one of the
owner's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
import uvicorn

from jobyard.api.app import create_app
from jobyard.core.models import WorkerInfo
from jobyard.core.timeutil import utcnow
from jobyard.runtime import Runtime
from jobyard.settings import Settings
from tests.integration.authz_rules import (
    API,
    COMMAND,
    DRAINED_WORKER,
    PASSWORD,
    RULES,
    USERS,
    World,
    login,
    ok,
    running_session,
)
from tests.integration.conftest import _QuietServer, free_port
from tests.support.authz import Persona, Rule, as_params, missing_rules, run_rule, stale_rules

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def _build(url: str, admin_token: str) -> World:
    def client(token: str | None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=url, headers=headers, timeout=30)

    admin = client(admin_token)
    world = World(
        url=url, admin=admin, anon=client(None), clients={}, tokens={Persona.ADMIN: admin_token}
    )
    world.tokens[Persona.NO_TOKEN] = None
    for persona in USERS:
        body = {"name": persona.value, "role": "user", "password": PASSWORD}
        world.users[persona] = ok(await admin.post(f"{API}/users", json=body), 201)
        world.tokens[persona] = await login(url, persona.value)
        world.clients[persona] = client(world.tokens[persona])
    # A revoked personal token, and one that expires in a second.
    victim = world.clients[Persona.NO_POLICY]
    revoked = ok(await victim.post(f"{API}/tokens", json={"name": "revoked"}), 201)
    ok(await victim.delete(f"{API}/tokens/{revoked['id']}"), 204)
    world.tokens[Persona.REVOKED] = revoked["token"]
    body = {"name": "expiring", "expires_in_days": 1.0 / 86400}
    expiring = ok(await victim.post(f"{API}/tokens", json=body), 201)
    world.tokens[Persona.EXPIRED] = expiring["token"]

    owner = world.owner
    template = ok(
        await owner.post(f"{API}/templates", json={"name": "tpl-main", "command": COMMAND}), 201
    )
    world.ids["template_id"] = template["id"]
    for persona in (Persona.VIEW, Persona.EXECUTE, Persona.EDIT):
        await world.grant(persona, persona.value, "jobconfigs", f"template:{template['id']}")
        await world.grant(persona, persona.value, "templates", str(template["id"]))
    jc = await world.fresh_jobconfig()
    world.ids["jobconfig_id"] = jc["id"]
    world.ids["jobconfig_name"] = jc["name"]
    run = ok(await owner.post(f"{API}/jobconfigs/{jc['id']}/run", json={}), 201)
    world.ids["job_id"] = run["id"]
    world.ids["schedule_id"] = (await world.fresh_schedule(jc["id"]))["id"]
    files = {"file": ("tool.sh", b"echo tool\n", "application/octet-stream")}
    world.ids["package_id"] = ok(await owner.post(f"{API}/packages", files=files), 201)["id"]
    world.ids["user_id"] = world.users[Persona.OWNER]["id"]
    world.ids["name"] = "M"
    world.ids["policy_id"] = 1
    for base in (
        f"{API}/jobconfigs/{jc['id']}/macros",
        f"{API}/templates/{template['id']}/macros",
        f"{API}/users/{world.ids['user_id']}/macros",
        f"{API}/macros/account",
    ):
        ok(await admin.put(f"{base}/M", json={"value": "v", "secure": False}), 200)
    assert (await world.wait_ended(run["id"]))["status"] == "FINISHED"
    for persona, who in ((Persona.JOB_ADMIN, admin), (Persona.JOB_OWNER, owner)):
        job_id, session = await running_session(world, who)
        world.ids[persona.value] = job_id
        world.tokens[persona] = session
    worker = ok(await admin.post(f"{API}/worker-tokens", json={"name": "authz-worker"}), 201)
    world.tokens[Persona.WORKER] = worker["token"]
    await asyncio.sleep(1.1)  # the expiring token is now expired
    return world


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    home: Path = tmp_path_factory.mktemp("authz-home")
    settings = Settings(home=home, port=free_port(), workers=4, heartbeat_seconds=0.5)
    runtime = Runtime(settings)
    app = create_app(runtime)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=settings.port, log_level="warning", lifespan="on"
    )
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve())
    for _ in range(1000):
        if server.started or task.done():
            break
        await asyncio.sleep(0.02)
    if task.done():
        task.result()
    token = (home / "admin.token").read_text().strip()
    built = await _build(f"http://127.0.0.1:{settings.port}", token)
    # A remote worker's row to drain (draining a local slot would slow the other rules).
    await runtime.ctx.store.worker_upsert(
        WorkerInfo(
            id=DRAINED_WORKER, name=DRAINED_WORKER, pool="elsewhere", host="h", pid=1, slots=1,
            kind="remote", started_at=utcnow(), heartbeat_at=utcnow(), draining=False,
        )
    )  # fmt: skip
    try:
        yield built
    finally:
        for persona in (Persona.JOB_ADMIN, Persona.JOB_OWNER):
            if persona.value in built.ids:
                await built.admin.post(f"{API}/jobs/{built.ids[persona.value]}/abort")
        for c in (built.admin, built.anon, *built.clients.values()):
            await c.aclose()
        server.should_exit = True
        await asyncio.wait_for(task, 30)


async def test_every_route_has_a_rule(tmp_path: Path) -> None:
    app = create_app(Runtime(Settings(home=tmp_path)))
    assert missing_rules(app, RULES) == [], "declare a rule for every route"
    assert stale_rules(app, RULES) == []


@pytest.mark.parametrize("rule", as_params(RULES))
async def test_authorization_matrix(world: World, rule: Rule) -> None:
    problems = await run_rule(world.anon, world, rule, world.tokens)
    assert not problems, f"{rule.id}:\n  " + "\n  ".join(problems)
