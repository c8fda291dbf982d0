"""``jobyard stats [CONFIG]`` as a subprocess against a real ``jobyard up``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from tests.support.cli import as_json, ok, run_cli
from tests.support.server import RunningServer, server_fixture

server = server_fixture(
    scope="module",
    workers=1,
    env={"JOBYARD_STATS__FOLD_LAG_SECONDS": "0", "JOBYARD_MAINTENANCE_SECONDS": "0.3"},
)


def _stats_json(args: list[str], env: dict[str, str], cwd: Path, total: int) -> Any:
    deadline = time.monotonic() + 30
    while True:
        answer = as_json(run_cli(["stats", *args, "--output", "json"], env, cwd))
        if answer["overall"]["total"] >= total:
            return answer
        assert time.monotonic() < deadline, answer["overall"]
        time.sleep(0.2)


def test_stats_table_sparkline_and_json(server: RunningServer, tmp_path: Path) -> None:
    env = server.client_env()
    headers = {"Authorization": f"Bearer {server.token}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as api:
        for name, code in (("nightly", 0), ("flaky", 1)):
            r = api.post(
                "/api/v1/jobconfigs",
                json={"name": name, "command": ["/bin/sh", "-c", f"exit {code}"]},
            )
            assert r.status_code == 201, r.text
    for name in ("nightly", "nightly", "flaky"):
        run_cli(["run", name, "--follow"], env, tmp_path)

    answer = _stats_json([], env, tmp_path, 3)
    assert answer["overall"]["counts"]["FINISHED"] == 2
    assert answer["overall"]["counts"]["ERROR"] == 1
    one = _stats_json(["flaky", "--bucket", "day"], env, tmp_path, 1)
    assert [j["name"] for j in one["jobconfigs"]] == ["flaky"]
    assert one["bucket"] == "day"

    wide = env  # piped output is as wide as its longest row
    table = ok(run_cli(["stats"], wide, tmp_path)).stdout
    assert "nightly" in table and "flaky" in table and "total" in table
    assert any(bar in table for bar in "▁▂▃▄▅▆▇█"), table

    missing = run_cli(["stats", "no-such-config"], env, tmp_path)
    assert missing.returncode != 0
    assert "no jobconfig named" in missing.stderr
