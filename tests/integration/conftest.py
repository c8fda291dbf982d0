"""A real jobyard server (uvicorn + runtime + local workers) per test, on a free port."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from jobyard.api.app import create_app
from jobyard.runtime import Runtime
from jobyard.server import GracefulServer
from jobyard.settings import Settings

TERMINAL = {"FINISHED", "ERROR", "FAILED", "CANCELLED"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Env:
    """A running server and an authenticated client for it."""

    client: httpx.AsyncClient
    settings: Settings
    url: str
    token: str
    runtime: Runtime

    async def wait_status(
        self, job_id: int, statuses: set[str] | None = None, timeout: float = 20.0
    ) -> dict[str, Any]:
        """Poll a job until it reaches one of ``statuses`` (default: any end status)."""
        want = statuses or TERMINAL
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            job: dict[str, Any] = (await self.client.get(f"/api/v1/jobs/{job_id}")).json()
            if job["status"] in want:
                return job
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"job {job_id} stuck in {job['status']}: {job}")
            await asyncio.sleep(0.02)

    async def wait_log_line(self, job_id: int, prefix: str, timeout: float = 20.0) -> str:
        """Poll a job's log (through the API) until a line of its output starts with
        ``prefix``; return the rest of that line. Jobs run sandboxed: their log, outputs
        and the API are how a test hears from them (not files of the test's folders)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            r = await self.client.get(f"/api/v1/jobs/{job_id}/log")
            if r.status_code == 200:
                for line in r.text.splitlines():
                    parts = line.split(" ", 2)
                    if len(parts) == 3 and parts[2].startswith(prefix):
                        return parts[2][len(prefix) :]
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"job {job_id} never printed {prefix!r}: {r.text[-2000:]}")
            await asyncio.sleep(0.02)

    async def run_command(self, command: list[str], **extra: Any) -> dict[str, Any]:
        """Submit an ad-hoc job and return it."""
        r = await self.client.post("/api/v1/jobs", json={"command": command, **extra})
        assert r.status_code == 201, r.text
        return dict(r.json())


class _QuietServer(GracefulServer):
    """uvicorn without signal capture: the test process keeps its own handlers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


ServerFactory = Callable[..., Awaitable[Env]]


@pytest.fixture
async def start_server(tmp_path: Path) -> AsyncIterator[ServerFactory]:
    """Start servers on demand (several per test allowed); all stop at the end."""
    running: list[tuple[uvicorn.Server, asyncio.Task[None], httpx.AsyncClient]] = []

    async def start(*, token: str | None = None, **overrides: Any) -> Env:
        values: dict[str, Any] = {
            "home": tmp_path / f"home{len(running)}",
            "port": free_port(),
            "workers": 3,
            "abort_grace_seconds": 2.0,
            "heartbeat_seconds": 0.5,
            "maintenance_seconds": 0.5,
        }
        values.update(overrides)
        settings = Settings(**values)
        runtime = Runtime(settings)
        app = create_app(runtime)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=settings.port, log_level="warning", lifespan="on"
        )
        server = _QuietServer(config)
        task = asyncio.create_task(server.serve())
        deadline = asyncio.get_running_loop().time() + 20
        while not server.started:
            if task.done():
                task.result()
                raise AssertionError("server stopped during startup")
            assert asyncio.get_running_loop().time() < deadline, "server did not start"
            await asyncio.sleep(0.02)
        if token is None:
            token = (settings.home / "admin.token").read_text().strip()
        url = f"http://127.0.0.1:{settings.port}"
        client = httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        running.append((server, task, client))
        return Env(client=client, settings=settings, url=url, token=token, runtime=runtime)

    yield start
    for server, task, client in reversed(running):
        await client.aclose()
        server.should_exit = True
        await asyncio.wait_for(task, 30)


@pytest.fixture
async def env(start_server: ServerFactory) -> Env:
    """One server on embedded SQLite with 3 local slots."""
    return await start_server()
