"""Templates in apply files (parsing, plan, apply against the fake API) and in export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobyard.cli.plan import Action, FieldChange, plan_template
from jobyard.cli.yamlspec import SpecError, dump_export, parse_apply_text
from tests.unit.cli.conftest import Invoke
from tests.unit.cli.fakeapi import DEFAULTS, FakeApi

FILE = """\
templates:
  - name: acme
    command: [sh, -c, echo acme]
    description: shared
jobconfigs:
  - name: orders
    template: acme
  - name: refunds
    template: acme
    command: [sh, -c, echo own]
"""


def problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_apply_text(text, source="f.yaml")
    return str(info.value).splitlines()


def test_templates_are_parsed_with_defaults() -> None:
    spec = parse_apply_text(FILE)
    (acme,) = spec.templates
    assert (acme.name, acme.line) == ("acme", 2)
    assert acme.spec == {
        "name": "acme", "description": "shared", "package_id": None, "entrypoint": None,
        "command": ["sh", "-c", "echo acme"], "labels": {}, "retries": 0,
        "retry_delay_seconds": 30.0,
        "retry_backoff": 2.0, "retry_on": ["FAILED"],
    }  # fmt: skip
    orders, refunds = spec.jobconfigs
    assert (orders.template, orders.spec["template_id"], orders.spec["command"]) == (
        "acme", None, None,
    )  # fmt: skip
    assert refunds.template == "acme"
    only = parse_apply_text("templates:\n  - name: t\n")
    assert only.jobconfigs == [] and only.templates[0].name == "t"
    with_entry = parse_apply_text("jobconfigs:\n  - name: j\n    template: t\n    entrypoint: e\n")
    assert with_entry.jobconfigs[0].spec["entrypoint"] == "e"  # the package comes from t


def test_template_problems_have_lines() -> None:
    assert problems("templates:\n  - name: a\n    package: nope\n") == [
        "f.yaml:3: templates[0]: unknown package 'nope' (packages: none declared)"
    ]
    found = problems(
        "templates:\n  - name: a\n  - name: b\n    colour: red\n"
        "jobconfigs:\n  - name: j\n    template: a\n    template_id: 3\n"
    )
    assert any("f.yaml:4: templates[1]: unknown key 'colour' (allowed: name," in p for p in found)
    assert any("give either `template` or `template_id`" in p for p in found)
    assert problems("templates:\n  - name: b\n    entrypoint: main\n") == [
        "f.yaml:2: templates[0]: `entrypoint` needs a package (`package` or `package_id`)"
    ]
    assert "duplicate template name 'x'" in "\n".join(
        problems("templates:\n  - name: x\n  - name: x\n")
    )
    assert "invalid name" in problems("templates:\n  - name: 'bad name'\n")[0]


def test_plan_template() -> None:
    desired = {"name": "t", "description": "", "package_id": None, "entrypoint": None,
               "command": ["x"]}  # fmt: skip
    created = plan_template(desired, None)
    assert created.action is Action.CREATE
    assert created.changes == (FieldChange("command", None, ["x"]),)
    same = plan_template(desired, {**desired, "id": 4, "owner": "me"})
    assert (same.action, same.jobconfig_id) == (Action.UNCHANGED, 4)
    changed = plan_template({**desired, "description": "d"}, {**desired, "id": 4})
    assert changed.action is Action.UPDATE
    assert changed.changes == (FieldChange("description", "", "d"),)


def test_export_writes_templates_and_names() -> None:
    jobconfigs = [{**DEFAULTS, "id": 1, "name": "orders", "template_id": 5, "template": "acme"}]
    templates = [{"name": "acme", "description": "", "package_id": None, "entrypoint": None,
                  "command": ["true"]}]  # fmt: skip
    text = dump_export(jobconfigs, templates)
    assert "template_id" not in text and "template: acme" in text
    parsed = parse_apply_text(text)
    assert [t.name for t in parsed.templates] == ["acme"]
    assert parsed.jobconfigs[0].template == "acme"


def test_apply_creates_templates_first_then_is_idempotent(
    invoke: Invoke, fake: FakeApi, tmp_path: Path
) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(FILE)
    dry = invoke("apply", "-f", str(path), "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    report = json.loads(dry.stdout)
    assert [(t["name"], t["action"]) for t in report["templates"]] == [("acme", "create")]
    assert fake.templates.items == {} and fake.jobconfigs == {}
    changes = {c["field"]: c["new"] for c in report["jobconfigs"][0]["changes"]}
    assert changes["template_id"] == "<new template acme>"

    done = invoke("apply", "-f", str(path))
    assert done.exit_code == 0, done.output
    assert "templates: 1 created" in done.stdout
    (template,) = fake.templates.items.values()
    assert {j["name"]: j["template_id"] for j in fake.jobconfigs.values()} == {
        "orders": template["id"], "refunds": template["id"],
    }  # fmt: skip
    posts = [p for m, p in fake.requests if m == "POST"]
    assert posts.index("/api/v1/templates") < posts.index("/api/v1/jobconfigs")
    again = json.loads(invoke("apply", "-f", str(path), "--json").stdout)
    assert [t["action"] for t in again["templates"]] == ["unchanged"]
    assert {j["action"] for j in again["jobconfigs"]} == {"unchanged"}

    path.write_text(FILE.replace("description: shared", "description: changed"))
    changed = json.loads(invoke("apply", "-f", str(path), "--json").stdout)
    assert [t["action"] for t in changed["templates"]] == ["updated"]
    assert template["description"] == "changed"


def test_a_refused_template_fails_its_jobconfigs_only(
    invoke: Invoke, fake: FakeApi, tmp_path: Path
) -> None:
    fake.templates.items[1] = {"id": 1, "name": "other", "description": "", "package_id": None,
                               "entrypoint": None, "command": ["x"]}  # fmt: skip
    path = tmp_path / "t.yaml"
    path.write_text(
        "templates:\n  - name: acme\n    command: [x]\n"
        "jobconfigs:\n  - name: a\n    template: acme\n  - name: b\n    template: other\n"
    )
    original = fake.templates._spec

    def refuse(body: dict[str, object]) -> object:
        if body.get("name") == "acme":
            from fastapi.responses import JSONResponse

            error = {"code": "invalid_input", "message": "no", "details": {}}
            return JSONResponse({"error": error}, status_code=422)
        return original(body)  # type: ignore[arg-type]

    fake.templates._spec = refuse  # type: ignore[assignment, method-assign]
    result = invoke("apply", "-f", str(path), "--json")
    assert result.exit_code == 4
    report = json.loads(result.stdout)
    assert report["templates"][0]["action"] == "failed"
    assert {j["name"]: j["action"] for j in report["jobconfigs"]} == {
        "a": "failed", "b": "created",
    }  # fmt: skip
    assert fake.jobconfigs[1]["template_id"] == 1


def test_templates_commands(invoke: Invoke, fake: FakeApi) -> None:
    fake.templates.items[3] = {"id": 3, "name": "acme", "description": "d", "package_id": None,
                               "entrypoint": None, "command": ["x"], "owner": "admin"}  # fmt: skip
    listed = invoke("templates", "list")
    assert listed.exit_code == 0 and "acme" in listed.stdout
    assert json.loads(invoke("templates", "list", "--json").stdout)["items"][0]["id"] == 3
    assert invoke("templates", "show", "nope").exit_code == 4
    fake.jobconfigs[1] = {**DEFAULTS, "id": 1, "name": "j", "template_id": 3}
    refused = invoke("templates", "delete", "acme")
    assert refused.exit_code == 4 and "is used" in refused.stderr
    del fake.jobconfigs[1]
    deleted = invoke("templates", "delete", "3")
    assert deleted.exit_code == 0 and "deleted template 3 (acme)" in deleted.stdout
    assert invoke("templates", "list").exit_code == 0
