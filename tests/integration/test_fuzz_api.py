"""Property-based fuzzing of the whole REST API with schemathesis, against a real server.

Every operation of the OpenAPI document gets generated requests, valid and invalid
(positive and negative data, plus schemathesis' boundary "coverage" cases), sent with the
admin token and then again without one. Whatever is sent:

* the server never answers 5xx;
* every 4xx has the one error shape ``{"error": {"code", "message", "details"}}``;
* without a token nothing but the open routes succeeds, and a request that succeeds with
  the token fails with 401 without it.

The server is the real app on uvicorn (lifespan, store, maintenance) with **no local
workers**: fuzzed ``POST /jobs`` and ``/run`` submit jobs with random commands, and those
must never run. They simply stay queued. A few objects are created first (ids 1, 2...)
so generated ids hit real rows.

Generation is derandomized (fixed seed, no example database) so a CI run is
reproducible; ``MAX_EXAMPLES`` per operation keeps the module to well under a minute.
"""

from __future__ import annotations

import contextlib
import io
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings
from schemathesis import Case, GenerationMode
from schemathesis.checks import CheckContext, not_a_server_error
from schemathesis.core.failures import Failure

from jobyard.api.app import create_app
from jobyard.runtime import Runtime
from jobyard.settings import Settings
from tests.support.server import free_port

#: Not under pytest-xdist: schemathesis collects one test per operation only in a plain
#: pytest process (make test runs ``beside`` tests in one).
pytestmark = pytest.mark.beside

MAX_EXAMPLES = 25
SEED = 20_251_130
REQUEST_TIMEOUT = 30
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/api/v1/openapi.json"})

MANIFEST = """
[entrypoints.main]
command = ["sh", "main.sh"]
"""


def _load_schema() -> Any:
    """The API's OpenAPI document, built from the app without starting it (no side effect).

    (``schemathesis.pytest.from_fixture`` would let the running server serve it, but
    schemathesis 4.32 reads a private pytest attribute that pytest 9 removed.)
    """
    document = create_app(Runtime(Settings(workers=0))).openapi()
    loaded = schemathesis.openapi.from_dict(document)
    loaded.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        max_examples=MAX_EXAMPLES,
        deterministic=True,
        database="none",
    )
    loaded.config.seed = SEED
    return loaded


schema = _load_schema()


class _ThreadServer(uvicorn.Server):
    """uvicorn in a thread: no signal handlers of its own."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _seed(url: str, token: str) -> None:
    """A package, two jobconfigs, and jobs WAITING, QUEUED and CANCELLED (ids from 1)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("jobyard.toml", MANIFEST)
        zf.writestr("main.sh", "echo never runs\n")
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=REQUEST_TIMEOUT) as c:

        def ok(r: httpx.Response) -> dict[str, Any]:
            assert r.status_code in (200, 201), r.text
            return dict(r.json())

        package = ok(c.post("/api/v1/packages", files={"file": ("p.zip", buf.getvalue())}))
        plain = ok(c.post("/api/v1/jobconfigs", json={"name": "plain", "command": ["true"]}))
        ok(
            c.post(
                "/api/v1/jobconfigs",
                json={"name": "packaged", "package_id": package["id"], "entrypoint": "main"},
            )
        )
        held = ok(c.post(f"/api/v1/jobconfigs/{plain['id']}/run", json={"hold": True}))
        ok(c.post(f"/api/v1/jobs/{held['id']}/payload", files={"file": ("in.csv", b"a,b\n")}))
        ok(c.post(f"/api/v1/jobconfigs/{plain['id']}/run"))
        cancelled = ok(c.post("/api/v1/jobs", json={"command": ["true"], "hold": True}))
        ok(c.post(f"/api/v1/jobs/{cancelled['id']}/cancel"))


@contextlib.contextmanager
def _running_server(home: Path) -> Iterator[tuple[str, str]]:
    """A real server with no workers on ``home``, seeded; yields ``(base_url, token)``."""
    settings_ = Settings(home=home, port=free_port(), workers=0, maintenance_seconds=0.5)
    server = _ThreadServer(
        uvicorn.Config(
            create_app(Runtime(settings_)),
            host="127.0.0.1",
            port=settings_.port,
            log_level="critical",
        )
    )
    thread = threading.Thread(target=server.run, name="fuzz-server", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            assert thread.is_alive(), "the server stopped during startup"
            assert time.monotonic() < deadline, "the server did not start in 60 s"
            time.sleep(0.02)
        url = f"http://127.0.0.1:{settings_.port}"
        token = (home / "admin.token").read_text().strip()
        _seed(url, token)
        yield url, token
    finally:
        server.should_exit = True
        thread.join(60)
        assert not thread.is_alive(), "the server did not stop"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """One server for every per-operation test of the module."""
    with _running_server(tmp_path_factory.mktemp("fuzz-home")) as found:
        yield found


def error_body_shape(ctx: CheckContext, response: Any, case: Case) -> bool | None:
    """Every 4xx answer is ``{"error": {"code": str, "message": str, "details": dict}}``."""
    if not 400 <= response.status_code < 500:
        return None
    try:
        body = response.json()
    except ValueError:
        raise Failure(
            operation=case.operation.label,
            title="4xx answer is not JSON",
            message=f"{response.status_code}: {response.content[:300]!r}",
        ) from None
    error = body.get("error") if isinstance(body, dict) else None
    if not (
        isinstance(body, dict)
        and set(body) == {"error"}
        and isinstance(error, dict)
        and isinstance(error.get("code"), str)
        and isinstance(error.get("message"), str)
        and error["message"]
        and isinstance(error.get("details"), dict)
    ):
        raise Failure(
            operation=case.operation.label,
            title="4xx answer without the error shape",
            message=f"{response.status_code}: {body!r}"[:500],
        )
    return True


CHECKS = [not_a_server_error, error_body_shape]


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_fuzz_api(case: Case, api: tuple[str, str]) -> None:
    """Authenticated: no 5xx, error bodies well formed. Then the same request anonymous."""
    url, token = api
    authed = case.call_and_validate(
        base_url=url,
        headers={"Authorization": f"Bearer {token}"},
        checks=CHECKS,
        timeout=REQUEST_TIMEOUT,
    )
    anonymous = case.call(base_url=url, timeout=REQUEST_TIMEOUT)
    case.validate_response(anonymous, checks=CHECKS)
    if case.path in OPEN_PATHS:
        return
    # Without a token nothing succeeds; a request that succeeds with one fails on auth.
    assert anonymous.status_code >= 400, (case.method, case.path, anonymous.status_code)
    if authed.status_code < 300:
        assert anonymous.status_code == 401, (case.method, case.path, anonymous.status_code)
