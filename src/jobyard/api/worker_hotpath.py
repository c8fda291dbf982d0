"""The two worker routes of the job path, answered without FastAPI's per-request work.

A remote worker calls ``POST /api/v1/worker/acquire`` and ``POST /api/v1/worker/reports``
for every few jobs it runs; through FastAPI's routing, dependency resolution and
response-model validation each call cost the API process several times what the claim
or the report itself costs. Like :func:`jobyard.api.hotpath.answer_submit` for submits,
:func:`answer_worker`, called by the application's door (:mod:`jobyard.api.door`) after
authentication and the body limit with the body it read, answers a well-formed call of
either route itself: the same worker-token check, request models, service call and
answer as the routes in :mod:`jobyard.api.routes.worker`.

Anything it is not sure of goes on to FastAPI's routing unchanged, with the body
replayed: a caller without a worker token (FastAPI's 403), another content type, a body
that is not JSON or does not validate (FastAPI's 422). The routes stay registered: they
document the API and answer whatever this passes on.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

import anyio
from pydantic import BaseModel
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobyard.api.errors import domain_response
from jobyard.api.hotpath import door_principal, parse_body, replay
from jobyard.api.routes.worker import AcquireIn, BatchedIn, ReportsIn
from jobyard.core import wirejson
from jobyard.core.errors import JobyardError
from jobyard.core.tokens import WorkerToken
from jobyard.service import remote_workers
from jobyard.service.context import Context
from jobyard.service.worker_tokens import WORKER_TOKEN_KIND

ACQUIRE = "/api/v1/worker/acquire"
REPORTS = "/api/v1/worker/reports"


async def answer_worker(
    scope: Scope, body: bytes, receive: Receive, send: Send, fallback: ASGIApp
) -> None:
    """Answer a ``POST`` of a worker route whose caller is authenticated and whose
    ``body`` was read within its limit; anything not sure goes to ``fallback`` (FastAPI's
    routing) with the body replayed."""
    principal = door_principal(scope)
    token = scope["state"].get("worker_token") if principal is not None else None
    if (
        principal is None
        or principal.token_kind != WORKER_TOKEN_KIND
        or not isinstance(token, WorkerToken)
    ):
        await fallback(scope, replay(body, receive), send)
        return
    acquire = scope["path"] == ACQUIRE
    model: BaseModel | None = (
        parse_body(body, AcquireIn) if acquire else parse_body(body, ReportsIn)
    )
    if model is None:  # FastAPI answers it (and every error of its kind)
        await fallback(scope, replay(body, receive), send)
        return
    ctx: Context = scope["app"].state.ctx
    try:
        if isinstance(model, AcquireIn):
            answer = await _acquire(ctx, token, model, receive)
        elif isinstance(model, ReportsIn):
            answer = await _reports(ctx, model)
        else:  # pragma: no cover - parse_body answers one of the two
            raise RuntimeError(f"unexpected body {type(model).__name__}")
    except JobyardError as exc:
        await domain_response(exc)(scope, receive, send)
        return
    await Response(json_bytes(answer), media_type="application/json")(scope, receive, send)


#: A worker route's answer as compact JSON (see :mod:`jobyard.core.wirejson`).
json_bytes = wirejson.dumps


async def _acquire(
    ctx: Context, token: WorkerToken, body: AcquireIn, receive: Receive
) -> dict[str, Any]:
    hangup = _Hangup(receive)
    found = await remote_workers.acquire(
        ctx,
        token,
        worker_id=body.worker_id,
        pool=body.pool,
        labels=body.labels,
        free=body.free,
        wait_seconds=body.wait_seconds,
        gone=hangup.gone,
        reports=[_batched(r) for r in body.reports],
        present=hangup.present,
    )
    return remote_workers.acquired_json(found)


class _Hangup:
    """Whether the caller of a long-poll hung up: the request's next message, if it is
    already there (an ``http.disconnect``), never waited for."""

    __slots__ = ("_disconnected", "_receive", "_sync")

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._disconnected = False
        #: ``receive()`` gives coroutines (uvicorn): then :meth:`present` can tell.
        self._sync = False

    async def gone(self) -> bool:
        """True once the caller hung up."""
        if not self._disconnected:
            pending = self._receive()
            if isinstance(pending, Coroutine):
                self._sync = True
                message = _ready(pending)
            else:  # another kind of awaitable: awaited in a cancelled scope
                message = {}
                with anyio.CancelScope() as scope:
                    scope.cancel()
                    message = dict(await pending)
            self._disconnected = message.get("type") == "http.disconnect"
        return self._disconnected

    def present(self) -> bool:
        """True while the caller is known to be connected, told at once (False when
        that cannot be told without waiting)."""
        if not self._disconnected:
            if not self._sync:
                return False
            pending = self._receive()
            if not isinstance(pending, Coroutine):  # pragma: no cover - kind changed
                self._sync = False
                return False
            self._disconnected = _ready(pending).get("type") == "http.disconnect"
        return not self._disconnected


def _ready(message: Coroutine[Any, Any, Message]) -> Message:
    """What ``receive()`` answers without waiting: the coroutine is run up to its first
    wait and closed there (nothing received: an empty message). The same as awaiting it
    in a cancelled scope, at a fraction of the cost: anyio's cancellation formats the
    task's repr and takes several turns of the loop, ~100 us per acquisition."""
    try:
        message.send(None)
    except StopIteration as done:
        return dict(done.value)
    message.close()
    return {}


async def _reports(ctx: Context, body: ReportsIn) -> dict[str, Any]:
    batch = [_batched(r) for r in body.reports]
    done = await remote_workers.report_batch(ctx, body.worker_id, batch)
    return {
        "results": [
            {"job_id": o.job_id, "kind": o.kind, "moved": o.moved, "error": o.error} for o in done
        ]
    }


def _batched(r: BatchedIn) -> remote_workers.BatchedReport:
    """A validated report as the service takes it (half the cost of ``model_dump``)."""
    return remote_workers.BatchedReport(
        job_id=r.job_id,
        kind=r.kind,
        pid=r.pid,
        started_at=r.started_at,
        record=r.record,
        status=r.status,
        exit_code=r.exit_code,
        reason=r.reason,
    )
