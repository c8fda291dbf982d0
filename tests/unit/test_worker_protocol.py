"""The worker protocol range check: which workers a server serves, and what the refusal
tells an operator to upgrade."""

from __future__ import annotations

import pytest

from jobyard.core import workerprotocol as wire
from jobyard.core.workerprotocol import protocol_refusal


def test_a_worker_inside_the_range_is_served() -> None:
    for protocol in (2, 3, 4):
        assert protocol_refusal(protocol, "1.0", low=2, high=4, server_version="1.2") is None


def test_an_unnumbered_worker_is_the_first_protocol() -> None:
    assert protocol_refusal(None, "0.0.9", low=1, high=3, server_version="1.0") is None
    refused = protocol_refusal(None, "0.0.9", low=2, high=3, server_version="2.0")
    assert refused is not None and "speaks worker protocol 1 but" in refused


def test_an_older_worker_is_told_to_upgrade_itself() -> None:
    refused = protocol_refusal(1, "1.0 (CPython)", low=2, high=4, server_version="1.4")
    assert refused is not None
    assert "jobyard 1.0 (CPython)" in refused and "protocol 1" in refused
    assert "protocols 2 to 4" in refused
    assert "the worker is too old" in refused
    assert "upgrade jobyard on the worker host to 1.4" in refused


def test_a_newer_worker_is_told_to_upgrade_the_servers_first() -> None:
    refused = protocol_refusal(5, "2.0", low=2, high=4, server_version="1.4")
    assert refused is not None
    assert "the server (jobyard 1.4) serves protocols 2 to 4 only" in refused
    assert "the worker is newer than the servers" in refused
    assert "upgrade every server" in refused and "servers before workers" in refused


def test_this_release_serves_its_own_protocol_and_the_unnumbered_one() -> None:
    assert wire.PROTOCOL_MIN <= wire.PROTOCOL_UNNUMBERED <= wire.PROTOCOL_VERSION
    assert protocol_refusal(wire.PROTOCOL_VERSION, "x", server_version="1.0") is None
    assert protocol_refusal(None, "x", server_version="1.0") is None
    assert protocol_refusal(wire.PROTOCOL_MIN - 1, "x", server_version="1.0") is not None
    assert protocol_refusal(wire.PROTOCOL_VERSION + 1, "x", server_version="1.0") is not None


def test_the_claimed_protocol_is_overridden_only_by_the_test_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(wire.PROTOCOL_TEST_ENV, raising=False)
    assert wire.claimed_protocol() == wire.PROTOCOL_VERSION
    monkeypatch.setenv(wire.PROTOCOL_TEST_ENV, "7")
    assert wire.claimed_protocol() == 7
    monkeypatch.setenv(wire.PROTOCOL_TEST_ENV, "seven")
    with pytest.raises(ValueError, match="must be an integer"):
        wire.claimed_protocol()
