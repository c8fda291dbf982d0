"""Templates through the real CLI against a real ``jobyard up``: YAML apply, inheritance,
``jobyard templates ...`` and the export/import round trip."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.cli import as_json, ok
from tests.support.server import RunningServer, jobyard_command, server_fixture

server = server_fixture(scope="module", workers=2)

Cli = Callable[..., subprocess.CompletedProcess[str]]
MANIFEST = """\
[entrypoints.main]
command = ["sh", "main.sh"]

[entrypoints.other]
command = ["sh", "-c", "echo other entry"]
"""
YAML = """\
packages:
  etl: {path: ./etl}
templates:
  - name: acme
    package: etl
    entrypoint: main
    description: shared by the acme jobs
jobconfigs:
  - name: acme-orders
    template: acme
  - name: acme-other
    template: acme
    entrypoint: other
    schedules:
      - cron: "0 0 2 * * ?"
"""


@pytest.fixture
def cli(server: RunningServer, tmp_path: Path) -> Cli:
    """Run ``jobyard ARGS`` against the module's server."""

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


def _write(tmp_path: Path) -> Path:
    folder = tmp_path / "etl"
    folder.mkdir()
    (folder / "jobyard.toml").write_text(MANIFEST)
    (folder / "main.sh").write_text('echo "main TPL=$JOB_TEMPLATE_ID"\n')
    spec = tmp_path / "jobs.yaml"
    spec.write_text(YAML)
    return spec


def _actions(report: dict[str, object], key: str) -> dict[str, str]:
    return {i["name"]: i["action"] for i in report[key]}  # type: ignore[attr-defined, index]


def test_apply_run_show_clone_export_import(cli: Cli, tmp_path: Path) -> None:
    spec = _write(tmp_path)
    dry = as_json(cli("apply", "-f", str(spec), "--dry-run", "--json"))
    assert _actions(dry, "templates") == {"acme": "create"}
    changes = {c["field"]: c["new"] for c in dry["jobconfigs"][0]["changes"]}
    assert changes["template_id"] == "<new template acme>"
    assert as_json(cli("templates", "list", "--json"))["items"] == []  # nothing changed

    shown = ok(cli("apply", "-f", str(spec))).stdout
    assert "templates" in shown and "created" in shown
    again = as_json(cli("apply", "-f", str(spec), "--json"))
    assert _actions(again, "templates") == {"acme": "unchanged"}
    assert _actions(again, "jobconfigs") == {"acme-orders": "unchanged", "acme-other": "unchanged"}

    template = as_json(cli("templates", "show", "acme", "--json"))
    assert template["entrypoint"] == "main" and len(template["jobconfigs"]) == 2
    assert "acme-orders" in ok(cli("templates", "show", str(template["id"]))).stdout
    assert "acme" in ok(cli("templates", "list")).stdout

    result = ok(cli("run", "acme-orders", "--follow"))
    assert f"main TPL={template['id']}" in result.stdout + result.stderr
    result = ok(cli("run", "acme-other", "--follow"))
    assert "other entry" in result.stdout + result.stderr

    # jobyard export writes the template and `template: acme`; applying it changes nothing.
    exported = tmp_path / "exported.yaml"
    ok(cli("export", "-o", str(exported), "acme-orders", "acme-other"))
    text = exported.read_text()
    assert "templates:" in text and "template: acme" in text and "template_id" not in text
    back = as_json(cli("apply", "-f", str(exported), "--json"))
    assert _actions(back, "templates") == {"acme": "unchanged"}
    assert set(_actions(back, "jobconfigs").values()) == {"unchanged"}

    # clone, with the jobconfigs renamed
    clone = as_json(cli("templates", "clone", "acme", "globex", "--with-jobconfigs", "--json"))
    assert [j["name"] for j in clone["jobconfigs"]] == ["globex.acme-orders", "globex.acme-other"]
    assert "created template" in ok(cli("templates", "clone", "acme", "initech")).stdout

    # export / import (JSON) of one template with its jobconfigs
    dump = tmp_path / "acme.json"
    ok(cli("templates", "export", "acme", "-o", str(dump)))
    document = json.loads(dump.read_text())
    assert [j["name"] for j in document["jobconfigs"]] == ["acme-orders", "acme-other"]
    report = as_json(cli("templates", "import", str(dump), "--json"))
    assert report["template"]["action"] == "unchanged"
    document["template"]["name"] = "acme-copy"
    for item in document["jobconfigs"]:
        item["name"] = "copy-" + item["name"]
    dump.write_text(json.dumps(document))
    table = ok(cli("templates", "import", str(dump))).stdout
    assert "acme-copy" in table and "created" in table

    # delete: refused while jobconfigs name it
    ok(cli("templates", "delete", "initech"))
    refused = ok(cli("templates", "delete", "acme"), 4)
    assert "used by 2 jobconfig" in refused.stderr
    ok(cli("templates", "show", "initech"), 4)


def test_a_jobconfig_naming_an_unknown_template_changes_nothing(cli: Cli, tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("jobconfigs:\n  - name: orphan\n    template: nowhere\n")
    result = ok(cli("apply", "-f", str(spec)), 5)
    assert "no template named 'nowhere'" in result.stderr
    ok(cli("jobconfigs", "show", "orphan"), 4)
