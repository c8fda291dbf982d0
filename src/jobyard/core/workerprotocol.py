"""The number of the protocol remote workers and servers speak, and which ones a server
serves (see :mod:`jobyard.worker.wire` for what travels).

In ``core`` because both ends use it: the service layer refuses a worker outside the
range, ``jobyard worker`` sends its number. Raise ``PROTOCOL_VERSION`` when the worker
routes change in a way an older peer cannot follow; raise ``PROTOCOL_MIN`` only when the
server stops serving an older protocol.
"""

from __future__ import annotations

import os

#: The worker protocol this release speaks (worker side) and serves at most (server side).
PROTOCOL_VERSION = 1
#: The oldest worker protocol this release's server still serves.
PROTOCOL_MIN = 1
#: The protocol of a worker whose heartbeat names none: a release from before the
#: protocol was numbered, which spoke what is now protocol 1.
PROTOCOL_UNNUMBERED = 1
#: The error code of a heartbeat refused for its protocol (HTTP 409).
PROTOCOL_REFUSED = "worker_protocol_unsupported"
#: For tests only: the protocol number ``jobyard worker`` claims instead of its own, to
#: play an older or newer worker against a real server. Not a setting: never set it in
#: production (a worker claiming a protocol it does not speak would misread the server).
PROTOCOL_TEST_ENV = "JOBYARD_TEST_WORKER_PROTOCOL"


def claimed_protocol() -> int:
    """The protocol number this worker sends: :data:`PROTOCOL_VERSION`, unless a test
    overrides it through :data:`PROTOCOL_TEST_ENV`."""
    raw = os.environ.get(PROTOCOL_TEST_ENV, "").strip()
    if not raw:
        return PROTOCOL_VERSION
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"{PROTOCOL_TEST_ENV} must be an integer, not {raw!r}") from exc


def protocol_refusal(
    worker_protocol: int | None,
    worker_version: str,
    *,
    low: int = PROTOCOL_MIN,
    high: int = PROTOCOL_VERSION,
    server_version: str,
) -> str | None:
    """Why a server serving protocols ``low`` to ``high`` refuses a worker, saying what
    to upgrade; None when it serves it. ``worker_protocol`` None: an unnumbered worker
    (:data:`PROTOCOL_UNNUMBERED`)."""
    protocol = PROTOCOL_UNNUMBERED if worker_protocol is None else worker_protocol
    if low <= protocol <= high:
        return None
    served = f"protocol {low}" if low == high else f"protocols {low} to {high}"
    release = worker_version or "unknown"
    worker = f"this worker (jobyard {release}) speaks worker protocol {protocol}"
    server = f"the server (jobyard {server_version}) serves {served} only"
    if protocol < low:
        return (
            f"{worker} but {server}: the worker is too old; upgrade jobyard on the worker "
            f"host to {server_version} (the server's release) and restart the worker"
        )
    return (
        f"{worker} but {server}: the worker is newer than the servers; upgrade every "
        f"server to this worker's release first (servers before workers), or run a "
        f"worker of release {server_version}"
    )
