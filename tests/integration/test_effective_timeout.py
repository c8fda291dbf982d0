"""A job's answer and ``jobyard jobs show`` say the timeout the worker enforces.

The job's own ``timeout`` is its jobconfig's (0 when it sets none); the package
manifest's entry point may still set one, which the worker enforces. The API's
``effective_timeout`` and the CLI show that value and where it comes from.
"""

from __future__ import annotations

import asyncio
from typing import Any

from jobyard.core.models import Job, Package
from jobyard.core.runplan import effective_timeout
from jobyard.engine.local_backend import _what_to_run
from tests.integration.conftest import Env
from tests.integration.helpers import make_zip
from tests.support.cli import ok, run_cli
from tests.support.server import clean_env

API = "/api/v1"
MANIFEST = """
[entrypoints.short]
command = ["/bin/sh", "-c", "echo short"]
timeout = 1

[entrypoints.free]
command = ["/bin/sh", "-c", "echo free"]
"""


async def _post(env: Env, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = await env.client.post(f"{API}/{path}", json=body)
    assert r.status_code in (200, 201), r.text
    return dict(r.json())


async def _held_job(env: Env, jobconfig: dict[str, Any]) -> dict[str, Any]:
    """A WAITING job of ``jobconfig`` as ``GET /jobs/{id}`` answers it."""
    job = await _post(env, f"jobconfigs/{jobconfig['id']}/run", {"hold": True})
    r = await env.client.get(f"{API}/jobs/{job['id']}")
    assert r.status_code == 200, r.text
    return dict(r.json())


async def test_effective_timeout_and_its_source(env: Env) -> None:
    r = await env.client.post(
        f"{API}/packages", files={"file": ("t.zip", make_zip({"jobyard.toml": MANIFEST}))}
    )
    assert r.status_code in (200, 201), r.text
    pkg = r.json()["id"]
    base = {"package_id": pkg}

    from_manifest = await _held_job(
        env, await _post(env, "jobconfigs", {**base, "name": "m", "entrypoint": "short"})
    )
    assert from_manifest["timeout"] == 0
    assert from_manifest["effective_timeout"] == {
        "minutes": 1,
        "source": "entrypoint",
        "entrypoint": "short",
    }

    own = await _post(env, "jobconfigs", {**base, "name": "j", "entrypoint": "short", "timeout": 5})
    assert (await _held_job(env, own))["effective_timeout"] == {
        "minutes": 5,
        "source": "jobconfig",
        "entrypoint": None,
    }

    free = await _post(env, "jobconfigs", {**base, "name": "f", "entrypoint": "free"})
    assert (await _held_job(env, free))["effective_timeout"]["source"] == "none"

    # A jobconfig that takes package and entry point from its template gets the
    # manifest's timeout of that entry point.
    tpl = await _post(env, "templates", {"name": "t", "package_id": pkg, "entrypoint": "short"})
    child = await _post(env, "jobconfigs", {"name": "c", "template_id": tpl["id"]})
    assert (await _held_job(env, child))["effective_timeout"]["minutes"] == 1

    adhoc = await env.run_command(["/bin/true"], timeout=3, hold=True)
    r = await env.client.get(f"{API}/jobs/{adhoc['id']}")
    assert r.json()["effective_timeout"] == {"minutes": 3, "source": "job", "entrypoint": None}

    # `jobyard jobs show` prints the effective value, not the job's own 0.
    cli_env = clean_env({"JOBYARD_SERVER": env.url, "JOBYARD_TOKEN": env.token})
    result = await asyncio.to_thread(
        run_cli, ["jobs", "show", str(from_manifest["id"])], cli_env, env.settings.home
    )
    line = next(x for x in ok(result).stdout.splitlines() if x.startswith("timeout"))
    assert "1 min" in line and "entry point 'short'" in line, line


def test_worker_enforces_the_value_shown() -> None:
    """The local backend's timeout is :func:`effective_timeout`'s for every kind of job."""
    entrypoints = {
        "short": {"command": ["/bin/true"], "env": {}, "timeout": 1},
        "free": {"command": ["/bin/true"], "env": {}, "timeout": None},
    }
    package = Package(1, "0" * 64, "p.zip", 1, "zip", entrypoints, None)  # type: ignore[arg-type]
    only = Package(2, "1" * 64, "p.zip", 1, "zip", {"short": entrypoints["short"]}, None)  # type: ignore[arg-type]
    cases = [
        (package, "short", None, 0, 1),
        (package, "short", None, 7, 7),
        (package, "free", None, 0, 0),
        (only, None, None, 0, 1),  # the package's only entry point
        (only, None, ["/bin/true"], 0, 0),  # a command: no entry point
        (None, None, ["/bin/true"], 2, 2),
    ]
    for pkg, entry, command, own, minutes in cases:
        job = _job(pkg, entry, command, own)
        assert effective_timeout(job, pkg).minutes == minutes, (entry, command, own)
        assert _what_to_run(job, pkg).timeout_minutes == minutes, (entry, command, own)


def _job(package: Package | None, entry: str | None, command: list[str] | None, own: int) -> Job:
    fields: dict[str, Any] = dict.fromkeys(Job.__dataclass_fields__)
    fields.update(
        id=1,
        jobconfig_id=1,
        package_id=None if package is None else package.id,
        entrypoint=entry,
        command=command,
        macros={},
        timeout=own,
        success_exit_codes=[0],
    )
    return Job(**fields)
