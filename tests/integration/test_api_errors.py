"""Bad input and bad credentials get the right status and a clear error body."""

from __future__ import annotations

import httpx

from tests.integration.conftest import Env
from tests.integration.helpers import MANIFEST, make_tar_with_symlink, make_zip


def _error(r: httpx.Response, status: int) -> dict[str, object]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"}
    assert {"code", "message", "details"} <= set(body["error"])
    assert body["error"]["message"]
    return dict(body["error"])


async def test_health_and_api_description_are_open_all_else_needs_a_token(
    env: Env,
) -> None:
    async with httpx.AsyncClient(base_url=env.url) as anon:
        assert (await anon.get("/healthz")).status_code == 200
        err = _error(await anon.get("/api/v1/jobs"), 401)
        assert "Authorization" in str(err["message"])
        _error(await anon.get("/api/v1/jobs", headers={"Authorization": "Bearer nope"}), 401)
        _error(await anon.get("/api/v1/jobs", headers={"Authorization": "Basic abc"}), 401)
        _error(await anon.post("/api/v1/packages"), 401)
        _error(await anon.get("/api/v1/openapi.json/../jobs/1"), 401)
        # The API's description is open (it holds no data): /docs shows it before login.
        assert (await anon.get("/api/v1/openapi.json")).status_code == 200
        assert (await anon.get("/readyz")).status_code == 200
        assert (await env.client.get("/api/v1/openapi.json")).status_code == 200


async def test_admin_token_file_is_private(env: Env) -> None:
    mode = (env.settings.home / "admin.token").stat().st_mode & 0o777
    assert mode == 0o600


async def test_unknown_ids_are_404(env: Env) -> None:
    err = _error(await env.client.get("/api/v1/jobs/999999"), 404)
    assert "999999" in str(err["message"])
    _error(await env.client.get("/api/v1/jobconfigs/424242"), 404)
    _error(await env.client.post("/api/v1/jobconfigs/424242/run"), 404)
    _error(await env.client.get("/api/v1/packages/77"), 404)
    _error(await env.client.post("/api/v1/jobs/999999/cancel"), 404)
    _error(await env.client.get("/api/v1/nothing-here"), 404)


async def test_invalid_bodies(env: Env) -> None:
    err = _error(await env.client.post("/api/v1/jobconfigs", json={"command": ["true"]}), 422)
    assert "name" in str(err["message"])
    _error(
        await env.client.post(
            "/api/v1/jobconfigs", json={"name": "x", "command": ["true"], "bogus": 1}
        ),
        422,
    )
    _error(
        await env.client.post(
            "/api/v1/jobconfigs", json={"name": "x", "command": ["true"], "max_concurrent": -1}
        ),
        422,
    )
    _error(await env.client.post("/api/v1/jobconfigs", json={"name": "nothing-to-run"}), 422)
    err = _error(
        await env.client.post(
            "/api/v1/jobconfigs", json={"name": "x", "package_id": 9999, "entrypoint": "main"}
        ),
        422,
    )
    assert "9999" in str(err["message"])
    _error(
        await env.client.post(
            "/api/v1/jobconfigs", json={"name": "bad name!", "command": ["true"]}
        ),
        422,
    )
    _error(
        await env.client.post(
            "/api/v1/jobs", json={"command": ["true"], "macros": {"JOB_ID": "1"}}
        ),
        422,
    )
    _error(
        await env.client.post(
            "/api/v1/jobs", content=b"{not json", headers={"content-type": "application/json"}
        ),
        400,
    )
    _error(await env.client.get("/api/v1/jobs", params={"status": "DONE"}), 422)
    _error(await env.client.get("/api/v1/jobs", params={"cursor": "garbage!!"}), 422)
    _error(await env.client.get("/api/v1/jobs/abc"), 422)


async def test_jobconfig_conflicts(env: Env) -> None:
    body = {"name": "dup", "command": ["sleep", "30"]}
    jc = (await env.client.post("/api/v1/jobconfigs", json=body)).json()
    _error(await env.client.post("/api/v1/jobconfigs", json=body), 409)
    job = (await env.client.post(f"/api/v1/jobconfigs/{jc['id']}/run")).json()
    _error(await env.client.delete(f"/api/v1/jobconfigs/{jc['id']}"), 409)
    await env.wait_status(job["id"], {"RUNNING"})
    await env.client.post(f"/api/v1/jobs/{job['id']}/abort")
    await env.wait_status(job["id"])
    r = await env.client.patch(f"/api/v1/jobconfigs/{jc['id']}", json={"enabled": False})
    assert r.status_code == 200 and r.json()["enabled"] is False
    _error(await env.client.post(f"/api/v1/jobconfigs/{jc['id']}/run"), 409)
    assert (await env.client.delete(f"/api/v1/jobconfigs/{jc['id']}")).status_code == 204
    _error(await env.client.get(f"/api/v1/jobconfigs/{jc['id']}"), 404)
    _error(await env.client.get(f"/api/v1/jobs/{job['id']}"), 404)


async def test_package_upload_manifest_and_dedup(env: Env) -> None:
    data = make_zip({"jobyard.toml": MANIFEST, "main.sh": 'echo "$LEVEL $ONLY_MANIFEST"\n'})
    r1 = await env.client.post("/api/v1/packages", files={"file": ("etl.zip", data)})
    assert r1.status_code == 201, r1.text
    pkg = r1.json()
    assert pkg["entrypoints"] == ["main"]
    assert len(pkg["sha256"]) == 64
    r2 = await env.client.post("/api/v1/packages", files={"file": ("again.zip", data)})
    assert r2.status_code == 200  # the same bytes again: the package already stored
    assert r2.json()["id"] == pkg["id"]
    blobs = list((env.settings.home / "blobs" / "packages").rglob("*"))
    assert len([b for b in blobs if b.is_file()]) == 1

    err = _error(
        await env.client.post(
            "/api/v1/jobconfigs",
            json={"name": "etl", "package_id": pkg["id"], "entrypoint": "nope"},
        ),
        422,
    )
    assert "main" in str(err["message"])
    jc = (
        await env.client.post(
            "/api/v1/jobconfigs",
            json={
                "name": "etl",
                "package_id": pkg["id"],
                "entrypoint": "main",
                "macros": {"LEVEL": "jobconfig"},
            },
        )
    ).json()
    job = (
        await env.client.post(
            f"/api/v1/jobconfigs/{jc['id']}/run", json={"macros": {"LEVEL": "job"}}
        )
    ).json()
    assert (await env.wait_status(job["id"]))["status"] == "FINISHED"
    log = (await env.client.get(f"/api/v1/jobs/{job['id']}/log")).text
    assert "out job m" in log


async def test_unsafe_packages_are_refused_naming_the_entry(env: Env) -> None:
    slip = make_zip({"../../evil.sh": "echo pwned"})
    err = _error(await env.client.post("/api/v1/packages", files={"file": ("s.zip", slip)}), 400)
    assert "../../evil.sh" in str(err["message"])
    absolute = make_zip({"/etc/evil": "x"})
    err = _error(
        await env.client.post("/api/v1/packages", files={"file": ("a.zip", absolute)}), 400
    )
    assert "/etc/evil" in str(err["message"])
    link = make_tar_with_symlink("escape", "../../../etc/passwd")
    err = _error(await env.client.post("/api/v1/packages", files={"file": ("l.tar.gz", link)}), 400)
    assert "escape" in str(err["message"])
    assert not (env.settings.home.parent / "evil.sh").exists()


async def test_oversized_archives_and_uploads(start_server) -> None:  # type: ignore[no-untyped-def]
    env = await start_server(unpack_max_bytes=10_000, upload_max_bytes=50_000)
    bomb = make_zip({"big.bin": b"\0" * 20_000})
    _error(await env.client.post("/api/v1/packages", files={"file": ("b.zip", bomb)}), 413)
    _error(
        await env.client.post("/api/v1/packages", files={"file": ("huge.bin", b"x" * 60_000)}), 413
    )
