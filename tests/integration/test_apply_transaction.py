"""``POST /api/v1/apply`` writes a document in one transaction, through a real server on
each engine: a refused write leaves nothing of the document in the database — no row,
no schedule moved or re-created, and no audit entry (neither of the writes nor of any
putting back)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select

from jobyard.store.schema import audit, jobconfigs, schedules, templates
from jobyard.store.sql.base import make_sync_engine, normalize_url
from tests.integration.conftest import Env, ServerFactory

API = "/api/v1"
YAML = {"Content-Type": "application/yaml"}
PASSWORD = "correct horse battery"

KEPT = """\
jobconfigs:
  - name: tx-kept
    command: [/bin/sh, -c, echo kept]
    timeout: 5
    schedules:
      - name: nightly
        cron: "0 0 3 * * ?"
"""


@pytest.fixture
async def server(store_url: str, start_server: ServerFactory) -> Env:
    """A server on a fresh database of each engine."""
    return await start_server(database_url=store_url)


@pytest.fixture
def db(server: Env) -> Iterator[Engine]:
    """The server's database, read directly."""
    engine = make_sync_engine(normalize_url(server.settings.effective_database_url))
    try:
        yield engine
    finally:
        engine.dispose()


def _snapshot(db: Engine) -> dict[str, Any]:
    """Every template, jobconfig and schedule row, and the audit trail's length."""
    with db.connect() as conn:
        return {
            "templates": conn.execute(select(templates).order_by(templates.c.id)).all(),
            "jobconfigs": conn.execute(select(jobconfigs).order_by(jobconfigs.c.id)).all(),
            "schedules": conn.execute(select(schedules).order_by(schedules.c.id)).all(),
            "audit": conn.execute(select(func.count()).select_from(audit)).scalar_one(),
        }


async def _apply(client: httpx.AsyncClient, document: str) -> httpx.Response:
    return await client.post(f"{API}/apply", params={"dry_run": "false"}, content=document,
                             headers=YAML)  # fmt: skip


async def _login(env: Env, name: str) -> httpx.AsyncClient:
    body = {"name": name, "role": "user", "password": PASSWORD}
    r = await env.client.post(f"{API}/users", json=body)
    assert r.status_code == 201, r.text
    async with httpx.AsyncClient(base_url=env.url) as anon:
        r = await anon.post(f"{API}/login", json={"name": name, "password": PASSWORD})
    assert r.status_code == 200, r.text
    headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
    return httpx.AsyncClient(base_url=env.url, headers=headers, timeout=30)


async def test_a_refusal_after_writes_of_every_kind_leaves_nothing(server: Env, db: Engine) -> None:
    r = await _apply(server.client, KEPT)
    assert r.status_code == 200, r.text
    before = _snapshot(db)
    # creates a template, a jobconfig naming it with a schedule, changes tx-kept and
    # deletes its schedule; the last jobconfig's pool is refused only when written
    document = """\
templates:
  - name: tx-tpl
    command: [/bin/sh, -c, echo t]
jobconfigs:
  - name: tx-new
    template: tx-tpl
    schedules:
      - every: 15m
  - name: tx-kept
    command: [/bin/sh, -c, echo kept]
    timeout: 9
    schedules: []
  - name: tx-last
    command: [/bin/sh, -c, echo last]
    pool: not a pool!
"""
    r = await _apply(server.client, document)
    assert r.status_code == 422, r.text
    report = r.json()["error"]["details"]["report"]
    assert [j["action"] for j in report["jobconfigs"]] == ["create", "update", "failed"]
    assert "pool" in report["jobconfigs"][2]["error"]
    assert _snapshot(db) == before

    fixed = document.replace("    pool: not a pool!\n", "")
    r = await _apply(server.client, fixed)
    assert r.status_code == 200, r.text
    assert [j["action"] for j in r.json()["jobconfigs"]] == ["created", "updated", "created"]
    after = _snapshot(db)
    assert len(after["templates"]) == 1 and len(after["jobconfigs"]) == 3
    assert after["audit"] - before["audit"] == 6  # template, 3 jobconfigs, 2 schedules


async def test_a_refusal_only_the_database_finds_leaves_nothing(server: Env, db: Engine) -> None:
    # a template name held by a template the caller may not see: the plan cannot know
    # it is taken, the INSERT finds it (as POST /templates would)
    body = {"name": "tx-taken", "command": ["/bin/sh", "-c", "echo admin"]}
    r = await server.client.post(f"{API}/templates", json=body)
    assert r.status_code == 201, r.text
    bob = await _login(server, "bob")
    async with bob:
        r = await _apply(bob, KEPT)
        assert r.status_code == 200, r.text
        before = _snapshot(db)
        document = """\
templates:
  - name: tx-mine
    command: [/bin/sh, -c, echo mine]
  - name: tx-taken
    command: [/bin/sh, -c, echo bob]
jobconfigs:
  - name: tx-kept
    command: [/bin/sh, -c, echo kept]
    timeout: 9
    schedules: []
"""
        planned = await bob.post(
            f"{API}/apply", params={"dry_run": "true"}, content=document, headers=YAML
        )
        assert [t["action"] for t in planned.json()["templates"]] == ["create", "create"]
        r = await _apply(bob, document)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "apply_refused" and "tx-taken" in error["message"]
    report = error["details"]["report"]
    assert report["rolled_back"] is True
    assert [t["action"] for t in report["templates"]] == ["create", "failed"]
    assert "already exists" in report["templates"][1]["error"]
    assert _snapshot(db) == before


def _pair(first: int, second: int) -> str:
    return "".join(
        f"  - name: tx-{name}\n    command: [/bin/sh, -c, echo {name}]\n    timeout: {value}\n"
        for name, value in (("one", first), ("two", second))
    )


@pytest.mark.pg
async def test_applies_on_two_replicas_serialise_whole(
    pg_url: str, start_server: ServerFactory, tmp_path: Path
) -> None:
    """Two replicas apply at once: X sets (1, 1); Y keeps tx-one at 0 and sets tx-two to
    2. In either order the result is X's or Y's document — never tx-one from X and
    tx-two from Y, which a plan made before X's commit and written after it would give
    (it plans tx-one unchanged)."""
    blobs = tmp_path / "shared-blobs"
    a = await start_server(database_url=pg_url, blobs_dir=blobs)
    b = await start_server(database_url=pg_url, blobs_dir=blobs, token=a.token)
    x, y = "jobconfigs:\n" + _pair(1, 1), "jobconfigs:\n" + _pair(0, 2)
    outcomes: set[tuple[int, int]] = set()
    for _ in range(12):
        r = await _apply(a.client, "jobconfigs:\n" + _pair(0, 0))
        assert r.status_code == 200, r.text
        answers = await asyncio.gather(_apply(a.client, x), _apply(b.client, y))
        assert [r.status_code for r in answers] == [200, 200], [r.text for r in answers]
        items = (await a.client.get(f"{API}/jobconfigs")).json()["items"]
        timeouts = {j["name"]: j["timeout"] for j in items}
        outcomes.add((timeouts["tx-one"], timeouts["tx-two"]))
    assert outcomes <= {(1, 1), (0, 2)}, outcomes
