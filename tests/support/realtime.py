"""Helpers of the real-time scheduling tests: minute arithmetic, polling, a small API client."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.support.server import RunningServer

MINUTE = timedelta(minutes=1)


# -- time ------------------------------------------------------------------------------


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: str | datetime) -> datetime:
    """An API timestamp (ISO text) or a database one, as an aware UTC datetime."""
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    assert when.tzinfo is not None, f"naive timestamp {value!r}"
    return when.astimezone(UTC)


def floor_minute(t: datetime) -> datetime:
    return t.replace(second=0, microsecond=0)


def minutes_between(first: datetime, last: datetime) -> list[datetime]:
    """Whole minutes ``first``, ``first + 1 min``, ... up to ``last`` (inclusive)."""
    out: list[datetime] = []
    t = first
    while t <= last:
        out.append(t)
        t += MINUTE
    return out


def sleep_until(when: datetime) -> None:
    while (left := (when - utcnow()).total_seconds()) > 0:
        time.sleep(min(left, 5.0))


def mid_minute(t: datetime, earliest: int = 10, latest: int = 30) -> datetime:
    """The first instant >= ``t`` whose second-of-minute is in [earliest, latest].

    Stops and restarts happen there, far from the fire times at second 0.
    """
    if t.second < earliest:
        return floor_minute(t) + timedelta(seconds=earliest)
    if t.second > latest:
        return floor_minute(t) + MINUTE + timedelta(seconds=earliest)
    return t


def poll(check: Callable[[], bool], timeout: float, interval: float = 0.5) -> bool:
    """Call ``check`` until it is true (True) or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    """Call ``check`` until it answers something true, and answer that; raise an
    ``AssertionError`` naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%H:%M:%SZ")


# -- API -------------------------------------------------------------------------------


class Api:
    """A small synchronous client of one server."""

    def __init__(self, server: RunningServer) -> None:
        self.client = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {server.token}"}, timeout=30
        )

    def close(self) -> None:
        self.client.close()

    def call(self, method: str, path: str, *, expect: int = 200, **kwargs: Any) -> Any:
        response = self.client.request(method, path, **kwargs)
        if response.status_code != expect:
            raise AssertionError(
                f"{method} {path} -> HTTP {response.status_code} (wanted {expect}): "
                f"{response.text[:2000]}"
            )
        return response.json()

    def jobs_of(self, jobconfig_id: int) -> list[dict[str, Any]]:
        """Every job of a jobconfig (all pages), oldest first."""
        items: list[dict[str, Any]] = []
        params: dict[str, Any] = {"jobconfig_id": jobconfig_id, "limit": 500}
        while True:
            page = self.call("GET", "/api/v1/jobs", params=params)
            items.extend(page["items"])
            if not page["next_cursor"]:
                return sorted(items, key=lambda j: j["id"])
            params["cursor"] = page["next_cursor"]

    def schedules_of(self, jobconfig_id: int) -> list[dict[str, Any]]:
        return list(self.call("GET", f"/api/v1/jobconfigs/{jobconfig_id}/schedules")["items"])


def log_tails(folder: Path, lines: int = 40) -> str:
    """The last lines of every server stderr log under ``folder``."""
    parts = []
    for path in sorted(folder.rglob("*.stderr.log")):
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
        parts.append(f"--- {path}\n" + "\n".join(text[-lines:]))
    return "\n".join(parts) or f"(no server logs under {folder})"
