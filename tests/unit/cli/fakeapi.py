"""A small in-process stand-in for the jobyard API, for CLI unit tests.

It speaks the same JSON as the real API (paths, bodies, error bodies) over
``httpx.ASGITransport``, and "runs" a job the moment it is submitted: a command
containing ``fail`` ends ERROR with exit code 3, anything else FINISHED. Only what the
CLI needs is here; the real behaviour is tested end to end in ``tests/e2e``.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from jobyard.client import ApiClient
from tests.unit.cli.fakeschedules import FakeSchedules
from tests.unit.cli.faketemplates import FakeTemplates

TOKEN = "test-token"
DEFAULTS: dict[str, Any] = {
    "description": "",
    "package_id": None,
    "entrypoint": None,
    "command": None,
    "macros": {},
    "max_concurrent": 1,
    "timeout": 0,
    "success_exit_codes": [0],
    "enabled": True,
    "pool": "default",
    "labels": {},
    "template_id": None,
    "parameters": [],
    "retries": 0,
    "retry_delay_seconds": 30.0,
    "retry_backoff": 2.0,
    "retry_on": ["FAILED"],
}


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _error(http_status: int, code: str, message: str, **details: Any) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": details}}
    return JSONResponse(body, status_code=http_status)


class FakeApi:
    """State plus an ASGI app serving it."""

    def __init__(self) -> None:
        self.packages: dict[int, dict[str, Any]] = {}
        self.jobconfigs: dict[int, dict[str, Any]] = {}
        self.jobs: dict[int, dict[str, Any]] = {}
        self.logs: dict[int, str] = {}
        self.requests: list[tuple[str, str]] = []
        self.refused_names: set[str] = set()
        self.payloads: dict[int, dict[str, bytes]] = {}
        self.schedules = FakeSchedules(self.jobconfigs)
        self.app = self._build()
        self.schedules.install(self.app)
        self.templates = FakeTemplates(self.jobconfigs)
        self.templates.install(self.app)

    def client(self, server: str = "http://fake", token: str = TOKEN) -> ApiClient:
        """An API client wired to this fake."""
        return ApiClient(server, token, transport=httpx.ASGITransport(app=self.app))

    def _job(self, jobconfig: dict[str, Any], macros: dict[str, str], hold: bool) -> dict[str, Any]:
        job_id = len(self.jobs) + 1
        job: dict[str, Any] = {
            "id": job_id,
            "jobconfig_id": jobconfig["id"],
            "package_id": jobconfig["package_id"],
            "entrypoint": jobconfig["entrypoint"],
            "command": jobconfig["command"],
            "macros": {**jobconfig["macros"], **macros},
            "status": "WAITING",
            "status_reason": None,
            "exit_code": None,
            "trigger": "api",
            "created_at": _now(),
            "started_at": None,
            "ended_at": None,
        }
        self.jobs[job_id] = job
        if not hold:
            self.finish(job)
        return job

    def finish(self, job: dict[str, Any]) -> None:
        """Run the job at once: ``fail`` in the command means ERROR, exit 3."""
        failing = "fail" in " ".join(job["command"] or [])
        job.update(
            status="ERROR" if failing else "FINISHED",
            exit_code=3 if failing else 0,
            status_reason="exit code 3" if failing else None,
            started_at=_now(),
            ended_at=_now(),
        )
        self.logs[job["id"]] = f"line one of job {job['id']}\nmacros {job['macros']}\n"

    def _build(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def auth(request: Request, call_next: Any) -> Response:
            self.requests.append((request.method, request.url.path))
            if request.url.path != "/healthz" and (
                request.headers.get("authorization") != f"Bearer {TOKEN}"
            ):
                return _error(401, "unauthorized", "missing or invalid token")
            response: Response = await call_next(request)
            return response

        @app.get("/healthz")
        async def healthz() -> dict[str, str]:
            return {"status": "ok"}

        @app.post("/api/v1/packages", status_code=201)
        async def push(file: UploadFile = File(...)) -> dict[str, Any]:
            data = await file.read()
            sha = hashlib.sha256(data).hexdigest()
            for package in self.packages.values():
                if package["sha256"] == sha:
                    return package
            package_id = len(self.packages) + 1
            package = {
                "id": package_id,
                "sha256": sha,
                "filename": file.filename,
                "size": len(data),
                "kind": "zip" if data[:2] == b"PK" else "file",
                "entrypoints": ["main"],
                "created_at": _now(),
            }
            self.packages[package_id] = package
            return package

        @app.get("/api/v1/packages")
        async def packages() -> dict[str, Any]:
            return {"items": list(self.packages.values()), "next_cursor": None}

        @app.get("/api/v1/jobconfigs")
        async def jobconfigs(
            name: str | None = None, cursor: str | None = None, limit: int = 50
        ) -> dict[str, Any]:
            items = sorted(self.jobconfigs.values(), key=lambda j: j["id"])
            if name is not None:
                items = [j for j in items if j["name"] == name]
            start = int(cursor or 0)
            page = items[start : start + limit]
            more = start + limit < len(items)
            return {"items": page, "next_cursor": str(start + limit) if more else None}

        def _validated(body: dict[str, Any]) -> dict[str, Any] | JSONResponse:
            unknown = set(body) - set(DEFAULTS) - {"name"}
            if unknown or not body.get("name"):
                return _error(422, "invalid_input", "bad jobconfig", fields=sorted(unknown))
            if body["name"] in self.refused_names:
                return _error(422, "invalid_input", "refused by the test", field="name")
            return {**DEFAULTS, **body}

        @app.post("/api/v1/jobconfigs", status_code=201, response_model=None)
        async def create(request: Request) -> dict[str, Any] | JSONResponse:
            spec = _validated(await request.json())
            if isinstance(spec, JSONResponse):
                return spec
            if any(j["name"] == spec["name"] for j in self.jobconfigs.values()):
                return _error(409, "conflict", f"jobconfig {spec['name']!r} exists")
            jobconfig_id = max(self.jobconfigs, default=0) + 1
            item = {"id": jobconfig_id, **spec, "created_at": _now(), "updated_at": _now()}
            self.jobconfigs[jobconfig_id] = item
            return item

        @app.get("/api/v1/jobconfigs/{jobconfig_id}", response_model=None)
        async def get(jobconfig_id: int) -> dict[str, Any] | JSONResponse:
            if jobconfig_id not in self.jobconfigs:
                return _error(404, "not_found", f"jobconfig {jobconfig_id} not found")
            return self.jobconfigs[jobconfig_id]

        @app.put("/api/v1/jobconfigs/{jobconfig_id}", response_model=None)
        async def replace(jobconfig_id: int, request: Request) -> dict[str, Any] | JSONResponse:
            if jobconfig_id not in self.jobconfigs:
                return _error(404, "not_found", f"jobconfig {jobconfig_id} not found")
            spec = _validated(await request.json())
            if isinstance(spec, JSONResponse):
                return spec
            self.jobconfigs[jobconfig_id].update(spec, updated_at=_now())
            return self.jobconfigs[jobconfig_id]

        @app.delete("/api/v1/jobconfigs/{jobconfig_id}", response_model=None)
        async def delete(jobconfig_id: int) -> Response:
            if self.jobconfigs.pop(jobconfig_id, None) is None:
                return _error(404, "not_found", f"jobconfig {jobconfig_id} not found")
            for schedule in self.schedules.of(jobconfig_id):
                del self.schedules.items[schedule["id"]]
            return Response(status_code=204)

        @app.post("/api/v1/jobconfigs/{jobconfig_id}/run", status_code=201, response_model=None)
        async def run(jobconfig_id: int, request: Request) -> dict[str, Any] | JSONResponse:
            if jobconfig_id not in self.jobconfigs:
                return _error(404, "not_found", f"jobconfig {jobconfig_id} not found")
            body = await request.json()
            return self._job(
                self.jobconfigs[jobconfig_id], body.get("macros") or {}, bool(body.get("hold"))
            )

        @app.get("/api/v1/jobs")
        async def jobs(request: Request) -> dict[str, Any]:
            statuses = request.query_params.getlist("status")
            jobconfig_id = request.query_params.get("jobconfig_id")
            items = sorted(self.jobs.values(), key=lambda j: -j["id"])
            if statuses:
                items = [j for j in items if j["status"] in statuses]
            if jobconfig_id:
                items = [j for j in items if j["jobconfig_id"] == int(jobconfig_id)]
            return {"items": items, "next_cursor": None}

        @app.get("/api/v1/jobs/{job_id}", response_model=None)
        async def job(job_id: int) -> dict[str, Any] | JSONResponse:
            if job_id not in self.jobs:
                return _error(404, "not_found", f"job {job_id} not found")
            return self.jobs[job_id]

        @app.post("/api/v1/jobs/{job_id}/cancel", response_model=None)
        async def cancel(job_id: int) -> dict[str, Any] | JSONResponse:
            job = self.jobs[job_id]
            if job["status"] not in ("WAITING", "SEQUENCED", "QUEUED"):
                return _error(
                    409, "conflict", f"job {job_id} is {job['status']}", status=job["status"]
                )
            job.update(status="CANCELLED", ended_at=_now(), status_reason="cancelled by user")
            return job

        @app.post("/api/v1/jobs/{job_id}/payload", status_code=201, response_model=None)
        async def payload(
            job_id: int, file: UploadFile = File(...), name: str | None = Form(None)
        ) -> dict[str, Any] | JSONResponse:
            if self.jobs[job_id]["status"] != "WAITING":
                return _error(409, "conflict", f"job {job_id} is not WAITING")
            data = await file.read()
            self.payloads.setdefault(job_id, {})[name or file.filename or "payload"] = data
            return {"name": name or file.filename, "size": len(data)}

        @app.post("/api/v1/jobs/{job_id}/release")
        async def release(job_id: int) -> dict[str, Any]:
            job = self.jobs[job_id]
            self.finish(job)
            return job

        @app.get("/api/v1/jobs/{job_id}/events")
        async def events(job_id: int) -> dict[str, Any]:
            job = self.jobs[job_id]
            return {
                "items": [
                    {
                        "status": job["status"],
                        "at": job["created_at"],
                        "actor": "user:admin",
                        "reason": None,
                    }
                ]
            }

        @app.get("/api/v1/jobs/{job_id}/outputs")
        async def outputs(job_id: int) -> dict[str, Any]:
            return {"items": [{"name": "out.txt", "size": 3, "created_at": _now()}]}

        @app.get("/api/v1/jobs/{job_id}/outputs/{name}", response_model=None)
        async def output(job_id: int, name: str) -> Response:
            return Response(b"abc", media_type="application/octet-stream")

        @app.get("/api/v1/jobs/{job_id}/log", response_model=None)
        async def log(job_id: int, offset: int = 0) -> Response:
            if job_id not in self.logs:
                return _error(404, "not_found", f"job {job_id} has no log")
            return PlainTextResponse(self.logs[job_id].encode()[offset:])

        return app
