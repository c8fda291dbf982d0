"""The schedule routes of the fake API (``/api/v1/jobconfigs/{id}/schedules``).

Bodies are checked by the real domain code (``core.schedules.validate``), so a bad
expression, zone or interval gets the same 422 message as from the real server.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from jobyard.core.errors import JobyardError
from jobyard.core.schedules import ScheduleSpec, parse_every, validate
from jobyard.core.zones import parse_zone
from jobyard.service.schedules import SPEC_FIELDS, first_fire

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _error(http_status: int, code: str, message: str, **details: Any) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": details}}
    return JSONResponse(body, status_code=http_status)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def _timing(body: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in body.items() if k != "every"}
    every = body.get("every")
    if isinstance(every, str):
        out["interval_minutes"] = parse_every(every)
    elif isinstance(every, dict):
        out["interval_minutes"] = every.get("hours", 0) * 60 + every.get("minutes", 0)
    if isinstance(out.get("start_at"), str):
        out["start_at"] = datetime.fromisoformat(out["start_at"])
    return out


class FakeSchedules:
    """Schedules kept in memory, keyed by id."""

    def __init__(self, jobconfigs: dict[int, dict[str, Any]]) -> None:
        self.jobconfigs = jobconfigs
        self.items: dict[int, dict[str, Any]] = {}
        self.specs: dict[int, ScheduleSpec] = {}

    def of(self, jobconfig_id: int) -> list[dict[str, Any]]:
        """The schedules of one jobconfig, by id."""
        return [s for s in self.items.values() if s["jobconfig_id"] == jobconfig_id]

    def _store(self, jobconfig_id: int, schedule_id: int, spec: ScheduleSpec) -> dict[str, Any]:
        spec = validate(spec, allow_seconds=False)
        if spec.interval_minutes is not None and spec.start_at is None:
            spec = replace(spec, start_at=NOW)
        taken = [
            s for s in self.of(jobconfig_id) if s["name"] == spec.name and s["id"] != schedule_id
        ]
        if taken:
            raise _Conflict(f"a schedule named {spec.name!r} exists")
        nxt = first_fire(spec, NOW)
        minutes = spec.interval_minutes
        old = self.items.get(schedule_id, {})
        item = {
            "id": schedule_id,
            "jobconfig_id": jobconfig_id,
            "name": spec.name,
            "kind": "cron" if spec.cron is not None else "interval",
            "cron": spec.cron,
            "every": {"hours": minutes // 60, "minutes": minutes % 60} if minutes else None,
            "interval_minutes": minutes,
            "start_at": _iso(spec.start_at),
            "timezone": spec.timezone,
            "misfire_policy": str(spec.misfire_policy),
            "paused": spec.paused,
            "macros": dict(spec.macros),
            "description": spec.description,
            "next_fire_at": _iso(nxt),
            "next_fire_at_local": nxt.astimezone(parse_zone(spec.timezone)).isoformat()
            if nxt
            else None,
            "last_fire_at": None,
            "last_result": None,
            "version": int(old.get("version", 0)) + 1,
            "created_at": old.get("created_at", _iso(NOW)),
            "updated_at": _iso(NOW),
        }
        self.items[schedule_id] = item
        self.specs[schedule_id] = spec
        return item

    def install(self, app: FastAPI) -> None:
        """Add the routes to the fake's app."""
        base = "/api/v1/jobconfigs/{jobconfig_id}/schedules"

        def guarded(
            jobconfig_id: int, schedule_id: int | None, work: Any
        ) -> dict[str, Any] | JSONResponse | Response:
            if jobconfig_id not in self.jobconfigs:
                return _error(404, "not_found", f"jobconfig {jobconfig_id} not found")
            if schedule_id is not None and (
                schedule_id not in self.items
                or self.items[schedule_id]["jobconfig_id"] != jobconfig_id
            ):
                return _error(404, "not_found", f"schedule {schedule_id} not found")
            try:
                result: dict[str, Any] | Response = work()
            except _Conflict as exc:
                return _error(409, "conflict", str(exc))
            except JobyardError as exc:
                return _error(422, exc.code, exc.message, **exc.details)
            return result

        @app.get(base, response_model=None)
        async def list_(jobconfig_id: int) -> dict[str, Any] | JSONResponse | Response:
            return guarded(jobconfig_id, None, lambda: {"items": self.of(jobconfig_id)})

        @app.post(base, status_code=201, response_model=None)
        async def create(
            jobconfig_id: int, request: Request
        ) -> dict[str, Any] | JSONResponse | Response:
            body = await request.json()
            new_id = max(self.items, default=0) + 1
            return guarded(
                jobconfig_id,
                None,
                lambda: self._store(jobconfig_id, new_id, ScheduleSpec(**_timing(body))),
            )

        @app.patch(base + "/{schedule_id}", response_model=None)
        async def patch(
            jobconfig_id: int, schedule_id: int, request: Request
        ) -> dict[str, Any] | JSONResponse | Response:
            body = await request.json()

            def work() -> dict[str, Any]:
                changes = _timing(body)
                merged = asdict(self.specs[schedule_id])
                if changes.get("cron") is not None and merged["cron"] is None:
                    merged.update(interval_minutes=None, start_at=None)
                if (
                    changes.get("interval_minutes") is not None
                    and merged["interval_minutes"] is None
                ):
                    merged.update(cron=None, start_at=None)
                merged.update({k: v for k, v in changes.items() if k in SPEC_FIELDS})
                return self._store(jobconfig_id, schedule_id, ScheduleSpec(**merged))

            return guarded(jobconfig_id, schedule_id, work)

        @app.delete(base + "/{schedule_id}", response_model=None)
        async def delete(jobconfig_id: int, schedule_id: int) -> Any:
            def work() -> Response:
                del self.items[schedule_id]
                return Response(status_code=204)

            return guarded(jobconfig_id, schedule_id, work)

        def toggle(jobconfig_id: int, schedule_id: int, paused: bool) -> Any:
            def work() -> dict[str, Any]:
                spec = replace(self.specs[schedule_id], paused=paused)
                return self._store(jobconfig_id, schedule_id, spec)

            return guarded(jobconfig_id, schedule_id, work)

        @app.post(base + "/{schedule_id}/pause", response_model=None)
        async def pause(jobconfig_id: int, schedule_id: int) -> Any:
            return toggle(jobconfig_id, schedule_id, True)

        @app.post(base + "/{schedule_id}/resume", response_model=None)
        async def resume(jobconfig_id: int, schedule_id: int) -> Any:
            return toggle(jobconfig_id, schedule_id, False)


class _Conflict(Exception):
    pass
