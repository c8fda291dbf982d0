"""A worker the server stops serving at a later heartbeat (its server was upgraded under
it) notes why and drains, so ``jobyard worker`` exits non-zero instead of heartbeating in
vain: the worker's HTTP backend against a real server, its protocol changed mid-run."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobyard.core.workerprotocol import PROTOCOL_REFUSED, PROTOCOL_VERSION
from jobyard.worker.http_backend import HttpBackend, ServerRefused
from tests.integration.conftest import Env


async def test_a_later_refusal_is_noted_and_drains_the_worker(env: Env, tmp_path: Path) -> None:
    r = await env.client.post("/api/v1/worker-tokens", json={"name": "upgraded-under-it"})
    assert r.status_code == 201, r.text
    backend = HttpBackend(
        env.url,
        str(r.json()["token"]),
        pool="default",
        slots=1,
        state_dir=tmp_path / "state",
        cache_dir=tmp_path / "cache",
    )
    drains: list[str] = []
    backend.on_drain = lambda: drains.append("drain")
    try:
        assert await backend.heartbeat(worker_id="w-1", running=0, draining=False) is False
        assert backend.refused is None and drains == []
        backend.protocol = PROTOCOL_VERSION + 1  # as if the server no longer served it
        with pytest.raises(ServerRefused) as refused:
            await backend.heartbeat(worker_id="w-1", running=1, draining=False)
        assert refused.value.status == 409 and refused.value.code == PROTOCOL_REFUSED
        assert backend.refused is not None and "upgrade every server" in backend.refused
        assert drains == ["drain"]
        with pytest.raises(ServerRefused):  # refused again: drained once, not again
            await backend.heartbeat(worker_id="w-1", running=1, draining=True)
        assert drains == ["drain"]
    finally:
        await backend.close()
