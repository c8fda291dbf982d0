"""The template routes of the fake API (``/api/v1/templates``): what apply and export use."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

FIELDS: dict[str, Any] = {
    "description": "",
    "package_id": None,
    "entrypoint": None,
    "command": None,
    "labels": {},
    "retries": 0,
    "retry_delay_seconds": 30.0,
    "retry_backoff": 2.0,
    "retry_on": ["FAILED"],
}


def _error(http_status: int, code: str, message: str, **details: Any) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": details}}
    return JSONResponse(body, status_code=http_status)


class FakeTemplates:
    """Templates by id; jobconfigs are the fake's, to refuse deleting a used template."""

    def __init__(self, jobconfigs: dict[int, dict[str, Any]]) -> None:
        self.items: dict[int, dict[str, Any]] = {}
        self.jobconfigs = jobconfigs

    def _spec(self, body: dict[str, Any]) -> dict[str, Any] | JSONResponse:
        unknown = set(body) - set(FIELDS) - {"name"}
        if unknown or not body.get("name"):
            return _error(422, "invalid_input", "bad template", fields=sorted(unknown))
        return {**FIELDS, **body}

    def install(self, app: FastAPI) -> None:
        """Add the routes to the fake's app."""
        base = "/api/v1/templates"

        @app.get(base)
        async def list_(name: str | None = None) -> dict[str, Any]:
            items = sorted(self.items.values(), key=lambda t: t["id"])
            if name is not None:
                items = [t for t in items if t["name"] == name]
            return {"items": items, "next_cursor": None}

        @app.post(base, status_code=201, response_model=None)
        async def create(request: Request) -> dict[str, Any] | JSONResponse:
            spec = self._spec(await request.json())
            if isinstance(spec, JSONResponse):
                return spec
            if any(t["name"] == spec["name"] for t in self.items.values()):
                return _error(409, "conflict", f"template {spec['name']!r} exists")
            now = datetime.now(UTC).isoformat()
            template_id = max(self.items, default=0) + 1
            item = {"id": template_id, **spec, "owner": "admin", "created_at": now,
                    "updated_at": now}  # fmt: skip
            self.items[template_id] = item
            return item

        @app.get(base + "/{template_id}", response_model=None)
        async def get(template_id: int) -> dict[str, Any] | JSONResponse:
            if template_id not in self.items:
                return _error(404, "not_found", f"template {template_id} not found")
            return self.items[template_id]

        @app.put(base + "/{template_id}", response_model=None)
        async def replace(template_id: int, request: Request) -> dict[str, Any] | JSONResponse:
            if template_id not in self.items:
                return _error(404, "not_found", f"template {template_id} not found")
            spec = self._spec(await request.json())
            if isinstance(spec, JSONResponse):
                return spec
            self.items[template_id].update(spec)
            return self.items[template_id]

        @app.delete(base + "/{template_id}", response_model=None)
        async def delete(template_id: int) -> Response:
            if any(j.get("template_id") == template_id for j in self.jobconfigs.values()):
                return _error(409, "conflict", f"template {template_id} is used")
            if self.items.pop(template_id, None) is None:
                return _error(404, "not_found", f"template {template_id} not found")
            return Response(status_code=204)
