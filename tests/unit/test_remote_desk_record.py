"""The macro record a remote worker carries from its claim to its RUNNING report.

A record with macros is sealed (encrypted and bound to its job); an empty one travels as
plain ``{}`` and is not encrypted or decrypted. Nothing else a worker sends is taken as a
record.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, cast

import pytest

from jobyard.core.claims import Claim
from jobyard.core.crypto import Keyrings, encode_key, new_key
from jobyard.core.macros import MacroSources, StoredMacro
from jobyard.engine.bus import Bus
from jobyard.engine.remote_desk import EMPTY_RECORD, RemoteDesk
from jobyard.settings import Settings
from jobyard.store.protocol import Store

sys.path.insert(0, str(Path(__file__).parent / "worker"))
from worker_fakes import make_job


def _desk(tmp_path: Path) -> RemoteDesk:
    settings = Settings(workers=0, home=tmp_path, secret_key=encode_key(new_key()))
    return RemoteDesk(settings, cast(Store, object()), cast(Bus, object()), Keyrings())


def _claim(job_id: int, account: list[StoredMacro]) -> Claim:
    job = make_job(job_id, jobconfig_id=None, submitted_by=None)
    sources = MacroSources(account, [], [], {}, [], None, None)
    return Claim(
        job=job, package=None, payload=[], sources=sources, submitter=None, token_hash=None
    )


def _plain(name: str, value: str) -> StoredMacro:
    return StoredMacro("account", 0, name, value, False, None, None)


async def test_an_empty_record_travels_plain_and_comes_back_empty(tmp_path: Path) -> None:
    desk = _desk(tmp_path)
    ready = await desk._assign("w", _claim(5, []), "")
    assert ready is not None
    assert ready.record == EMPTY_RECORD
    assert desk._unseal(5, ready.record) == {}


async def test_a_record_with_macros_is_sealed_to_its_job(tmp_path: Path) -> None:
    desk = _desk(tmp_path)
    ready = await desk._assign("w", _claim(6, [_plain("GREETING", "hello")]), "")
    assert ready is not None and ready.record is not None
    assert ready.record != EMPTY_RECORD and "hello" not in ready.record
    expected: dict[str, Any] = {"GREETING": {"level": "account", "secure": False, "value": "hello"}}
    assert desk._unseal(6, ready.record) == expected
    assert desk._unseal(7, ready.record) is None  # bound to job 6: refused for another


@pytest.mark.parametrize("sent", [None, "", "{ }", '{"X": 1}', "not-a-record"])
def test_anything_else_a_worker_sends_is_no_record(tmp_path: Path, sent: str | None) -> None:
    assert _desk(tmp_path)._unseal(8, sent) is None
