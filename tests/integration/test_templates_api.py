"""``/api/v1/templates``: CRUD, errors, inheritance by jobconfigs, clone, export/import."""

from __future__ import annotations

from typing import Any

from tests.integration.conftest import Env
from tests.integration.helpers import make_zip

API = "/api/v1"
MANIFEST = """
[entrypoints.main]
command = ["sh", "main.sh"]

[entrypoints.other]
command = ["sh", "other.sh"]
"""


async def _package(env: Env) -> dict[str, Any]:
    data = make_zip(
        {
            "jobyard.toml": MANIFEST,
            "main.sh": 'echo "main ran tpl=$JOB_TEMPLATE_ID jc=$JOB_CONFIG_ID"\n',
            "other.sh": "echo other ran\n",
        }
    )
    r = await env.client.post(f"{API}/packages", files={"file": ("etl.zip", data)})
    assert r.status_code in (200, 201), r.text
    return dict(r.json())


async def _create(env: Env, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = await env.client.post(f"{API}/{path}", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _run_log(env: Env, jobconfig_id: int) -> tuple[dict[str, Any], str]:
    job = await _create(env, f"jobconfigs/{jobconfig_id}/run", {})
    done = await env.wait_status(job["id"])
    assert done["status"] == "FINISHED", done
    log = (await env.client.get(f"{API}/jobs/{job['id']}/log")).text
    return done, log


async def test_crud_and_errors(env: Env) -> None:
    pkg = await _package(env)
    t = await _create(
        env, "templates", {"name": "acme", "package_id": pkg["id"], "entrypoint": "main"}
    )
    assert (t["name"], t["package_id"], t["entrypoint"], t["command"]) == (
        "acme", pkg["id"], "main", None,
    )  # fmt: skip
    assert t["owner"] and t["description"] == ""
    assert (await env.client.get(f"{API}/templates/{t['id']}")).json() == t
    listed = (await env.client.get(f"{API}/templates")).json()
    assert [x["name"] for x in listed["items"]] == ["acme"]
    by_name = (await env.client.get(f"{API}/templates", params={"name": "acme"})).json()
    assert [x["id"] for x in by_name["items"]] == [t["id"]]
    assert (await env.client.get(f"{API}/templates", params={"name": "x"})).json()["items"] == []

    again = await env.client.post(f"{API}/templates", json={"name": "acme"})
    assert again.status_code == 409
    for bad in (
        {"name": "b", "package_id": 999},
        {"name": "b", "package_id": pkg["id"], "entrypoint": "nope"},
        {"name": "b", "entrypoint": "main"},
        {"name": "b", "command": ["x"], "entrypoint": "main", "package_id": pkg["id"]},
        {"name": "bad name!"},
        {"name": "b", "unknown": 1},
    ):
        r = await env.client.post(f"{API}/templates", json=bad)
        assert r.status_code == 422, (bad, r.text)
    assert (await env.client.get(f"{API}/templates/999")).status_code == 404

    r = await env.client.patch(f"{API}/templates/{t['id']}", json={"description": "shared"})
    assert r.status_code == 200 and r.json()["description"] == "shared"
    assert r.json()["entrypoint"] == "main"
    r = await env.client.patch(f"{API}/templates/{t['id']}", json={"name": None})
    assert r.status_code == 422
    body = {"name": "acme2", "command": ["ls"]}
    r = await env.client.put(f"{API}/templates/{t['id']}", json=body)
    assert r.status_code == 200
    assert (r.json()["name"], r.json()["package_id"], r.json()["command"]) == (
        "acme2", None, ["ls"],
    )  # fmt: skip
    assert (await env.client.put(f"{API}/templates/999", json={"name": "z"})).status_code == 404

    jc = await _create(env, "jobconfigs", {"name": "child", "template_id": t["id"]})
    assert jc["template_id"] == t["id"]
    r = await env.client.delete(f"{API}/templates/{t['id']}")
    assert r.status_code == 409, r.text
    children = (await env.client.get(f"{API}/templates/{t['id']}/jobconfigs")).json()
    assert [c["id"] for c in children["items"]] == [jc["id"]]
    assert (await env.client.get(f"{API}/templates/999/jobconfigs")).status_code == 404
    r = await env.client.patch(f"{API}/jobconfigs/{jc['id']}", json={"template_id": None})
    assert r.status_code == 422  # then it has nothing to run
    assert (await env.client.delete(f"{API}/jobconfigs/{jc['id']}")).status_code == 204
    assert (await env.client.delete(f"{API}/templates/{t['id']}")).status_code == 204
    assert (await env.client.delete(f"{API}/templates/{t['id']}")).status_code == 404


async def test_unknown_template_is_422_naming_template_id(env: Env) -> None:
    r = await env.client.post(f"{API}/jobconfigs", json={"name": "jc", "template_id": 999})
    assert r.status_code == 422
    error = r.json()["error"]
    assert "template 999" in error["message"] and error["details"]["field"] == "template_id"
    jc = await _create(env, "jobconfigs", {"name": "jc", "command": ["true"]})
    r = await env.client.patch(f"{API}/jobconfigs/{jc['id']}", json={"template_id": 999})
    assert r.status_code == 422 and r.json()["error"]["details"]["field"] == "template_id"
    r = await env.client.post(f"{API}/jobconfigs", json={"name": "none"})
    assert r.status_code == 422  # no template and nothing of its own


async def test_jobconfigs_inherit_what_to_run_and_get_job_template_id(env: Env) -> None:
    pkg = await _package(env)
    t = await _create(
        env, "templates", {"name": "acme", "package_id": pkg["id"], "entrypoint": "main"}
    )
    plain = await _create(env, "jobconfigs", {"name": "plain", "template_id": t["id"]})
    assert (plain["package_id"], plain["entrypoint"]) == (None, None)  # inherited, not copied
    job, log = await _run_log(env, plain["id"])
    assert f"main ran tpl={t['id']} jc={plain['id']}" in log
    assert (job["package_id"], job["entrypoint"]) == (pkg["id"], "main")
    own = await _create(
        env, "jobconfigs", {"name": "own", "template_id": t["id"], "entrypoint": "other"}
    )
    _job, log = await _run_log(env, own["id"])
    assert "other ran" in log
    r = await env.client.post(
        f"{API}/jobconfigs", json={"name": "bad", "template_id": t["id"], "entrypoint": "nope"}
    )
    assert r.status_code == 422  # checked against the inherited package
    cmd = await _create(
        env, "templates", {"name": "cmd", "command": ["sh", "-c", 'echo "T=$JOB_TEMPLATE_ID"']}
    )
    env_jc = await _create(env, "jobconfigs", {"name": "printer", "template_id": cmd["id"]})
    _job, log = await _run_log(env, env_jc["id"])
    assert f"T={cmd['id']}" in log
    alone = await _create(
        env, "jobconfigs", {"name": "alone", "command": ["sh", "-c", 'echo "T=[$JOB_TEMPLATE_ID]"']}
    )
    _job, log = await _run_log(env, alone["id"])
    assert "T=[]" in log
    # A template change reaches its jobconfigs' next jobs.
    r = await env.client.patch(
        f"{API}/templates/{cmd['id']}", json={"command": ["sh", "-c", "echo changed"]}
    )
    assert r.status_code == 200
    _job, log = await _run_log(env, env_jc["id"])
    assert "changed" in log


async def test_clone(env: Env) -> None:
    t = await _create(env, "templates", {"name": "acme", "command": ["true"], "description": "d"})
    await _create(env, "jobconfigs", {"name": "etl", "template_id": t["id"], "timeout": 5})
    await _create(env, "jobconfigs", {"name": "load", "template_id": t["id"]})
    r = await env.client.post(f"{API}/templates/{t['id']}/clone", json={"name": "bare"})
    assert r.status_code == 201, r.text
    bare = r.json()
    assert bare["template"]["name"] == "bare" and bare["template"]["description"] == "d"
    assert bare["jobconfigs"] == [] and bare["secure_macros_skipped"] == {}
    r = await env.client.post(
        f"{API}/templates/{t['id']}/clone", json={"name": "globex", "with_jobconfigs": True}
    )
    assert r.status_code == 201, r.text
    full = r.json()
    names = [(j["name"], j["template_id"], j["timeout"]) for j in full["jobconfigs"]]
    tid = full["template"]["id"]
    assert names == [("globex.etl", tid, 5), ("globex.load", tid, 0)]
    r = await env.client.post(
        f"{API}/templates/{t['id']}/clone",
        json={"name": "initech", "with_jobconfigs": True, "jobconfig_prefix": "i-"},
    )
    assert [j["name"] for j in r.json()["jobconfigs"]] == ["i-etl", "i-load"]
    r = await env.client.post(
        f"{API}/templates/{t['id']}/clone",
        json={"name": "again", "with_jobconfigs": True, "jobconfig_prefix": "i-"},
    )
    assert r.status_code == 409
    assert (await env.client.get(f"{API}/templates", params={"name": "again"})).json() == {
        "items": [], "next_cursor": None,
    }  # fmt: skip
    r = await env.client.post(f"{API}/templates/{t['id']}/clone", json={"name": "acme"})
    assert r.status_code == 409
    r = await env.client.post(f"{API}/templates/999/clone", json={"name": "x"})
    assert r.status_code == 404
    r = await env.client.post(
        f"{API}/templates/{t['id']}/clone", json={"name": "x", "jobconfig_prefix": "p"}
    )
    assert r.status_code == 422


async def test_export_import_round_trip(env: Env, start_server: Any) -> None:
    pkg = await _package(env)
    t = await _create(
        env, "templates", {"name": "acme", "package_id": pkg["id"], "description": "shared"}
    )
    jc = await _create(
        env,
        "jobconfigs",
        {"name": "etl", "template_id": t["id"], "entrypoint": "main", "macros": {"A": "1"}},
    )
    await _create(
        env, f"jobconfigs/{jc['id']}/schedules", {"name": "nightly", "cron": "0 0 2 * * ?"}
    )
    await _create(env, "jobconfigs", {"name": "plain", "command": ["true"]})  # not a child
    r = await env.client.get(f"{API}/templates/{t['id']}/export")
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["template"]["package"]["sha256"] == pkg["sha256"]
    assert "id" not in doc["template"] and "package_id" not in doc["template"]
    (item,) = doc["jobconfigs"]
    assert item["name"] == "etl" and "template_id" not in item and "id" not in item
    assert [s["name"] for s in item["schedules"]] == ["nightly"]
    assert "id" not in item["schedules"][0]
    assert (await env.client.get(f"{API}/templates/999/export")).status_code == 404

    # Importing it back here changes nothing.
    r = await env.client.post(f"{API}/templates/import", json=doc)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["template"] == {"name": "acme", "id": t["id"], "action": "unchanged",
                                  "schedules": None}  # fmt: skip
    assert report["jobconfigs"][0]["action"] == "unchanged"
    assert report["jobconfigs"][0]["schedules"][0]["action"] == "unchanged"

    # On another server: the package is needed first, then everything is created.
    other = await start_server()
    r = await other.client.post(f"{API}/templates/import", json=doc)
    assert r.status_code == 422 and pkg["sha256"] in r.json()["error"]["message"]
    await _package(other)
    r = await other.client.post(f"{API}/templates/import", json=doc)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["template"]["action"] == "created"
    assert report["jobconfigs"][0]["action"] == "created"
    assert report["jobconfigs"][0]["schedules"][0]["action"] == "created"
    again = (await other.client.get(f"{API}/templates/{report['template']['id']}/export")).json()
    assert again == doc

    # A change in the document is an update; a schedule left out is deleted.
    doc["template"]["description"] = "changed"
    doc["jobconfigs"][0]["timeout"] = 9
    doc["jobconfigs"][0]["schedules"] = []
    doc["jobconfigs"].append({"name": "new-one", "command": ["true"]})
    report = (await other.client.post(f"{API}/templates/import", json=doc)).json()
    assert report["template"]["action"] == "updated"
    assert [(j["name"], j["action"]) for j in report["jobconfigs"]] == [
        ("etl", "updated"), ("new-one", "created"),
    ]  # fmt: skip
    assert report["jobconfigs"][0]["schedules"][0]["action"] == "deleted"
    assert report["jobconfigs"][1]["schedules"] is None
    bad = {**doc, "jobconfigs": [doc["jobconfigs"][1], doc["jobconfigs"][1]]}
    assert (await other.client.post(f"{API}/templates/import", json=bad)).status_code == 422
