"""A job's files as an attacker shapes them: payloads that would replace or shadow the
package's files, and output files with names and kinds meant to break their listing."""

from __future__ import annotations

import io
import zipfile

from tests.integration.conftest import Env
from tests.support.jobs import JOB_PYTHON

MAIN = b'import json\nprint("json is " + ("stdlib" if hasattr(json, "dumps") else "HIJACKED"))\n'


async def test_a_payload_never_replaces_or_shadows_a_package_file(env: Env) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("run.sh")
        info.external_attr = 0o755 << 16
        archive.writestr(info, '#!/bin/sh\necho "run.sh is the package\'s"\n')
        archive.writestr("main.py", MAIN)
    r = await env.client.post(
        "/api/v1/packages", files={"file": ("etl.zip", buffer.getvalue(), "application/zip")}
    )
    assert r.status_code == 201, r.text
    command = ["sh", "-c", f"./run.sh && {JOB_PYTHON} main.py"]
    r = await env.client.post(
        "/api/v1/jobconfigs",
        json={"name": "etl", "package_id": r.json()["id"], "command": command},
    )
    assert r.status_code == 201, r.text
    job = await env.client.post(f"/api/v1/jobconfigs/{r.json()['id']}/run", json={"hold": True})
    job_id = job.json()["id"]
    for name, data in [
        ("run.sh", b"#!/bin/sh\necho 'run.sh is the CALLER's'\n"),
        ("json.py", b"print('HIJACKED at import')\n"),
    ]:
        r = await env.client.post(f"/api/v1/jobs/{job_id}/payload", files={"file": (name, data)})
        assert r.status_code == 201, r.text
    assert (await env.client.post(f"/api/v1/jobs/{job_id}/release")).status_code == 200
    done = await env.wait_status(job_id)
    log = (await env.client.get(f"/api/v1/jobs/{job_id}/log")).text
    assert done["status"] == "FINISHED", log
    assert "run.sh is the package's" in log and "json is stdlib" in log
    assert "CALLER" not in log and "HIJACKED" not in log


ODD_NAMES = (
    'cd "$LOCAL_JOB_OUT_DIR" && printf 1 > "new\nline.txt" && printf 2 > "back\\\\slash.txt"'
    " && printf 3 > \"$(printf 'latin\\351.txt')\" && printf 4 > 'plain 100%.txt'"
    " && printf 5 > kept.txt && ln kept.txt twin.txt && ln -s /etc/hostname link.txt"
    " && mkfifo pipe && mkdir -p 'sub/tab\there' && printf 6 > 'sub/tab\there/x'"
)


async def test_every_output_file_is_kept_under_a_safe_name_or_refused_in_the_log(
    env: Env,
) -> None:
    job = await env.run_command(["sh", "-c", ODD_NAMES])
    done = await env.wait_status(job["id"])
    log = (await env.client.get(f"/api/v1/jobs/{job['id']}/log")).text
    assert done["status"] == "FINISHED", log
    items = (await env.client.get(f"/api/v1/jobs/{job['id']}/outputs")).json()["items"]
    expected = {
        "new%0Aline.txt": b"1",
        "back%5Cslash.txt": b"2",
        "latin%E9.txt": b"3",
        "plain 100%.txt": b"4",
        "sub/tab%09here/x": b"6",
    }
    assert sorted(i["name"] for i in items) == sorted(expected)
    for name, content in expected.items():
        r = await env.client.get(f"/api/v1/jobs/{job['id']}/outputs/{name.replace('%', '%25')}")
        assert r.status_code == 200, (name, r.text)
        assert r.content == content
    for name, why in [
        ("kept.txt", "a hard link"),
        ("twin.txt", "a hard link"),
        ("link.txt", "a symbolic link"),
        ("pipe", "a FIFO"),
    ]:
        assert f"output file '{name}' not kept: {why}" in log, log
