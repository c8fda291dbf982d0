"""The job sandbox, tried as an attacker would, against real servers in both modes.

``root``: ``jobyard up`` as root, as CI runs it (isolation ``uid``: one uid per job).
``unprivileged``: ``jobyard up`` as ``nobody`` (isolation ``namespace``, or the announced
fallback ``none`` where user namespaces are not available — then only the announcement is
checked). The attacker is ``mallory``, a plain user running her own jobconfigs; the victim
is a running job of the admin. From inside jobs, mallory tries to read and write every
file of the server's home (handed in by absolute path, and found by walking up from the
job's folder), to reach the worker and the victim through ``/proc`` and signals, to leave
processes behind (``setsid``, ``nohup``, double forks), and to publish server files as
outputs through links. Every attempt must fail, while a legitimate job still gets its
package, payload, outputs, network, and the API through ``SESSION_ID``.
"""

from __future__ import annotations

import io
import json
import os
import stat
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.security.sandbox_support import ATTACK, Sandboxed, start_sandboxed
from tests.support.jobs import JOB_PYTHON


@pytest.fixture(scope="module", params=["root", "unprivileged"])
def sandboxed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Sandboxed]:
    """A server per mode (module scope: every attack below shares it)."""
    yield from start_sandboxed(request.param, tmp_path_factory.mktemp(request.param))


def require_sandbox(sb: Sandboxed) -> None:
    """Skip the attack where no sandbox exists, once the fallback was announced."""
    if sb.mode == "none":
        assert "UNSAFE" in sb.banner, sb.banner
        pytest.skip("no sandbox works on this host; the fallback to 'none' was announced")


@pytest.fixture(scope="module")
def victim(sandboxed: Sandboxed) -> Iterator[dict[str, Any]]:
    """A running job of the admin (another user) that keeps files in its folders."""
    sb = sandboxed
    if sb.mode == "none":
        yield {}
        return
    jc = sb.jobconfig(sb.admin, "victim", "victim")
    job_id = sb.run(sb.admin, jc)
    sb.wait(job_id, {"RUNNING"})
    spec = Path(sb.log_value(job_id, "SPEC"))
    program = _find_program(b"victim")
    worker_pid = int(sb.admin.get(f"/api/v1/jobs/{job_id}").json()["worker_id"].split(":")[1])
    try:
        yield {"id": job_id, "spec": spec, "program": program, "worker": worker_pid}
    finally:
        sb.admin.post(f"/api/v1/jobs/{job_id}/abort")
        sb.wait(job_id)


def _find_program(marker: bytes) -> int:
    """The host pid of the job program whose command line ends with ``marker``."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for pid in _pids():
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"-c" in argv and argv[-2:] == [marker, b""] and b"bwrap" not in argv[0]:
                return pid
        time.sleep(0.05)
    raise AssertionError(f"no program {marker!r} found")


def _everything_under(*roots: Path) -> tuple[list[str], list[str]]:
    files, dirs = [], []
    for root in roots:
        for folder, dirnames, filenames in os.walk(root):
            dirs.append(folder)
            files.extend(os.path.join(folder, name) for name in filenames)
            dirs.extend(os.path.join(folder, name) for name in dirnames)
    return sorted(set(files)), sorted(set(dirs))


def _no_success(results: list[dict[str, Any]], *kinds: str, job_id: int = 0) -> None:
    done = [r for r in results if r["kind"] in kinds and r["ok"] and not _own(r, job_id)]
    assert not done, f"the sandbox let these through: {done}"


def _own(result: dict[str, Any], job_id: int) -> bool:
    """A listing that shows only the job's own folders or the way to them.

    In a namespace the server's folders are empty: a job sees there the mount points
    leading to its own folders (``work``, ``jobs``, ``<id>``, ``<id>.out``...) and nothing
    else.
    """
    if result["kind"] != "list":
        return False
    own = {str(job_id), f"{job_id}.out", f"{job_id}.payload", f"{job_id}.tmp", "work", "jobs"}
    return set(filter(None, result["detail"].split(","))) <= own


def test_the_mode_is_announced(sandboxed: Sandboxed) -> None:
    sb = sandboxed
    if sb.name == "root":
        assert sb.mode == "uid", sb.banner
    else:
        assert sb.mode in ("namespace", "none"), sb.banner
        if sb.mode == "none":
            assert "UNSAFE" in sb.banner and "no sandbox works here" in sb.banner, sb.banner


def test_server_files_cannot_be_read_written_or_listed(
    sandboxed: Sandboxed, victim: dict[str, Any]
) -> None:
    sb = sandboxed
    require_sandbox(sb)
    files, dirs = _everything_under(sb.home, victim["spec"].parent.parent)
    secrets = [(sb.home / name).read_text().strip() for name in ("admin.token", "secret.key")]
    for must in (sb.home / "jobyard.db", sb.home / "admin.token", sb.home / "secret.key"):
        assert str(must) in files
    assert str(victim["spec"] / "victim-secret.txt") in files
    assert str(victim["spec"].with_suffix(".out") / "victim-output.txt") in files
    jc = sb.jobconfig(
        sb.mallory,
        "read-everything",
        "files",
        macros={"TARGET_FILES": json.dumps(files), "TARGET_DIRS": json.dumps(dirs)},
    )
    job = sb.wait(sb.run(sb.mallory, jc))
    assert job["status"] == "FINISHED", sb.log(job["id"])
    results = sb.results(job["id"])
    assert len([r for r in results if r["kind"] == "read"]) == len(files)
    _no_success(results, "read", "write", "list", "create", job_id=job["id"])
    log = sb.log(job["id"])
    for secret in secrets:
        assert secret not in log
    assert not list(sb.home.rglob("planted-by-attacker"))


def test_walking_up_from_the_job_folder_finds_nothing(
    sandboxed: Sandboxed, victim: dict[str, Any]
) -> None:
    sb = sandboxed
    require_sandbox(sb)
    jc = sb.jobconfig(sb.mallory, "walk-up", "walk")
    job = sb.wait(sb.run(sb.mallory, jc))
    assert job["status"] == "FINISHED", sb.log(job["id"])
    results = sb.results(job["id"])
    assert results, "the walk did nothing"
    forbidden = [str(sb.home), str(victim["spec"].parent)]
    reached = [
        r
        for r in results
        if r["ok"]
        and any(r["target"].startswith(root) for root in forbidden)
        and not _own(r, job["id"])
    ]
    assert not reached, f"reached from the job's folder: {reached}"
    listed = " ".join(r["detail"] for r in results if r["kind"] == "list" and r["ok"])
    for name in ("admin.token", "secret.key", "jobyard.db", str(victim["id"])):
        assert name not in listed.split(","), (name, listed)


def test_the_worker_and_other_jobs_cannot_be_reached(
    sandboxed: Sandboxed, victim: dict[str, Any]
) -> None:
    sb = sandboxed
    require_sandbox(sb)
    server_pid = _parent_of(victim["worker"])
    targets = [victim["worker"], server_pid, victim["program"]]
    jc = sb.jobconfig(sb.mallory, "proc", "proc", macros={"TARGET_PIDS": json.dumps(targets)})
    job = sb.wait(sb.run(sb.mallory, jc))
    assert job["status"] == "FINISHED", sb.log(job["id"])
    results = sb.results(job["id"])
    for pid in targets:
        mine = [r for r in results if r["target"].startswith((f"/proc/{pid}/", f"{pid}:"))]
        assert len(mine) == 10, mine  # 3 reads, 3 listings, 1 readlink, 3 signals
        _no_success(mine, "read", "list", "readlink", "signal")
    assert sb.admin.get(f"/api/v1/jobs/{victim['id']}").json()["status"] == "RUNNING"
    assert _alive(victim["worker"]) and _alive(victim["program"])
    assert _state(victim["program"]) != "T", "the victim was stopped"


def test_no_process_outlives_its_job(sandboxed: Sandboxed) -> None:
    sb = sandboxed
    require_sandbox(sb)
    marker = "313.4242"
    jc = sb.jobconfig(sb.mallory, "escape", "escape", macros={"MARKER": marker})
    job = sb.wait(sb.run(sb.mallory, jc))
    assert job["status"] == "FINISHED", sb.log(job["id"])
    assert any(r["kind"] == "escape" for r in sb.results(job["id"]))
    deadline = time.monotonic() + 10
    while left := _processes_with(marker.encode()):
        assert time.monotonic() < deadline, f"processes outlived job {job['id']}: {left}"
        time.sleep(0.05)


def test_links_to_server_files_never_become_outputs(sandboxed: Sandboxed) -> None:
    sb = sandboxed
    require_sandbox(sb)
    targets = [str(sb.home / "secret.key"), str(sb.home / "admin.token"), "/etc/passwd"]
    jc = sb.jobconfig(sb.mallory, "links", "link", macros={"TARGET_FILES": json.dumps(targets)})
    job = sb.wait(sb.run(sb.mallory, jc))
    assert job["status"] == "FINISHED", sb.log(job["id"])
    _no_success([r for r in sb.results(job["id"]) if "/etc/" not in r["target"]], "hardlink")
    outputs = sb.mallory.get(f"/api/v1/jobs/{job['id']}/outputs").json()["items"]
    assert outputs == [], outputs
    log = sb.log(job["id"])
    for i in range(len(targets)):
        assert f"output file 'soft-{i}' not kept: a symbolic link" in log


def test_a_legitimate_job_keeps_what_it_needs(sandboxed: Sandboxed) -> None:
    sb = sandboxed
    require_sandbox(sb)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("data.txt", "from-the-package\n")
    r = sb.mallory.post(
        "/api/v1/packages", files={"file": ("pkg.zip", buffer.getvalue(), "application/zip")}
    )
    assert r.status_code == 201, r.text
    jc = sb.jobconfig(sb.mallory, "legit", "legit", package_id=r.json()["id"])
    job_id = sb.run(sb.mallory, jc, hold=True)
    r = sb.mallory.post(f"/api/v1/jobs/{job_id}/payload", files={"file": ("input.csv", b"a,b\n")})
    assert r.status_code == 201, r.text
    assert sb.mallory.post(f"/api/v1/jobs/{job_id}/release").status_code == 200
    job = sb.wait(job_id)
    assert job["status"] == "FINISHED", sb.log(job_id)
    results = {r["kind"]: r["ok"] for r in sb.results(job_id)}
    assert results == {
        "package": True,
        "payload": True,
        "session": True,
        "network": True,
    }, sb.log(job_id)
    r = sb.mallory.get(f"/api/v1/jobs/{job_id}/outputs/result.txt")
    assert r.status_code == 200 and r.text == "made by the job\n"


def test_editing_an_admins_jobconfig_gives_its_job_no_admin_rights(sandboxed: Sandboxed) -> None:
    """Finding 2 in this mode: mallory may only edit the admin's jobconfig; she makes it
    use its SESSION_ID to administer; the admin runs it; every attempt is refused."""
    sb = sandboxed
    require_sandbox(sb)
    r = sb.admin.post("/api/v1/jobconfigs", json={"name": "admins-etl", "command": ["/bin/true"]})
    assert r.status_code == 201, r.text
    jc = r.json()["id"]
    users = sb.admin.get("/api/v1/users").json()["items"]
    mallory_id = next(u["id"] for u in users if u["name"] == "mallory")
    grant = {"action": "edit", "resource": "jobconfigs", "selector": str(jc)}
    r = sb.admin.post(f"/api/v1/users/{mallory_id}/policies", json=grant)
    assert r.status_code == 201, r.text
    calls = [
        ["POST", "/api/v1/users", {"name": "mallory2", "role": "admin", "password": "x" * 12}],
        ["POST", f"/api/v1/users/{mallory_id}/policies", {**grant, "action": "execute"}],
        ["PUT", "/api/v1/macros/account/OWNED", {"value": "yes"}],
        ["POST", "/api/v1/tokens", {"name": "kept"}],
        ["GET", "/api/v1/audit", None],
        ["POST", "/api/v1/jobconfigs", {"name": "evil", "command": ["/bin/true"]}],
        ["POST", "/api/v1/jobs", {"command": ["/bin/true"]}],
    ]
    command = [JOB_PYTHON, "-c", ATTACK, "api"]
    change = {"command": command, "macros": {"CALLS": json.dumps(calls)}}
    r = sb.mallory.patch(f"/api/v1/jobconfigs/{jc}", json=change)
    assert r.status_code == 200, r.text
    job = sb.wait(sb.run(sb.admin, jc))
    assert job["status"] == "FINISHED", sb.log(job["id"])
    results = sb.results(job["id"])
    assert len(results) == len(calls), sb.log(job["id"])
    _no_success(results, "api")
    assert {int(r["detail"]) for r in results} <= {403, 404}, results
    names = {u["name"] for u in sb.admin.get("/api/v1/users").json()["items"]}
    assert "mallory2" not in names


def test_the_home_is_private(sandboxed: Sandboxed) -> None:
    sb = sandboxed
    open_to_others = []
    jobs = sb.home / "work" / "jobs"
    for folder, dirnames, filenames in os.walk(sb.home):
        if Path(folder).parent == jobs:
            continue  # inside a running job's own folder (0700, checked as such): its files
        for name in (*dirnames, *filenames):
            path = Path(folder, name)
            mode = stat.S_IMODE(path.lstat().st_mode)
            allowed = 0o711 if path.is_dir() and _may_be_searchable(sb, path) else 0o700
            if mode & ~allowed & 0o077:
                open_to_others.append(f"{oct(mode)} {path}")
    home_mode = stat.S_IMODE(sb.home.stat().st_mode)
    # uid: job folders inside the home, which job uids may only pass through.
    assert home_mode == (0o711 if sb.mode == "uid" else 0o700), oct(home_mode)
    assert not open_to_others, open_to_others


def _may_be_searchable(sb: Sandboxed, path: Path) -> bool:
    """Folders job uids must pass through to reach their own: work/ and work/jobs/."""
    return sb.mode == "uid" and path in (sb.home / "work", sb.home / "work" / "jobs")


def _parent_of(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1])


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _alive(pid: int) -> bool:
    try:
        return _state(pid) != "Z"
    except OSError:
        return False


def _processes_with(marker: bytes) -> list[int]:
    found = []
    for pid in _pids():
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if marker in argv and _alive(pid):
            found.append(pid)
    return found


def _pids() -> list[int]:
    with os.scandir("/proc") as entries:
        return [int(e.name) for e in entries if e.name.isdigit()]
