"""Validation of apply files: every problem reported, each with its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobyard.cli.yamlspec import (
    SpecError,
    dump_export,
    load_apply_file,
    parse_apply_text,
    spec_defaults,
)


def problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_apply_text(text, source="f.yaml")
    return str(info.value).splitlines()


def test_a_full_file_is_parsed_with_defaults_filled_in(tmp_path: Path) -> None:
    (tmp_path / "etl").mkdir()
    path = tmp_path / "jobs.yaml"
    path.write_text(
        """
packages:
  etl: {path: ./etl}
jobconfigs:
  - name: nightly-etl
    package: etl
    entrypoint: main
    macros: {TARGET: prod, PORT: 8080}
    max_concurrent: 2
    timeout: 30
    success_exit_codes: [0, 3]
    enabled: false
    description: "the nightly one"
    pool: big
    labels: {gpu: 1, zone: eu-1}
  - name: echo
    command: ["sh", "-c", "echo hi"]
"""
    )
    spec = load_apply_file(path)
    assert spec.packages["etl"].path == tmp_path / "etl"
    first, second = spec.jobconfigs
    assert first.package == "etl"
    assert first.line == 5
    assert first.spec == {
        "name": "nightly-etl",
        "description": "the nightly one",
        "package_id": None,
        "entrypoint": "main",
        "command": None,
        "macros": {"TARGET": "prod", "PORT": "8080"},  # numbers become strings
        "max_concurrent": 2,
        "timeout": 30,
        "success_exit_codes": [0, 3],
        "enabled": False,
        "pool": "big",
        "labels": {"gpu": "1", "zone": "eu-1"},  # numbers become strings
        "template_id": None,
        "parameters": [],
        "retries": 0,
        "retry_delay_seconds": 30.0,
        "retry_backoff": 2.0,
        "retry_on": ["FAILED"],
    }
    assert second.spec == {**spec_defaults(), "name": "echo", "command": ["sh", "-c", "echo hi"]}


def test_defaults_come_from_the_domain_spec() -> None:
    assert spec_defaults() == {
        "package_id": None,
        "entrypoint": None,
        "command": None,
        "macros": {},
        "max_concurrent": 1,
        "timeout": 0,
        "success_exit_codes": [0],
        "enabled": True,
        "description": "",
        "pool": "default",
        "labels": {},
        "template_id": None,
        "parameters": [],
        "retries": 0,
        "retry_delay_seconds": 30.0,
        "retry_backoff": 2.0,
        "retry_on": ["FAILED"],
    }


def test_unknown_keys_are_rejected_with_their_line() -> None:
    found = problems("jobconfigs:\n  - name: a\n    command: [x]\n    colour: red\nextra: 1\n")
    assert found[0].startswith("f.yaml:4: jobconfigs[0]: unknown key 'colour' (allowed: name,")
    allowed = "(allowed: packages, templates, jobconfigs)"
    assert found[1].startswith(f"f.yaml:5: unknown key 'extra' {allowed}")


def test_missing_name() -> None:
    assert problems("jobconfigs:\n  - command: [x]\n") == [
        "f.yaml:2: jobconfigs[0]: missing required key 'name'"
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("timeout: '30'", "jobconfigs[0].timeout: Input should be a valid integer, got '30'"),
        ("timeout: -1", "jobconfigs[0].timeout: Input should be greater than or equal to 0"),
        ("enabled: 1", "jobconfigs[0].enabled: Input should be a valid boolean, got 1"),
        ("command: echo", "jobconfigs[0].command: Input should be a valid list, got 'echo'"),
        ("macros: {A: yes}", "jobconfigs[0].macros.A: macro values are strings: quote it"),
        ("macros: {1A: x}", "macro name '1A' is not a valid environment variable name"),
        ("macros: {JOB_ID: x}", "macro 'JOB_ID' is set by jobyard for every job"),
        ("success_exit_codes: [256]", "success_exit_codes[0]: Input should be less than or equal"),
        ("success_exit_codes: []", "success_exit_codes: List should have at least 1 item"),
    ],
)
def test_bad_types_and_values(line: str, message: str) -> None:
    found = problems(f"jobconfigs:\n  - name: a\n    {line}\n")
    assert len(found) == 1, found
    assert found[0].startswith("f.yaml:3: "), found
    assert message in found[0]


def test_bad_names() -> None:
    found = problems("jobconfigs:\n  - name: 'no spaces'\n")
    assert "f.yaml:2: jobconfigs[0].name: invalid name 'no spaces'" in found[0]


def test_every_problem_is_reported_in_line_order() -> None:
    found = problems("jobconfigs:\n  - name: a\n    timeout: x\n  - command: [y]\n    bogus: 1\n")
    assert [p.split(":")[1] for p in found] == ["3", "4", "5"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("package: p\n    package_id: 1", "give either `package` or `package_id`, not both"),
        ("package_id: 1\n    entrypoint: m\n    command: [x]", "either `entrypoint` or `command`"),
        ("entrypoint: main", "`entrypoint` needs a package"),
        ("package_id: 0", "Input should be greater than or equal to 1"),
    ],
)
def test_contradictions(body: str, message: str) -> None:
    found = problems(f"packages:\n  p: {{path: .}}\njobconfigs:\n  - name: a\n    {body}\n")
    assert any(message in p for p in found), found


def test_duplicate_keys_and_names() -> None:
    assert problems("jobconfigs:\n  - name: a\n    name: b\n") == [
        "f.yaml:3: duplicate key 'name' (first at line 2)"
    ]
    found = problems("jobconfigs:\n  - name: a\n  - name: a\n")
    assert found == ["f.yaml:3: jobconfigs[1]: duplicate jobconfig name 'a' (first at line 2)"]


def test_unknown_package_and_missing_path(tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    path.write_text("packages:\n  p: {path: ./nope}\njobconfigs:\n  - name: a\n    package: q\n")
    with pytest.raises(SpecError) as info:
        load_apply_file(path)
    text = str(info.value)
    assert f"{path}:2: p: path './nope' does not exist" in text
    assert f"{path}:5: jobconfigs[0]: unknown package 'q' (packages: p)" in text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "f.yaml: the file is empty: nothing to apply"),
        ("jobconfigs: [\n", "f.yaml:2: invalid YAML"),
        ("- a\n", "f.yaml:1: the file must be a mapping"),
        ("jobconfigs:\npackages:\n", "f.yaml:1: nothing to apply"),
    ],
)
def test_not_an_apply_file(text: str, message: str) -> None:
    assert problems(text)[0].startswith(message)


def test_an_empty_list_is_a_valid_no_op() -> None:
    assert parse_apply_text("jobconfigs: []\n").jobconfigs == []


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="No such file"):
        load_apply_file(tmp_path / "missing.yaml")


def test_export_reads_back_as_the_same_jobconfigs() -> None:
    items = [
        {
            "id": 7,
            "name": "a",
            "description": "x: y # not a comment",
            "package_id": 3,
            "entrypoint": "main",
            "command": None,
            "macros": {"A": "1", "B": "yes"},
            "max_concurrent": 0,
            "timeout": 5,
            "success_exit_codes": [0, 3],
            "enabled": False,
            "pool": "default",
            "labels": {"gpu": "1", "zone": "eu-1"},
            "template_id": None,
            "parameters": ["DAY", "REGION"],
            "retries": 3,
            "retry_delay_seconds": 5.5,
            "retry_backoff": 1.0,
            "retry_on": ["ERROR", "FAILED"],
            "created_at": "2025-01-01T00:00:00Z",
        },
        {**spec_defaults(), "id": 8, "name": "b", "command": ["sh", "-c", "echo 'hi'; exit 0"]},
    ]
    text = dump_export(items)
    assert "id:" not in text.replace("package_id", "")
    assert "created_at" not in text
    parsed = parse_apply_text(text)
    for item, decl in zip(items, parsed.jobconfigs, strict=True):
        assert decl.spec == {k: item[k] for k in decl.spec}


def test_parameters_are_read_sorted_and_refused_when_never_settable() -> None:
    parsed = parse_apply_text(
        "jobconfigs:\n  - name: a\n    command: [x]\n    parameters: [DAY, REGION, DAY]\n"
    )
    assert parsed.jobconfigs[0].spec["parameters"] == ["DAY", "REGION"]
    found = problems(
        "jobconfigs:\n  - name: a\n    command: [x]\n    parameters: [DAY, LD_PRELOAD]\n"
    )
    assert found[0].startswith("f.yaml:4: jobconfigs[0].parameters: ")
    assert "parameter 'LD_PRELOAD' steers how programs are found and loaded" in found[0]
    found = problems("jobconfigs:\n  - name: a\n    command: [x]\n    parameters: [SESSION_ID]\n")
    assert "execution macro" in found[0]


def test_export_writes_parameters_only_when_there_are_some() -> None:
    items = [
        {**spec_defaults(), "id": 1, "name": "a", "command": ["x"], "parameters": ["DAY"]},
        {**spec_defaults(), "id": 2, "name": "b", "command": ["y"]},
    ]
    text = dump_export(items)
    assert "parameters: [DAY]" in text
    assert text.count("parameters") == 1
    parsed = parse_apply_text(text)
    assert [d.spec["parameters"] for d in parsed.jobconfigs] == [["DAY"], []]
