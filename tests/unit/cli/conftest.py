"""Fixtures of the CLI unit tests: a fake API behind the CLI, and a CliRunner."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from jobyard.cli.context import CliState
from jobyard.cli.main import app
from jobyard.client import ApiClient
from tests.unit.cli.fakeapi import TOKEN, FakeApi

Invoke = Callable[..., Result]


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No JOBYARD_* of the developer's shell; home in a temporary folder."""
    for key in list(os.environ):
        if key.startswith("JOBYARD_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("JOBYARD_HOME", str(tmp_path / "home"))
    yield


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeApi:
    """A fake API that every CLI command of the test talks to."""
    api = FakeApi()

    def client(self: CliState) -> ApiClient:
        return api.client(self.server, self.token)

    monkeypatch.setattr(CliState, "client", client)
    return api


@pytest.fixture
def invoke() -> Invoke:
    """``invoke("jobs", "list")`` runs the CLI in-process with the fake's token."""
    runner = CliRunner()

    def run(*args: str, token: str | None = TOKEN) -> Result:
        env = {"JOBYARD_TOKEN": token} if token is not None else {}
        return runner.invoke(app, list(args), env=env, prog_name="jobyard")

    return run
