"""The apply document on the server side: JSON documents, packages by sha256, problems
located by path, and the export form with packages by name."""

from __future__ import annotations

import pytest

from jobyard.service.apply.document import SpecError, parse_apply_data, parse_apply_text
from jobyard.service.apply.export import package_name
from jobyard.service.apply.exportform import dump_yaml, export_document
from jobyard.service.apply.nodes import line_at, loc_of, where_text

SHA = "ab" * 32


def test_where_and_loc_are_inverse() -> None:
    for loc in (["jobconfigs", 2, "schedules", 0], ["packages", "etl"], ["templates", 11]):
        assert loc_of(where_text(loc)) == loc
    assert loc_of("") == []


def test_a_json_document_names_its_problems_by_path() -> None:
    with pytest.raises(SpecError) as info:
        parse_apply_data({"jobconfigs": [{"name": "a", "command": ["x"], "colour": 1}]})
    (problem,) = info.value.problems
    assert problem.line is None and problem.where == "jobconfigs[0]"
    assert line_at(None, ["jobconfigs", 0]) is None


def test_packages_by_path_or_sha256() -> None:
    doc = parse_apply_data(
        {
            "packages": {"a": {"sha256": SHA}, "b": {"path": "./b", "sha256": SHA}},
            "jobconfigs": [{"name": "j", "package": "a"}],
        }
    )
    assert doc.packages["a"].sha256 == SHA and doc.packages["a"].path is None
    assert doc.packages["b"].given_path == "./b"
    with pytest.raises(SpecError) as info:
        parse_apply_text("packages:\n  a: {}\n  b: {sha256: ABC}\n")
    messages = [p.message for p in info.value.problems]
    assert any("`path`" in m and "`sha256`" in m for m in messages)
    assert any("64 lowercase hex digits" in m for m in messages)


def test_export_writes_packages_by_name_and_reads_back() -> None:
    jobconfigs = [
        {"name": "one", "package_id": 3, "entrypoint": "main", "macros": {}},
        {"name": "two", "package_id": 9, "command": ["x"]},
        {"name": "three", "command": ["y"]},
    ]
    templates = [{"name": "t", "package_id": 3, "entrypoint": "main", "description": ""}]
    document = export_document(jobconfigs, templates, {3: ("etl", SHA)})
    assert document["packages"] == {"etl": {"sha256": SHA}}
    assert document["templates"] == [{"name": "t", "package": "etl", "entrypoint": "main"}]
    assert document["jobconfigs"][0]["package"] == "etl"
    assert "package_id" not in document["jobconfigs"][0]
    assert document["jobconfigs"][1]["package_id"] == 9  # not in the map: stays an id
    back = parse_apply_text(dump_yaml(document))
    assert back.jobconfigs[0].package == "etl" and back.packages["etl"].sha256 == SHA
    assert back.templates[0].package == "etl"


def test_package_names_from_file_names() -> None:
    taken: set[str] = set()
    assert package_name("etl.zip", taken) == "etl"
    assert package_name("etl.tar.gz", taken) == "etl-2"
    assert package_name("my tool.sh", taken) == "my-tool.sh"
    assert package_name("...", taken) == "package"
