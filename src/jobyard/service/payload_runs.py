"""Run a jobconfig with a payload file in one step (what the console's Run form does).

The API takes the same steps one request at a time: ``POST /jobconfigs/{id}/run`` with
``hold=true``, ``POST /jobs/{id}/payload``, ``POST /jobs/{id}/release``. This use case
chains those very functions with one principal, so access, audit and limits are the
API's; a payload that cannot be attached cancels the held job instead of leaving it
WAITING forever.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from jobyard.core.errors import JobyardError
from jobyard.core.models import Job
from jobyard.service import jobs
from jobyard.service.context import Context, Principal


async def run_jobconfig(
    ctx: Context,
    principal: Principal,
    jobconfig_id: int,
    *,
    macros: dict[str, str],
    payload: tuple[str, Path] | None = None,
    remote_addr: str | None = None,
) -> Job:
    """Submit a job of a jobconfig; with ``payload`` (file name, local file) the job is
    created on hold, gets the file as its payload, then takes its turn."""
    if payload is None:
        return await jobs.run_jobconfig(
            ctx, principal, jobconfig_id, macros=macros, remote_addr=remote_addr
        )
    name, path = payload
    held = await jobs.run_jobconfig(
        ctx, principal, jobconfig_id, macros=macros, hold=True, remote_addr=remote_addr
    )
    try:
        await jobs.add_payload(ctx, principal, held.id, name, path)
    except JobyardError:
        # The submitter may cancel its own WAITING job; should that fail too, the
        # payload's error is still the one worth reporting.
        with contextlib.suppress(JobyardError):
            await jobs.cancel(ctx, principal, held.id, remote_addr=remote_addr)
        raise
    return await jobs.release(ctx, principal, held.id, remote_addr=remote_addr)
