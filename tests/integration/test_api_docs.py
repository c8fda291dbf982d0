"""The OpenAPI document describes every route fully, and its pages are open and offline.

The browser half (Swagger UI and ReDoc rendering with other hosts blocked, "Try it
out") is ``tests/e2e/test_api_docs_browser.py``; this file checks the document itself
and what the server answers without a token.
"""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema_rs
import pytest

from jobyard.api.app import create_app
from jobyard.api.auth import OPEN_PATHS
from jobyard.api.docs import ASSETS, CONTENT_SECURITY_POLICY, STATIC
from jobyard.runtime import Runtime
from jobyard.settings import Settings
from tests.integration.conftest import Env

DOCUMENT: dict[str, Any] = create_app(Runtime(Settings(workers=0))).openapi()
SCHEMAS: dict[str, Any] = DOCUMENT["components"]["schemas"]
OPERATIONS = [
    (method.upper(), path, op)
    for path, ops in DOCUMENT["paths"].items()
    for method, op in ops.items()
]
ERROR_REF = "#/components/schemas/ErrorBody"


def _ids(items: list[tuple[str, str, Any]]) -> list[str]:
    return [f"{m} {p}" for m, p, _ in items]


def _refs(schema: dict[str, Any]) -> list[str]:
    """Schema names a body schema points at (through ``anyOf`` with null too)."""
    if "$ref" in schema:
        return [schema["$ref"].rsplit("/", 1)[-1]]
    return [name for sub in schema.get("anyOf", []) for name in _refs(sub)]


@pytest.mark.parametrize(("method", "path", "op"), OPERATIONS, ids=_ids(OPERATIONS))
def test_operation_has_summary_security_and_error_answers(
    method: str, path: str, op: dict[str, Any]
) -> None:
    summary = op.get("summary", "")
    assert summary and len(summary) > 8, (method, path, summary)
    responses = op["responses"]
    if path in OPEN_PATHS:
        assert op["security"] == []
    else:
        assert op["security"] == [{"bearerAuth": []}]
        assert "401" in responses
    # Liveness answers without the database; everything else may meet an outage.
    assert ("503" in responses) == (path != "/healthz")
    if op.get("parameters") or op.get("requestBody") or op["security"]:
        assert any(s.startswith("4") for s in responses), "no client error documented"
    for status, answer in responses.items():
        if int(status) < 400:
            continue
        media = answer["content"]["application/json"]
        assert media["schema"] == {"$ref": ERROR_REF}, (status, media)
        assert media["example"]["error"]["code"], status
        assert answer["description"] not in ("", "Validation Error", "Not Found"), status


def test_bearer_scheme_and_no_foreign_error_shape() -> None:
    assert DOCUMENT["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": DOCUMENT["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    text = str(DOCUMENT)
    assert "HTTPValidationError" not in text


@pytest.mark.parametrize(("method", "path", "op"), OPERATIONS, ids=_ids(OPERATIONS))
def test_json_bodies_and_answers_have_examples(method: str, path: str, op: dict[str, Any]) -> None:
    body = op.get("requestBody", {}).get("content", {}).get("application/json")
    if body is not None:
        names = _refs(body["schema"])
        assert names, (method, path, "inline request body schema")
        for name in names:
            assert SCHEMAS[name].get("examples"), f"no example for request body {name}"
    for status, answer in op["responses"].items():
        media = answer.get("content", {}).get("application/json")
        if not status.startswith("2") or media is None:
            continue
        for name in _refs(media.get("schema", {})):
            # A listing shows its items' example (Swagger UI composes the page from it).
            schema = SCHEMAS[name]
            items = schema.get("properties", {}).get("items", {}).get("items", {})
            listed = _refs(items) if items else []
            has = schema.get("examples") or (listed and SCHEMAS[listed[0]].get("examples"))
            assert has, f"no example for answer {name} (or its items)"


def test_examples_validate_against_their_schemas() -> None:
    checked = 0
    for name, schema in SCHEMAS.items():
        for example in schema.get("examples", []):
            root = {"$ref": f"#/components/schemas/{name}", "components": DOCUMENT["components"]}
            validator = jsonschema_rs.Draft202012Validator(root)
            errors = [e.message for e in validator.iter_errors(example)]
            assert not errors, (name, errors)
            checked += 1
    assert checked >= 30


async def test_document_and_pages_are_open(env: Env) -> None:
    async with httpx.AsyncClient(base_url=env.url) as anon:
        r = await anon.get("/api/v1/openapi.json")
        assert r.status_code == 200
        assert r.json()["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
        for path, (filename, media_type) in ASSETS.items():
            r = await anon.get(path)
            assert r.status_code == 200, (path, r.text[:200])
            assert r.headers["content-type"] == media_type, path
            assert r.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
            assert r.headers["x-content-type-options"] == "nosniff"
            assert r.content == (STATIC / filename).read_bytes()
        # Exact paths only: nothing else under /docs is open.
        assert (await anon.get("/docs/../api/v1/jobs")).status_code in (401, 404)
        assert (await anon.get("/docs/other.js")).status_code == 401


def test_pages_load_nothing_from_other_hosts() -> None:
    for page in ("docs.html", "redoc.html", "swagger-init.js"):
        text = (STATIC / page).read_text()
        assert "://" not in text and '"//' not in text, page
