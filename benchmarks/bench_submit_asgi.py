"""The API application's CPU per call of the job path's routes, without HTTP or load.

A micro-benchmark of the ASGI application alone: the app of ``jobyard server`` (no
slots, its runtime started in this process: SQLite under a temporary home, or with
``--postgres`` a fresh database of a throwaway PostgreSQL cluster) is called directly,
one request at a time, for

* ``POST /api/v1/jobs`` (an ad-hoc ``["true"]`` job: authentication, body limit, the
  submit, the 201 answer; the job stays QUEUED: nothing runs here);
* ``POST /api/v1/worker/reports`` with an empty batch (a worker token: the worker
  routes' door and fast path with next to no store work);
* ``GET /healthz`` (the whole ASGI stack for an open route: what every other
  request pays).

Prints this process's CPU per call (all its threads: ``time.process_time``), the
best of ``--rounds`` rounds of ``--calls`` calls each. No socket, no uvicorn: compare
two trees' figures on one host (``PYTHONPATH=other/src``), alternated.

    .venv/bin/python benchmarks/bench_submit_asgi.py [--calls 2000] [--rounds 5] [--postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _common import BENCH_HOMES, ROOT

from jobyard.api.app import create_app
from jobyard.runtime import Runtime
from jobyard.settings import Settings


def _scope(method: str, path: str, token: str, body: bytes) -> dict[str, Any]:
    headers = [
        (b"host", b"127.0.0.1:8080"),
        (b"authorization", f"Bearer {token}".encode()),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8080),
        "state": {},
    }


async def _call(
    app: Any, scope: dict[str, Any], body: bytes, out: list[bytes] | None = None
) -> int:
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)  # a client that stays: never reached by these routes
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif out is not None:
            out.append(message.get("body", b""))

    await app(dict(scope, state={}), receive, send)
    return status


async def _measure(
    app: Any, scope: dict[str, Any], body: bytes, expect: int, calls: int, rounds: int
) -> float:
    for _ in range(50):  # warm-up: caches, prepared statements, lazily built routes
        status = await _call(app, scope, body)
        if status != expect:
            raise RuntimeError(f"{scope['method']} {scope['path']}: {status}, not {expect}")
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(calls):
            await _call(app, scope, body)
        best = min(best, (time.process_time() - start) / calls)
    return best


async def _main(args: argparse.Namespace, home: Path, database_url: str | None) -> None:
    values: dict[str, Any] = {"home": home, "workers": 0}
    if database_url:
        values["database_url"] = database_url
    runtime = Runtime(Settings(**values))
    app = create_app(runtime)
    await runtime.start()
    app.state.ctx = runtime.ctx
    try:
        admin = (home / "admin.token").read_text().strip()
        created: list[bytes] = []
        minted = json.dumps({"name": "bench"}).encode()
        await _call(app, _scope("POST", "/api/v1/worker-tokens", admin, minted), minted, created)
        worker = json.loads(b"".join(created))["token"]
        submit = json.dumps({"command": ["true"]}).encode()
        reports = json.dumps({"worker_id": "bench", "reports": []}).encode()
        cases = [
            ("POST /api/v1/jobs", _scope("POST", "/api/v1/jobs", admin, submit), submit, 201),
            (
                "POST /api/v1/worker/reports (empty)",
                _scope("POST", "/api/v1/worker/reports", worker, reports),
                reports,
                200,
            ),
            ("GET /healthz", _scope("GET", "/healthz", admin, b""), b"", 200),
        ]
        print(f"| call ({'PostgreSQL' if database_url else 'SQLite'}) | CPU us per call |")
        print("|---|---|")
        for name, scope, body, expect in cases:
            best = await _measure(app, scope, body, expect, args.calls, args.rounds)
            print(f"| {name} | {best * 1e6:.0f} |")
    finally:
        await runtime.stop()


@contextlib.contextmanager
def _database(postgres: bool) -> Iterator[str | None]:
    if not postgres:
        yield None
        return
    sys.path.insert(0, str(ROOT))
    from tests.support.pg import start_cluster

    pg = start_cluster()
    try:
        yield pg.url(pg.create_database())
    finally:
        pg.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    BENCH_HOMES.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="jy-", dir=BENCH_HOMES) as home,
        _database(args.postgres) as url,
    ):
        asyncio.run(_main(args, Path(home), url))


if __name__ == "__main__":
    main()
