from __future__ import annotations

from pathlib import Path

import pytest
from worker_fakes import RecordingBackend

from jobyard.worker.runner import RunnerOptions
from jobyard.worker.workspace import Workspace


@pytest.fixture
def backend(tmp_path: Path) -> RecordingBackend:
    return RecordingBackend(tmp_path / "control")


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path / "work", unpack_max_bytes=10 * 1024 * 1024, unpack_max_entries=100)


@pytest.fixture
def options() -> RunnerOptions:
    return RunnerOptions(abort_grace_seconds=5.0, pipe_close_timeout=2.0)
