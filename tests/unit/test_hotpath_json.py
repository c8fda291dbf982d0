"""The job path's fast paths parse and write JSON as the routes they stand in for.

:func:`jobyard.api.hotpath.parse_body` validates the raw bytes with pydantic-core
(``model_validate_json``) where FastAPI's routes run ``json.loads`` then validation: a
body the fast path accepts must give the very model the routes would get (anything else
it leaves to FastAPI). :func:`jobyard.api.worker_hotpath.json_bytes` writes the worker
routes' answers with orjson where they were written by ``json.dumps``: the same JSON
values, and ``json.dumps``' output where orjson refuses one. :func:`jobyard.api.dto.json_response`
sends pydantic-core's bytes as they are: those of ``model_dump_json``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from jobyard.api.dto import AdhocJobIn, ErrorBody, ErrorDetail, RunIn, json_response
from jobyard.api.hotpath import parse_body
from jobyard.api.routes.worker import AcquireIn, ReportsIn
from jobyard.api.worker_hotpath import json_bytes

_ACQUIRE = '{"worker_id": "w-1", "pool": "default", "free": %s}'
_REPORT = '{"worker_id": "w-1", "reports": [{"job_id": %s, "kind": "running", "started_at": %s}]}'

#: Bodies the fast path must take itself (the common calls of each route).
WELL_FORMED: list[tuple[type[BaseModel], bytes]] = [
    (AcquireIn, (_ACQUIRE % "8").encode()),
    (
        AcquireIn,
        json.dumps(
            {
                "worker_id": "w-1",
                "pool": "gpu",
                "labels": {"zone": "a"},
                "free": 8,
                "wait_seconds": 25.0,
                "reports": [
                    {
                        "job_id": 1,
                        "kind": "running",
                        "pid": 7,
                        "started_at": "2026-01-01T00:00:00Z",
                    },
                    {"job_id": 2, "kind": "end", "status": "FINISHED", "exit_code": 0},
                    {"job_id": 3, "kind": "end", "status": "FAILED", "reason": "lost"},
                ],
            }
        ).encode(),
    ),
    (ReportsIn, (_REPORT % ("5", '"2026-01-01T00:00:00.123456+02:00"')).encode()),
    (AdhocJobIn, b'{"command": ["true"]}'),
    (
        AdhocJobIn,
        '{"command": ["echo", "h\u00e9llo \\u263a"], "macros": {"A": "1"}, "pool": "p", '
        '"timeout": 5, "success_exit_codes": [0, 3], "hold": true}'.encode(),
    ),
    (RunIn, b'{"macros": {"X": "y"}, "hold": false}'),
    (RunIn, b"{}"),
]

#: Bodies where JSON parsers and the two validation modes could part ways.
AWKWARD: list[tuple[type[BaseModel], bytes]] = [
    *((AcquireIn, (_ACQUIRE % v).encode()) for v in ("8.0", "8.5", '"8"', "true", "null")),
    *((AcquireIn, (_ACQUIRE % v).encode()) for v in ("-1", "1001", "1e2", "2" * 40)),
    *((AcquireIn, (_ACQUIRE % f'1, "wait_seconds": {v}').encode()) for v in ("NaN", "Infinity")),
    *((AcquireIn, (_ACQUIRE % f'1, "wait_seconds": {v}').encode()) for v in ("-Infinity", "1e999")),
    (AcquireIn, (_ACQUIRE % '1, "free": 1000000').encode()),  # a duplicate key
    (AcquireIn, (_ACQUIRE % '1, "free": 2').encode()),
    (AcquireIn, (_ACQUIRE % '1, "bogus": 1').encode()),  # extra="forbid"
    (AcquireIn, (_ACQUIRE % '1, "labels": {"": "x"}').encode()),
    (AcquireIn, (_ACQUIRE % '1, "labels": {"a": 1}').encode()),
    (AcquireIn, b'{"worker_id": "w\\ud800", "pool": "p", "free": 1}'),  # a lone surrogate
    (AcquireIn, b'{"worker_id": "w\xff", "pool": "p", "free": 1}'),  # not UTF-8
    (AcquireIn, b'{"worker_id": "w\x01", "pool": "p", "free": 1}'),  # a raw control char
    (AcquireIn, b'{"worker_id": "w\\u0000", "pool": "p", "free": 1}'),
    (AcquireIn, (" " + _ACQUIRE % "1" + "\n ").encode()),
    (AcquireIn, (_ACQUIRE % "1" + " x").encode()),
    (AcquireIn, (_ACQUIRE % "1" + "{}").encode()),
    (AcquireIn, b"\xef\xbb\xbf" + (_ACQUIRE % "1").encode()),  # a byte order mark
    (AcquireIn, (_ACQUIRE % "1").encode("utf-16")),
    (AcquireIn, (_ACQUIRE % "1").encode("utf-32-le")),
    *((AcquireIn, v) for v in (b"[]", b"null", b'"x"', b"1", b"{", b"{}", b"[" * 5000)),
    *((ReportsIn, (_REPORT % ("5", v)).encode()) for v in ('"2026-01-01"', "1700000000")),
    *((ReportsIn, (_REPORT % ("5", v)).encode()) for v in ('"1700000000"', '"yesterday"')),
    *((ReportsIn, (_REPORT % ("5", v)).encode()) for v in ('"2026-01-01T00:00:00"', "null")),
    *((ReportsIn, (_REPORT % (v, "null")).encode()) for v in ("9" * 30, "-1", "1.0", '"7"')),
    (ReportsIn, b'{"worker_id": "w", "reports": [{"job_id": 1, "kind": "end", "status": "DONE"}]}'),
    (ReportsIn, b'{"worker_id": "w", "reports": [{"job_id": 1, "kind": "end", "status": null}]}'),
    (AdhocJobIn, b'{"command": []}'),
    (AdhocJobIn, b'{"command": ["true"], "timeout": 5.0, "success_exit_codes": [256]}'),
    (AdhocJobIn, b'{"command": ["true"], "macros": {"A": 1}}'),
    (AdhocJobIn, b'{"command": ["true"], "package_id": 0}'),
    (AdhocJobIn, b'{"command": ["true"], "hold": "yes"}'),
    (AdhocJobIn, b'{"command": ["true"], "hold": 1}'),
    (AdhocJobIn, b'{"command": "true"}'),
    (RunIn, b'{"macros": null}'),
    (RunIn, b"null"),
]


def _as_the_routes_parse(body: bytes, model: type[BaseModel]) -> BaseModel | None:
    """What FastAPI's route makes of ``body``: ``json.loads``, then validation (None:
    an error answer, 400 when ``json.loads`` fails: too deeply nested included)."""
    try:
        data: Any = json.loads(body)
    except (ValueError, RecursionError):
        return None
    try:
        return model.model_validate(data)
    except ValidationError:
        return None


@pytest.mark.parametrize(("model", "body"), WELL_FORMED + AWKWARD)
def test_a_body_the_fast_path_takes_is_the_model_the_route_gets(
    model: type[BaseModel], body: bytes
) -> None:
    fast = parse_body(body, model)
    if fast is not None:
        assert fast == _as_the_routes_parse(body, model)
    if (model, body) in WELL_FORMED:
        assert fast is not None


def test_only_json_in_other_encodings_is_left_to_fastapi() -> None:
    # Taken by the routes alone (json.loads reads UTF-16/32 and a byte order mark): the
    # fast path passes them on, and FastAPI answers them as it always did.
    left = [
        (model, body)
        for model, body in AWKWARD
        if parse_body(body, model) is None and _as_the_routes_parse(body, model) is not None
    ]
    assert sorted(body[:4] for _, body in left) == sorted(
        [b"\xef\xbb\xbf{", b"\xff\xfe{\x00", b"{\x00\x00\x00"]
    )


def test_an_empty_body_stands_for_the_given_model() -> None:
    assert parse_body(b"", RunIn, empty=RunIn()) == RunIn()
    assert parse_body(b"", AdhocJobIn) is None


def test_a_json_response_holds_the_models_json() -> None:
    created = datetime(2026, 12, 7, 17, 0, 0, 123456, tzinfo=UTC)
    model = ErrorBody(
        error=ErrorDetail(code="x", message="h\u00e9 \U0001f600", details={"at": created})
    )
    response = json_response(model, 201)
    assert response.body == model.model_dump_json().encode()
    assert json.loads(response.body)["error"]["details"]["at"] == "2026-12-07T17:00:00.123456Z"
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"


ANSWERS: list[dict[str, Any]] = [
    {"assignments": []},
    {
        "assignments": [
            {
                "job": {"id": 2**63 - 1, "macros": {"A": "h\u00e9llo \u263a \U0001f600"}},
                "argv": ["sh", "-c", 'echo "\\n"\t\x00\x1f\u2028'],
                "timeout_seconds": 1.5,
                "success_exit_codes": [0, 255],
                "package": None,
                "record": "x" * 300,
            }
        ],
        "results": [{"job_id": 1, "kind": "end", "moved": False, "error": "not held"}],
    },
]


@pytest.mark.parametrize("answer", ANSWERS)
def test_an_answer_holds_the_values_json_dumps_wrote(answer: dict[str, Any]) -> None:
    written = json_bytes(answer)
    assert json.loads(written) == json.loads(json.dumps(answer)) == answer
    # Byte for byte what json.dumps writes compact, non-ASCII text left as UTF-8.
    assert written == json.dumps(answer, separators=(",", ":"), ensure_ascii=False).encode()


def test_non_ascii_text_is_sent_as_utf8() -> None:
    assert json_bytes({"a": "\u00e9\U0001f600"}) == '{"a":"\u00e9\U0001f600"}'.encode()


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, "w\ud800"])
def test_what_orjson_refuses_is_written_by_json_dumps(value: Any) -> None:
    answer = {"results": [{"job_id": value}]}
    assert json_bytes(answer) == json.dumps(answer, separators=(",", ":")).encode()
