"""Configuration as code on the server: ``POST /api/v1/apply`` and ``GET /api/v1/export``
against ``jobyard apply`` / ``jobyard export``, over the YAML documents of
``apply_fixtures/`` (one server for the module; each document its own names).

The same document gives the same plan through the API and the CLI; after applying it,
both plan nothing; the export of what was applied applies as a no-op (through both).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from jobyard.cli.archive import prepared_package
from tests.support.cli import as_json, ok
from tests.support.server import RunningServer, jobyard_command, server_fixture

server = server_fixture(scope="module", workers=1)

FIXTURES = Path(__file__).parent / "apply_fixtures"
DOCUMENTS = sorted(p.name for p in FIXTURES.glob("*.yaml"))
API = "/api/v1"

Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(server: RunningServer, tmp_path: Path) -> Cli:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*jobyard_command(), *args],
            env=server.client_env(),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    return run


@pytest.fixture
def api(server: RunningServer) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {server.token}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
        yield client


def copy_fixture(tmp_path: Path, name: str) -> Path:
    """The document in a folder of its own, with the package folder next to it."""
    folder = tmp_path / "doc"
    shutil.copytree(FIXTURES, folder)
    return folder / name


def api_document(path: Path) -> dict[str, Any]:
    """The document as a script would send it: package paths replaced by their sha256."""
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    for name, package in (data.get("packages") or {}).items():
        with prepared_package(path.parent / package["path"]) as prepared:
            data["packages"][name] = {"sha256": prepared.sha256}
    return data


def post_apply(
    api: httpx.Client, document: dict[str, Any], *, dry_run: bool, as_yaml: bool
) -> dict[str, Any]:
    params = {"dry_run": "true" if dry_run else "false"}
    if as_yaml:
        body = yaml.safe_dump(document, sort_keys=False)
        headers = {"Content-Type": "application/yaml"}
        r = api.post(f"{API}/apply", params=params, content=body, headers=headers)
    else:
        r = api.post(f"{API}/apply", params=params, json=document)
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


def actions(report: dict[str, Any]) -> set[str]:
    """Every action of a report (templates, jobconfigs, schedules)."""
    found = {i["action"] for i in [*report["templates"], *report["jobconfigs"]]}
    found |= {s["action"] for i in report["jobconfigs"] for s in i.get("schedules") or []}
    return found


@pytest.mark.parametrize("name", DOCUMENTS)
def test_api_and_cli_plan_alike_and_export_applies_as_a_no_op(
    name: str, cli: Cli, api: httpx.Client, tmp_path: Path
) -> None:
    path = copy_fixture(tmp_path, name)
    document = api_document(path)

    # before: both plan the same creations (packages not pushed yet: "new")
    by_cli = as_json(cli("apply", "-f", str(path), "--dry-run", "--json"))
    assert by_cli == post_apply(api, document, dry_run=True, as_yaml=True)
    assert by_cli == post_apply(api, document, dry_run=True, as_yaml=False)
    assert "create" in actions(by_cli)

    applied = as_json(cli("apply", "-f", str(path), "--json"))
    assert "create" not in actions(applied) and "created" in actions(applied)

    # after: both plan nothing, and agree
    again = post_apply(api, document, dry_run=True, as_yaml=True)
    assert again == as_json(cli("apply", "-f", str(path), "--dry-run", "--json"))
    assert actions(again) == {"unchanged"}
    assert {p["state"] for p in again["packages"]} <= {"unchanged"}

    # the export of these jobconfigs applies as a no-op, through the API and the CLI
    names = [j["name"] for j in applied["jobconfigs"]]
    exported = api.get(f"{API}/export", params=[("name", n) for n in names])
    assert exported.status_code == 200, exported.text
    assert exported.headers["content-type"].startswith("application/yaml")
    assert "package_id" not in exported.text
    r = api.post(
        f"{API}/apply",
        params={"dry_run": "true"},
        content=exported.text,
        headers={"Content-Type": "application/yaml"},
    )
    assert r.status_code == 200, r.text
    assert actions(r.json()) == {"unchanged"}
    out = tmp_path / "exported.yaml"
    ok(cli("export", "-o", str(out), *names))
    assert out.read_text() == exported.text
    assert actions(as_json(cli("apply", "-f", str(out), "--json"))) == {"unchanged"}
    as_json_export = api.get(f"{API}/export", params=[("name", names[0]), ("format", "json")])
    assert as_json_export.json()["jobconfigs"][0]["name"] == names[0]


def test_cli_pushes_only_what_the_server_lacks(cli: Cli, tmp_path: Path) -> None:
    path = copy_fixture(tmp_path, "packaged.yaml")
    (path.parent / "etl" / "extra.txt").write_text(f"bytes of {tmp_path.name}\n")  # new sha256
    text = path.read_text().replace("fx-etl", "push-etl")
    path.write_text(text)

    def states(*extra: str) -> list[str]:
        report = as_json(cli("apply", "-f", str(path), "--json", *extra))
        return [p["state"] for p in report["packages"]]

    assert states("--dry-run") == ["new"]
    assert states() == ["pushed"]
    assert states() == ["unchanged"]  # the same bytes are not pushed again
    shown = ok(cli("apply", "-f", str(path))).stdout
    assert "unchanged" in shown and "pushed" not in shown


def test_cli_shows_the_servers_problems_at_their_line(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "orphan.yaml"
    path.write_text(
        "jobconfigs:\n"
        "  - name: line-ok\n"
        "    command: [x]\n"
        "  # the next one names a template that exists nowhere\n"
        "  - name: line-orphan\n"
        "    template: nowhere\n"
    )
    result = ok(cli("apply", "-f", str(path)), 5)
    assert f"{path}:5: jobconfigs[1]: no template named 'nowhere'" in result.stderr
    ok(cli("jobconfigs", "show", "line-ok"), 4)  # nothing was applied


def test_export_over_the_applied_file_gives_it_back(cli: Cli, tmp_path: Path) -> None:
    path = copy_fixture(tmp_path, "packaged.yaml")
    path.write_text(path.read_text().replace("fx-etl", "over-etl"))
    ok(cli("apply", "-f", str(path)))

    ok(cli("export", "-o", str(path), "over-etl", "over-etl-report"))
    exported = yaml.safe_load(path.read_text())
    assert exported["packages"] == {"etl": {"path": "./etl"}}  # as the file wrote it
    assert {j["package"] for j in exported["jobconfigs"]} == {"etl"}
    report = as_json(cli("apply", "-f", str(path), "--json"))
    assert actions(report) == {"unchanged"}
    assert [p["state"] for p in report["packages"]] == ["unchanged"]

    elsewhere = tmp_path / "elsewhere.yaml"  # a new file: packages by name and sha256
    ok(cli("export", "-o", str(elsewhere), "over-etl"))
    assert "sha256:" in elsewhere.read_text() and "path:" not in elsewhere.read_text()
