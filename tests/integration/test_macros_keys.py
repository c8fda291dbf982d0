"""``jobyard keys rotate``: a new current key, values re-encrypted, jobs still get them."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
from pathlib import Path

from jobyard.core.crypto import KEY_FILE, Keyring, associated_data, ensure_key_file
from jobyard.store.factory import open_store
from tests.integration.conftest import ServerFactory
from tests.support.server import clean_env, jobyard_command

VALUE = "RotateMe-31415"


async def test_rotate_then_run(tmp_path: Path, start_server: ServerFactory) -> None:
    home = tmp_path / "home"
    url = f"sqlite:///{home / 'jobyard.db'}"
    home.mkdir()
    ensure_key_file(home)
    old = Keyring.load(home)
    store = await open_store(url, migrate=True)
    try:
        aad = associated_data("account", 0, "S")
        await store.macros_put(
            "account", 0, [("S", old.encrypt(VALUE, aad), True, False)], updated_by=None
        )
    finally:
        await store.close()

    result = await asyncio.to_thread(
        subprocess.run,
        [*jobyard_command(), "keys", "rotate"],
        env=clean_env({"JOBYARD_HOME": str(home)}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "1 secure value(s) re-encrypted" in result.stdout and VALUE not in result.stdout
    new = Keyring.load(home)
    assert new.current_id != old.current_id
    assert (home / f"{KEY_FILE}.{old.current_id}").exists()
    assert stat.S_IMODE(os.stat(home / KEY_FILE).st_mode) == 0o600
    store = await open_store(url, migrate=False)
    try:
        (row,) = await store.macros_list("account", 0)
    finally:
        await store.close()
    assert Keyring.key_id_of(row.value) == new.current_id

    env = await start_server(home=home)
    job = await env.run_command(["sh", "-c", 'echo "$S" | rev'])
    job = await env.wait_status(job["id"])
    log = (await env.client.get(f"/api/v1/jobs/{job['id']}/log")).text
    assert VALUE[::-1] in log, log


def test_rotate_refuses_an_environment_key(tmp_path: Path) -> None:
    result = subprocess.run(
        [*jobyard_command(), "keys", "rotate"],
        env=clean_env({"JOBYARD_HOME": str(tmp_path), "JOBYARD_SECRET_KEY": "A" * 43 + "="}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 5 and "keys reencrypt" in result.stderr
