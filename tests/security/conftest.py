"""The attacker suites use the same real-server fixtures as the integration tests."""

from __future__ import annotations

from tests.integration.conftest import env, start_server

__all__ = ["env", "start_server"]
