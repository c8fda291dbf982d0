"""Macro-definition files (JSON, XML parsed safely) and the resolution of levels."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobyard.core.errors import InvalidInput
from jobyard.core.macros import (
    MacroDef,
    StoredMacro,
    export_json,
    export_xml,
    parse_definitions,
    parse_json_definitions,
    parse_xml_definitions,
    record_of,
    resolve,
)

_WATCH: dict[str, Any] = {"on": False, "events": []}


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _WATCH["on"] and event in ("open", "socket.connect", "socket.getaddrinfo", "urllib.Request"):
        _WATCH["events"].append((event, args))


sys.addaudithook(_audit)


@pytest.fixture
def no_io() -> Iterator[list[tuple[str, tuple[Any, ...]]]]:
    """Record every file open and network access made while the test body runs."""
    _WATCH["events"] = []
    _WATCH["on"] = True
    try:
        yield _WATCH["events"]
    finally:
        _WATCH["on"] = False


def test_xml_form() -> None:
    data = b"""<?xml version="1.0" encoding="UTF-8"?>
    <macrodefs>
      <macrodef name="DB_HOST" secure="false">db1.example</macrodef>
      <macrodef name="EMPTY"/>
      <macrodef name="TOKEN" secure="true">plain-secret</macrodef>
      <macrodef name="PASSWORD" secure="true" encrypted="true">QUJDREVGRw==</macrodef>
      <macrodef name="OLD" encrypted="true">QUJD</macrodef>
    </macrodefs>"""
    defs = parse_xml_definitions(data)
    assert defs == [
        MacroDef("DB_HOST", "db1.example", False),
        MacroDef("EMPTY", "", False),
        MacroDef("TOKEN", "plain-secret", True),
        MacroDef("PASSWORD", None, True),  # encrypted elsewhere: the name, no value
        MacroDef("OLD", "", False),
    ]


def test_json_forms() -> None:
    doc = {
        "macros": [
            {"name": "A", "value": "1"},
            {"name": "S", "value": None, "secure": True},
            {"name": "E", "value": "Zm9v", "secure": True, "encrypted": True},
            {"name": "N", "value": 5},
        ]
    }
    assert parse_json_definitions(json.dumps(doc).encode()) == [
        MacroDef("A", "1"),
        MacroDef("S", None, True),
        MacroDef("E", None, True),
        MacroDef("N", "5"),
    ]
    assert parse_json_definitions(b'{"X": "y"}') == [MacroDef("X", "y")]
    assert parse_definitions(b'  {"macros": []}') == []
    assert parse_definitions(b"<macrodefs/>", "text/plain") == []


@pytest.mark.parametrize(
    "data",
    [
        b"{",
        b'{"macros": [1]}',
        b'{"macros": [{"name": "1BAD", "value": "x"}]}',
        b'{"macros": [{"name": "JOB_ID", "value": "x"}]}',
        b'{"macros": [{"name": "A", "value": "x"}, {"name": "A", "value": "y"}]}',
        b'{"macros": [{"name": "A", "value": ["x"]}]}',
        b'{"macros": [{"name": "A", "secure": "maybe"}]}',
        b"<other/>",
        b"<macrodefs><other/></macrodefs>",
        b"<macrodefs><macrodef>x</macrodef></macrodefs>",
        b"<macrodefs>",
    ],
)
def test_bad_files_are_invalid_input(data: bytes) -> None:
    with pytest.raises(InvalidInput):
        parse_definitions(data)


def test_external_file_entity_refused_without_reading_it(
    tmp_path: Path, no_io: list[tuple[str, tuple[Any, ...]]]
) -> None:
    secret_file = tmp_path / "etc-passwd-like"
    secret_file.write_text("TOP-SECRET-CONTENT")
    missing = tmp_path / "does-not-exist"
    for target in (secret_file, missing):
        data = (
            f'<?xml version="1.0"?>\n<!DOCTYPE macrodefs [<!ENTITY xxe SYSTEM "file://{target}">]>'
            '\n<macrodefs><macrodef name="A">&xxe;</macrodef></macrodefs>'
        ).encode()
        with pytest.raises(InvalidInput, match="DTD or entities") as info:
            parse_definitions(data, "application/xml")
        assert "TOP-SECRET" not in str(info.value) and "TOP-SECRET" not in repr(info.value.details)
    reads = [e for e in no_io if str(tmp_path) in repr(e[1]) and e[1][1] != "w"]
    assert reads == []  # (the one open is the test writing the file)


def test_external_url_entity_and_dtd_refused_without_network(
    no_io: list[tuple[str, tuple[Any, ...]]],
) -> None:
    payloads = [
        b'<!DOCTYPE macrodefs [<!ENTITY x SYSTEM "http://127.0.0.1:9/x">]>'
        b'<macrodefs><macrodef name="A">&x;</macrodef></macrodefs>',
        b'<!DOCTYPE macrodefs SYSTEM "http://127.0.0.1:9/macrodefs.dtd">'
        b'<macrodefs><macrodef name="A">1</macrodef></macrodefs>',
        b'<!DOCTYPE macrodefs [<!ENTITY % p SYSTEM "http://127.0.0.1:9/p.dtd"> %p;]><macrodefs/>',
    ]
    for data in payloads:
        with pytest.raises(InvalidInput, match="refused"):
            parse_xml_definitions(data)
    assert no_io == []


def test_billion_laughs_refused() -> None:
    lol = b'<!ENTITY lol "lol">' + b"".join(
        b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
        for i in range(1, 10)
    )
    data = b"<!DOCTYPE macrodefs [" + lol + b']><macrodefs><macrodef name="A">&lol9;</macrodef>'
    data += b"</macrodefs>"
    with pytest.raises(InvalidInput, match="refused"):
        parse_xml_definitions(data)


def test_exports_never_carry_secure_values() -> None:
    rows = [
        StoredMacro("account", 0, "B", "plain", False, None, None),
        StoredMacro("account", 0, "A", "abc123:CIPHERTEXT", True, None, None),
    ]
    assert export_json(rows) == {
        "macros": [
            {"name": "A", "value": None, "secure": True},
            {"name": "B", "value": "plain", "secure": False},
        ]
    }
    xml = export_xml(rows)
    assert b"CIPHERTEXT" not in xml
    # What export writes, import reads back (secure ones as names without value).
    assert parse_definitions(xml) == [MacroDef("A", None, True), MacroDef("B", "plain", False)]
    assert parse_definitions(json.dumps(export_json(rows)).encode()) == parse_definitions(xml)


def test_resolution_precedence_and_record() -> None:
    resolved = resolve(
        [
            ("account", [("A", "account", False), ("S", "s-account", True)]),
            ("template", [("A", "template", False), ("T", "t", False)]),
            ("user", [("A", "user", False), ("U", "u", False)]),
            ("jobconfig", [("A", "jobconfig", False), ("S", "s-jobconfig", True)]),
            ("job", [("A", "job", False)]),
        ]
    )
    assert {n: (m.value, m.level) for n, m in resolved.items()} == {
        "A": ("job", "job"),
        "S": ("s-jobconfig", "jobconfig"),
        "T": ("t", "template"),
        "U": ("u", "user"),
    }
    record = record_of(resolved)
    assert record["S"] == {"level": "jobconfig", "secure": True, "value": None}
    assert record["A"] == {"level": "job", "secure": False, "value": "job"}
    assert "s-jobconfig" not in json.dumps(record)
