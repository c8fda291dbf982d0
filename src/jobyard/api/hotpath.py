"""The two submit routes of the job path, answered without FastAPI's per-request work.

``POST /api/v1/jobs`` and ``POST /api/v1/jobconfigs/{id}/run`` are called once per job.
Measured under a burst, FastAPI's routing, dependency resolution and route wrappers cost
more CPU than the submission itself (about 0.6 of the 1.1 ms a submit took).
:func:`answer_submit`, called by the application's door (:mod:`jobyard.api.door`) after
authentication and the body limit, answers a well-formed request of either route
itself, with the same request models, the same service call, the same response model
and the same error answers as the routes.

Anything it is not sure of goes on to FastAPI's routing unchanged, with the body
replayed: another content type, a body that is not JSON or does not validate. Every
validation answer (400/422) is therefore FastAPI's own. The routes stay registered: they
document the API and answer whatever this passes on.

The helpers below are shared with the worker routes' fast path
(:func:`jobyard.api.worker_hotpath.answer_worker`).
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobyard.api.dto import MAX_ID, AdhocJobIn, JobOut, RunIn, json_response
from jobyard.api.errors import domain_response
from jobyard.api.routes.jobs import submit_adhoc_body
from jobyard.core.errors import JobyardError
from jobyard.core.models import Job
from jobyard.service import jobs
from jobyard.service.context import Context, Principal

M = TypeVar("M", bound=BaseModel)

#: The ad-hoc submit route (the other one, ``/api/v1/jobconfigs/{id}/run``: :func:`run_target`).
SUBMIT = "/api/v1/jobs"
_RUN_PREFIX = "/api/v1/jobconfigs/"
_RUN_SUFFIX = "/run"


async def answer_submit(
    scope: Scope,
    body: bytes,
    jobconfig_id: int | None,
    receive: Receive,
    send: Send,
    fallback: ASGIApp,
) -> None:
    """Answer a ``POST`` of a submit route (``jobconfig_id``: the run route's, as the door
    matched it; None: ``/api/v1/jobs``) whose caller is authenticated and whose ``body``
    was read within its limit; anything not sure goes to ``fallback`` (FastAPI's routing)
    with the body replayed."""
    principal = door_principal(scope)
    if principal is None:
        await fallback(scope, replay(body, receive), send)
        return
    model: BaseModel | None
    if jobconfig_id is not None:
        model = parse_body(body, RunIn, empty=RunIn())
    else:
        model = parse_body(body, AdhocJobIn)
    if model is None:  # FastAPI answers it (and every error of its kind)
        await fallback(scope, replay(body, receive), send)
        return
    ctx: Context = scope["app"].state.ctx
    client = scope.get("client")
    remote_addr = client[0] if client else None
    try:
        job = await _submit(ctx, principal, jobconfig_id, model, remote_addr)
    except JobyardError as exc:
        await domain_response(exc)(scope, receive, send)
        return
    await json_response(JobOut.of(job), 201)(scope, receive, send)


def door_principal(scope: Scope) -> Principal | None:
    """The principal of a request the door took (an HTTP ``POST`` of one of its routes)
    that a fast path may answer: authenticated (the door ran the authentication), with a
    JSON body or no content type. None: the request goes on to FastAPI unchanged."""
    principal = scope.get("state", {}).get("principal")
    if not isinstance(principal, Principal) or not json_or_none(scope):
        return None
    return principal


def run_target(path: str) -> int | None:
    """The jobconfig id of ``/api/v1/jobconfigs/{id}/run`` (plain decimal, in range); None:
    any other path."""
    if not (path.startswith(_RUN_PREFIX) and path.endswith(_RUN_SUFFIX)):
        return None
    digits = path[len(_RUN_PREFIX) : -len(_RUN_SUFFIX)]
    if not digits.isascii() or not digits.isdigit() or digits.startswith("0"):
        return None
    if len(digits) > 19:
        return None
    value = int(digits)
    return value if 1 <= value <= MAX_ID else None


def json_or_none(scope: Scope) -> bool:
    """True for ``Content-Type: application/json`` (any parameters) or none at all."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            media_type: bytes = value.split(b";", 1)[0].strip().lower()
            return media_type == b"application/json"
    return True


def parse_body(body: bytes, model: type[M], empty: M | None = None) -> M | None:
    """``body`` validated as ``model`` (``empty``: what an empty body stands for); None
    when not sure (not JSON, not an object, not valid): FastAPI then answers it.

    Parsed and validated in one pass by pydantic-core (``model_validate_json``), at half
    the CPU of ``json.loads`` then ``model_validate``. A body it accepts gives the model
    FastAPI's parse (``json.loads``, then validation) gives; the few JSON texts only
    ``json.loads`` takes (UTF-16 or UTF-32, a byte order mark) go on to FastAPI, which
    answers them as before."""
    if not body:
        return empty
    try:
        return model.model_validate_json(body)
    except ValidationError:
        return None


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the already-read body over once, then the real one."""
    pending = True

    async def replayed() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _submit(
    ctx: Context,
    principal: Principal,
    jobconfig_id: int | None,
    model: Any,
    remote_addr: str | None,
) -> Job:
    if jobconfig_id is not None:
        return await jobs.run_jobconfig(
            ctx,
            principal,
            jobconfig_id,
            macros=model.macros,
            hold=model.hold,
            remote_addr=remote_addr,
        )
    return await submit_adhoc_body(ctx, principal, model, remote_addr)
