"""The server side of remote workers: claims and reports made over HTTP.

One :class:`RemoteDesk` per server process (in the use-case context), owning a
:class:`~jobyard.engine.reporter.Reporter`: the claims and reports of every remote worker
calling this process are written in batches, like those of local slots. Nothing a later
call needs lives here: a remote worker may send each call to another replica.

The macro record of a claimed job (``RunningReport.resolved``) is not kept in memory
until the worker reports RUNNING: it travels with the assignment, encrypted and
authenticated with the server's secret keyring (shared by every replica, which must
decrypt secure macros anyway), and comes back with the RUNNING report. A worker can
neither read it nor forge one; a record that does not decrypt is dropped (the job keeps
what is stored).

An empty record (no macro at any level: most ad-hoc jobs) travels as the plain text
:data:`EMPTY_RECORD`, neither encrypted nor decrypted. Forging it gains a worker nothing
it cannot do already: dropping the record (sending none) also leaves the job without
its macro record.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jobyard.core.claims import (
    Claim,
    ClaimRequest,
    EndReport,
    ReportOutcome,
    RidingClaim,
    RunningReport,
)
from jobyard.core.crypto import Keyring, Keyrings, SecretError
from jobyard.core.errors import JobyardError
from jobyard.core.jobs import JobStatus
from jobyard.core.tokens import SESSION_TOKEN_PREFIX, hash_token
from jobyard.engine.bus import Bus
from jobyard.engine.local_backend import _claimed_assignment
from jobyard.engine.reporter import Reporter
from jobyard.settings import Settings
from jobyard.store.protocol import Store
from jobyard.worker.wire import RemoteAssignment, assignment_to_json

#: Long-polls re-check the queue at least this often (a submit on another replica may
#: wake no one here until cross-replica wake-ups exist).
RECHECK_SECONDS = 5.0
#: Most jobs one acquisition may claim.
MAX_CLAIM = 64
#: The macro record of a job with no macro, sent as is (see the module docstring).
EMPTY_RECORD = "{}"


@dataclass(slots=True, eq=False)
class _Seat:
    """A long-poll waiting for work, offered to the next submissions (``ride_submits``)."""

    worker_id: str
    request: ClaimRequest
    by_hash: dict[str, str]
    #: Whether the caller is still connected, told at once.
    present: Callable[[], bool]
    #: Set when a batch of submissions took this seat's claim.
    taken: asyncio.Future[list[Claim] | None] | None = None


def _aad(job_id: int) -> bytes:
    return f"jobyard:remote-record:{job_id}".encode()


class RemoteDesk:
    """Claims, reports and long-polls of the remote workers calling this server."""

    def __init__(self, settings: Settings, store: Store, bus: Bus, keyrings: Keyrings) -> None:
        """Built once per server process; ``keyrings`` is the server's (shared)."""
        self._settings = settings
        self._store = store
        self._bus = bus
        self._keyrings = keyrings
        self._reporter = Reporter(store, patience=settings.db_retry_seconds)
        #: Long-polls waiting for work, oldest first (see :meth:`_ride`). The store asks
        #: for a riding claim only while there is one.
        self._seats: list[_Seat] = []

    def _keyring(self) -> Keyring:
        return self._keyrings.get(self._settings.home, self._settings.secret_key)

    async def acquire(
        self,
        *,
        worker_id: str,
        pool: str,
        labels: Mapping[str, str],
        free: int,
        wait_seconds: float,
        gone: Callable[[], Awaitable[bool]],
        reports: Sequence[RunningReport | EndReport] = (),
        present: Callable[[], bool] | None = None,
    ) -> tuple[list[dict[str, Any]], list[ReportOutcome]]:
        """Claim up to ``free`` queued jobs of ``pool``; none queued: wait for a submit up
        to ``wait_seconds`` and claim then. ``gone`` tells whether the caller hung up: a
        caller that left claims nothing (its jobs would wait for their lease).

        ``present``, when the caller can tell at once whether it is still connected:
        while it waits, the next submissions of this server may claim for it in their
        own transaction (see ``Store.ride_submits``), if it is still there then.

        ``reports`` (the caller's RUNNING and end reports) are written first, in the
        claim's transaction (jobs their ends promote can be claimed at once); a call
        carrying reports never waits: the caller wants their outcomes, so none queued
        answers at once.

        The assignments, as JSON objects (see :mod:`jobyard.worker.wire`), and the
        outcomes of ``reports`` in their order."""
        free = max(0, min(free, MAX_CLAIM))
        carried = list(reports)
        if carried:
            if free == 0 or await gone():
                waiting = self._queue_all(worker_id, carried)
                return [], await self._reported(carried, waiting)
            waiting = self._queue_all(worker_id, carried)  # no await before the claim's
            found = await self._claim(worker_id, pool, labels, free, fresh=False)
            outcomes = await self._reported(carried, waiting)
            return [assignment_to_json(a) for a in found], outcomes
        if free == 0:
            return [], []
        deadline = time.monotonic() + max(wait_seconds, 0.0)
        fresh = False
        while True:
            if await gone():
                return [], []
            request, by_hash = self._request(pool, labels, free, fresh=fresh)
            found = await self._claimed(worker_id, request, by_hash)
            left = deadline - time.monotonic()
            if found or left <= 0:
                return [assignment_to_json(a) for a in found], []
            seat = None if present is None else self._sit(worker_id, request, by_hash, present)
            try:
                fresh = await self._bus.wait_for_work(min(left, RECHECK_SECONDS))
            finally:
                if seat is not None and seat.taken is None:
                    self._stand(seat)
            if seat is not None and seat.taken is not None:
                claims = await asyncio.shield(seat.taken)
                if claims:
                    ready = await self._assigned(worker_id, claims, by_hash)
                    if ready:
                        return [assignment_to_json(a) for a in ready], []
                fresh = True  # a job was submitted: look straight away

    def _sit(
        self,
        worker_id: str,
        request: ClaimRequest,
        by_hash: dict[str, str],
        present: Callable[[], bool],
    ) -> _Seat:
        """Offer a waiting long-poll's claim (a claim that found nothing, its session
        tokens unused) to the next submissions."""
        if not self._seats:
            self._store.ride_submits(self._ride)
        seat = _Seat(worker_id, request, by_hash, present)
        self._seats.append(seat)
        return seat

    def _stand(self, seat: _Seat) -> None:
        """Withdraw ``seat`` (the last one gone: submissions stop asking)."""
        self._seats.remove(seat)
        if not self._seats:
            self._store.ride_submits(None)

    def _ride(self, pools: frozenset[str] | None) -> RidingClaim | None:
        """The claim for a batch of submissions of ``pools`` (None: not all known): the
        longest-waiting long-poll of one of them whose caller is still there."""
        for seat in self._seats:
            if pools is not None and seat.request.pool not in pools:
                continue
            if not seat.present():
                continue
            self._stand(seat)
            seat.taken = asyncio.get_running_loop().create_future()
            return RidingClaim(seat.worker_id, seat.request, seat.taken)
        return None

    def _queue_all(
        self, worker_id: str, reports: list[RunningReport | EndReport]
    ) -> list[asyncio.Future[ReportOutcome]]:
        return [self._reporter.queue(worker_id, report) for report in reports]

    async def _reported(
        self, reports: list[RunningReport | EndReport], waiting: list[asyncio.Future[ReportOutcome]]
    ) -> list[ReportOutcome]:
        """The outcomes of queued reports; each end wakes as :meth:`end` does."""
        outcomes = [await asyncio.shield(answer) for answer in waiting]
        for report in reports:
            if isinstance(report, EndReport):
                self._bus.job_changed(report.job_id)
        if any(isinstance(report, EndReport) for report in reports):
            self._bus.work_available()
        return outcomes

    async def _claim(
        self, worker_id: str, pool: str, labels: Mapping[str, str], limit: int, *, fresh: bool
    ) -> list[RemoteAssignment]:
        request, by_hash = self._request(pool, labels, limit, fresh=fresh)
        return await self._claimed(worker_id, request, by_hash)

    def _request(
        self, pool: str, labels: Mapping[str, str], limit: int, *, fresh: bool
    ) -> tuple[ClaimRequest, dict[str, str]]:
        """A claim of up to ``limit`` jobs with a session token minted for each (by hash).

        ``fresh``: woken by a submit just made; the claim goes straight to the write,
        on the event loop's thread (the server is most likely idle, see ``on_loop``)."""
        values = [SESSION_TOKEN_PREFIX + secrets.token_urlsafe(32) for _ in range(limit)]
        by_hash = {hash_token(value): value for value in values}
        request = ClaimRequest(
            pool=pool,
            limit=limit,
            lease_seconds=self._settings.lease_seconds,
            token_hashes=list(by_hash),
            look_first=not fresh,
            on_loop=fresh,
            labels=labels,
        )
        return request, by_hash

    async def _claimed(
        self, worker_id: str, request: ClaimRequest, by_hash: dict[str, str]
    ) -> list[RemoteAssignment]:
        claims = await self._reporter.claim(worker_id, request)
        return await self._assigned(worker_id, claims, by_hash)

    async def _assigned(
        self, worker_id: str, claims: list[Claim], by_hash: dict[str, str]
    ) -> list[RemoteAssignment]:
        out: list[RemoteAssignment] = []
        for claim in claims:
            token = by_hash[claim.token_hash] if claim.token_hash is not None else ""
            ready = await self._assign(worker_id, claim, token)
            if ready is not None:
                out.append(ready)
        return out

    async def _assign(self, worker_id: str, claim: Claim, token: str) -> RemoteAssignment | None:
        """The assignment of a claim; a job that cannot run ends FAILED here (None)."""
        try:
            assignment, record = _claimed_assignment(claim, token, self._keyring)
        except (JobyardError, SecretError) as exc:
            message = exc.message if isinstance(exc, JobyardError) else str(exc)
            await self.end(
                worker_id,
                EndReport(
                    job_id=claim.job.id,
                    status=JobStatus.FAILED,
                    exit_code=None,
                    reason=f"initialization failed: {message}",
                    actor=f"worker:{worker_id}",
                ),
            )
            return None
        if not record:
            return RemoteAssignment(assignment=assignment, record=EMPTY_RECORD)
        try:
            sealed: str | None = self._keyring().encrypt(json.dumps(record), _aad(claim.job.id))
        except SecretError:  # no key to seal with: the job keeps the record it has
            sealed = None
        return RemoteAssignment(assignment=assignment, record=sealed)

    def _unseal(self, job_id: int, sealed: str | None) -> dict[str, Any] | None:
        if not sealed:
            return None
        if sealed == EMPTY_RECORD:
            return {}
        try:
            record = json.loads(self._keyring().decrypt(sealed, _aad(job_id)))
        except (SecretError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def running_report(
        self, job_id: int, *, pid: int | None, started_at: datetime, record: str | None
    ) -> RunningReport:
        """A RUNNING report, with the macro record sealed in the assignment."""
        return RunningReport(
            job_id=job_id, pid=pid, started_at=started_at, resolved=self._unseal(job_id, record)
        )

    async def running(
        self,
        worker_id: str,
        job_id: int,
        *,
        pid: int | None,
        started_at: datetime,
        record: str | None,
    ) -> ReportOutcome:
        """INITIALIZING -> RUNNING, with the macro record sealed in the assignment."""
        report = self.running_report(job_id, pid=pid, started_at=started_at, record=record)
        return await self._reporter.report(worker_id, report)

    async def end(self, worker_id: str, report: EndReport) -> ReportOutcome:
        """Record an end status (guarded by holder and status, see the reporter); wakes
        followers of the job and idle workers (promotion may have queued more work)."""
        outcome = await self._reporter.report(worker_id, report)
        self._bus.job_changed(report.job_id)
        self._bus.work_available()
        return outcome
