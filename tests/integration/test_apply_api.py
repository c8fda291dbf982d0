"""``POST /api/v1/apply`` (all or nothing, problems located), re-pushed packages, and
running a jobconfig by name, through a real server."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx

from tests.integration.conftest import Env

API = "/api/v1"
YAML = {"Content-Type": "application/yaml"}


async def _apply(
    client: httpx.AsyncClient, body: str | dict[str, Any], *, dry_run: bool = False
) -> httpx.Response:
    params = {"dry_run": "true" if dry_run else "false"}
    if isinstance(body, str):
        return await client.post(f"{API}/apply", params=params, content=body, headers=YAML)
    return await client.post(f"{API}/apply", params=params, json=body)


async def _jobconfig(client: httpx.AsyncClient, name: str) -> dict[str, Any] | None:
    items = (await client.get(f"{API}/jobconfigs", params={"name": name})).json()["items"]
    return dict(items[0]) if items else None


async def test_a_refused_write_applies_nothing(env: Env) -> None:
    r = await _apply(
        env.client, "jobconfigs:\n  - name: an-two\n    command: [x]\n    timeout: 5\n"
    )
    assert r.status_code == 200, r.text
    document = """\
jobconfigs:
  - name: an-one
    command: [sh, -c, echo one]
  - name: an-two
    command: [x]
    timeout: 9
    schedules:
      - every: 15m
  - name: an-three
    command: [x]
    schedules:
      - every: 1h
      - cron: "0 0 25 * * ?"
"""
    # what the server would refuse shows in the plan already
    planned = await _apply(env.client, document, dry_run=True)
    assert planned.status_code == 200, planned.text
    report = planned.json()
    assert [j["action"] for j in report["jobconfigs"]] == ["create", "update", "failed"]
    three = report["jobconfigs"][2]
    assert "Hour values must be between 0 and 23" in three["error"]
    assert [s["action"] for s in three["schedules"]] == ["create", "failed"]

    r = await _apply(env.client, document)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "apply_refused"
    assert "nothing was applied" in error["message"] and "an-three" in error["message"]
    assert error["details"]["report"]["rolled_back"] is True
    assert await _jobconfig(env.client, "an-one") is None

    # a refusal only the write finds (a pool name): nothing before it is written either
    late = document.replace('"0 0 25 * * ?"', '"0 0 23 * * ?"') + "    pool: not a pool!\n"
    planned = await _apply(env.client, late, dry_run=True)
    assert {j["action"] for j in planned.json()["jobconfigs"]} == {"create", "update"}
    r = await _apply(env.client, late)
    assert r.status_code == 422, r.text
    report = r.json()["error"]["details"]["report"]
    assert report["rolled_back"] is True
    assert [j["action"] for j in report["jobconfigs"]] == ["create", "update", "failed"]
    assert "pool" in report["jobconfigs"][2]["error"]
    assert await _jobconfig(env.client, "an-one") is None
    assert await _jobconfig(env.client, "an-three") is None
    two = await _jobconfig(env.client, "an-two")
    assert two is not None and two["timeout"] == 5
    assert (await env.client.get(f"{API}/jobconfigs/{two['id']}/schedules")).json()["items"] == []

    fixed = late.replace("    pool: not a pool!\n", "")
    r = await _apply(env.client, fixed)
    assert r.status_code == 200, r.text
    assert [j["action"] for j in r.json()["jobconfigs"]] == ["created", "updated", "created"]
    again = await _apply(env.client, fixed)
    assert {j["action"] for j in again.json()["jobconfigs"]} == {"unchanged"}


async def test_document_problems_carry_their_path_and_line(env: Env) -> None:
    bad = "jobconfigs:\n  - name: pr-a\n    command: [x]\n    colour: blue\n"
    r = await _apply(env.client, bad)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_document"
    (problem,) = error["details"]["problems"]
    assert problem["line"] == 4 and problem["where"] == "jobconfigs[0]"
    assert "unknown key 'colour'" in problem["message"] and "<request body>:4" in error["message"]

    r = await _apply(env.client, {"jobconfigs": [{"name": "pr-a", "command": ["x"], "colour": 1}]})
    (problem,) = r.json()["error"]["details"]["problems"]
    assert problem["line"] is None and problem["where"] == "jobconfigs[0]"

    unknown = "0" * 64
    document: dict[str, Any] = {
        "packages": {"p": {"sha256": unknown}, "q": {"path": "./q"}},
        "jobconfigs": [{"name": "pr-b", "package": "p"}, {"name": "pr-c", "template": "nowhere"}],
    }
    r = await _apply(env.client, document)
    assert r.status_code == 422, r.text
    problems = {p["where"]: p["message"] for p in r.json()["error"]["details"]["problems"]}
    assert "push it" in problems["packages.q"] and "`sha256`" in problems["packages.q"]
    assert "no package with sha256 000000000000" in problems["packages.p"]
    del document["packages"]["q"]
    planned = await _apply(
        env.client, {**document, "jobconfigs": document["jobconfigs"][:1]}, dry_run=True
    )
    assert planned.status_code == 200, planned.text  # a dry run: the package is still to push
    assert planned.json()["packages"][0]["state"] == "new"
    r = await _apply(env.client, {"jobconfigs": document["jobconfigs"][1:]})
    (problem,) = r.json()["error"]["details"]["problems"]
    assert "no template named 'nowhere'" in problem["message"]
    assert problem["where"] == "jobconfigs[0]"

    r = await env.client.post(
        f"{API}/apply", content=b"<html/>", headers={"Content-Type": "text/html"}
    )
    assert r.status_code == 415 and "application/yaml" in r.json()["error"]["message"]
    schema = (await env.client.get(f"{API}/apply")).json()
    assert "jobconfigs" in schema["properties"]


async def test_pushing_the_same_bytes_again_answers_the_package(env: Env) -> None:
    content = b"echo same bytes\n"
    sha256 = hashlib.sha256(content).hexdigest()
    files = {"file": ("same.sh", content, "application/octet-stream")}
    first = await env.client.post(f"{API}/packages", files=files)
    assert first.status_code == 201, first.text
    files = {"file": ("renamed.sh", content, "application/octet-stream")}
    second = await env.client.post(f"{API}/packages", files=files)
    assert second.status_code == 200, second.text
    assert second.json()["id"] == first.json()["id"]

    found = await env.client.get(f"{API}/packages", params={"sha256": sha256})
    assert [p["id"] for p in found.json()["items"]] == [first.json()["id"]]
    none = await env.client.get(f"{API}/packages", params={"sha256": "f" * 64})
    assert none.json()["items"] == []
    assert (await env.client.get(f"{API}/packages", params={"sha256": "x"})).status_code == 422

    document = {
        "packages": {"s": {"sha256": sha256}},
        "jobconfigs": [{"name": "rp", "package": "s"}],
    }
    r = await _apply(env.client, document)
    assert r.status_code == 200, r.text
    assert r.json()["packages"] == [
        {
            "name": "s",
            "id": first.json()["id"],
            "sha256": sha256,
            "entrypoints": [],
            "state": "unchanged",
        }
    ]


async def test_run_a_jobconfig_by_name(env: Env) -> None:
    for name in ("2024", "by-name-hello"):
        body = {"name": name, "command": ["/bin/sh", "-c", "echo hi"]}
        assert (await env.client.post(f"{API}/jobconfigs", json=body)).status_code == 201
    digits = await _jobconfig(env.client, "2024")
    assert digits is not None
    r = await env.client.post(f"{API}/jobconfigs/by-name/2024/run", json={"hold": True})
    assert r.status_code == 201, r.text
    assert r.json()["jobconfig_id"] == digits["id"] and r.json()["status"] == "WAITING"
    r = await env.client.post(f"{API}/jobconfigs/by-name/by-name-hello/run")
    assert r.status_code == 201, r.text
    await env.wait_status(r.json()["id"], {"FINISHED"})

    r = await env.client.post(f"{API}/jobconfigs/by-name/nope/run")
    assert r.status_code == 404
    assert r.json()["error"]["message"] == "no jobconfig named 'nope'"
