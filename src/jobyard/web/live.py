"""Live console pages: Server-Sent Event streams of the jobs list and of a job.

``GET /events/jobs?status=&jobconfig=&user=&since=&sort=`` sends ``rows`` events: the
first page of the jobs list (the same filters, the same use case and the same template
block as ``GET /jobs``) each time it changes. ``GET /jobs/{id}/events?offset=N`` sends
``head`` events (the job page's status, facts, buttons, timeline and output files) when
the job changes, ``log`` events with what the job printed after byte ``N`` (read by
:func:`jobyard.service.logs.stream_log`, the API's log follow), and ``end`` once the
job has ended and its log is read to the end. ``GET /events/dashboard`` sends ``board``
events: the dashboard's live block, as ``GET /`` renders it.

How a stream learns of changes: the engine's bus (:meth:`~jobyard.engine.bus.Bus.wait_job`
and :meth:`~jobyard.engine.bus.Bus.wait_any_job`) wakes it; since not every transition
is announced there (a job turning RUNNING, changes made by another server), it also
reads again after :data:`JOB_RECHECK_SECONDS` / :data:`LIST_RECHECK_SECONDS`, and never
more often than every :data:`LIST_MIN_GAP_SECONDS` for a list. A job the caller may not
view answers the 404 of a missing one; without a session a stream answers 401 (the page
then falls back to polling, which goes to the login page).
"""

from __future__ import annotations

import asyncio
import codecs
import hashlib
import time
from collections.abc import AsyncIterator
from contextlib import suppress
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from starlette.responses import Response

from jobyard.core.errors import InvalidInput, JobyardError, NotFound
from jobyard.core.jobs import TERMINAL
from jobyard.core.models import Job
from jobyard.service import jobs, logs, overview
from jobyard.service.context import Context, Principal
from jobyard.web.pages import (
    ctx_of,
    error_page,
    finish,
    int_param,
    new_router,
    path_id,
    signed_in,
)
from jobyard.web.render import ENV
from jobyard.web.session import Resolved
from jobyard.web.streams import (
    HELLO,
    KEEPALIVE,
    KEEPALIVE_SECONDS,
    EventStream,
    SessionWatch,
    Streams,
    TooManyStreams,
    frame,
)

router = new_router()

#: A job stream reads the job again at least this often (the bus wakes it sooner).
JOB_RECHECK_SECONDS = 2.0
#: A list stream reads its page again at least this often (the bus wakes it sooner)...
LIST_RECHECK_SECONDS = 5.0
#: ...and at most this often, however busy the server is.
LIST_MIN_GAP_SECONDS = 1.0
#: The dashboard's stream reads the board again at least this often (its polling period)...
DASHBOARD_RECHECK_SECONDS = 10.0
#: ...and at most this often (a board costs more than a page of jobs).
DASHBOARD_MIN_GAP_SECONDS = 2.0
#: Filters of the jobs list, kept in its links and its stream's URL.
LIST_KEYS = ("status", "jobconfig", "user", "since", "sort")
#: The first page of a live list (the jobs page's own size).
LIST_SIZE = 50
#: Column -> sort name of the jobs list headers (see :data:`overview.SORTS`).
SORTABLE = ("id", "ended", "duration")


def streams_of(request: Request) -> Streams:
    """This server's open console streams (made by :func:`jobyard.web.app.install`)."""
    found: Streams = request.app.state.console_streams
    return found


def jobs_list_extras(kept: dict[str, str]) -> dict[str, Any]:
    """What the jobs page adds for sorting and for its live stream: the header links
    (each column's URL and its ``aria-sort``), a caption, and the stream's URL."""
    current = kept.get("sort") or "-id"
    links: dict[str, tuple[str, str]] = {}
    for column in SORTABLE:
        if current.lstrip("-") == column:
            state = "descending" if current.startswith("-") else "ascending"
            flipped = column if current.startswith("-") else f"-{column}"
        else:
            state, flipped = "none", f"-{column}"
        links[column] = ("/jobs?" + urlencode({**kept, "sort": flipped}), state)
    key = current.lstrip("-")
    way = (
        "newest first" if current == "-id" else ("descending" if current[0] == "-" else "ascending")
    )
    if key == "id":
        # The store pages by id both ways: the whole history is in this order.
        caption = f"Sorted by job ({way}), page after page."
    else:
        caption = f"Sorted by {key} ({way}): this page's jobs only; the pages go newest first."
    live = {k: v for k, v in kept.items() if k in LIST_KEYS}
    return {
        "sort_links": links,
        "sort_caption": caption,
        "run_seconds": overview.run_seconds,
        "live_url": "/events/jobs" + (f"?{urlencode(live)}" if live else ""),
    }


def _no_session() -> Response:
    """What a stream without a session answers: 401 (EventSource gives up; no redirect)."""
    return Response(
        "not logged in (or the session ended): reload the page to log in",
        status_code=401,
        media_type="text/plain; charset=utf-8",
        headers={"Cache-Control": "no-store"},
    )


def _too_many() -> Response:
    return Response(
        "too many live streams for this session: close other console tabs",
        status_code=429,
        media_type="text/plain; charset=utf-8",
        headers={"Cache-Control": "no-store", "Retry-After": "30"},
    )


def _open_stream(request: Request, resolved: Resolved, body: AsyncIterator[bytes]) -> Response:
    streams = streams_of(request)
    if streams.closing.is_set():
        return Response("the server is stopping", status_code=503, headers={"Retry-After": "5"})
    try:
        key = streams.acquire(resolved)
    except TooManyStreams:
        return _too_many()
    return finish(request, resolved, EventStream(body, lambda: streams.release(key)))


# -- the jobs list -----------------------------------------------------------------------


def render_block(name: str, block: str, values: dict[str, Any]) -> str:
    """One block of a page's template, alone (what a stream sends to replace it).

    A block rendered alone misses the page's ``{% from "_macros.html" import ... %}``:
    the shared macros are handed in with the values.
    """
    macros = ENV.get_template("_macros.html").module
    shared = {k: getattr(macros, k) for k in dir(macros) if not k.startswith("_")}
    template = ENV.get_template(name)
    context = template.new_context({**shared, **values})
    return "".join(template.blocks[block](context))


def _render_rows(values: dict[str, Any]) -> str:
    return render_block("jobs.html", "rows", values)


@router.get("/events/jobs")
async def jobs_events(request: Request) -> Response:
    """The first page of the jobs list, sent again each time it changes."""
    resolved = await signed_in(request)
    if resolved is None:
        return _no_session()
    q = request.query_params
    kept = {k: q[k] for k in LIST_KEYS if q.get(k)}
    ctx = ctx_of(request)

    async def read() -> str:
        found = await overview.job_list(
            ctx,
            resolved.principal,
            status=kept.get("status"),
            jobconfig_id=int_param(kept.get("jobconfig")),
            submitted_by=kept.get("user"),
            since=kept.get("since"),
            cursor=None,
            limit=LIST_SIZE,
            sort=kept.get("sort"),
        )
        values = {"jobs": found.jobs, "names": found.jobconfig_names, **jobs_list_extras(kept)}
        return _render_rows(values)

    try:
        first = await read()  # a wrong filter answers its 422 before the stream starts
    except JobyardError as exc:
        return error_page(request, resolved, exc)
    return _open_stream(request, resolved, _list_body(request, resolved, first, read))


async def _list_body(
    request: Request,
    resolved: Resolved,
    first: str,
    read: Any,
    *,
    event: str = "rows",
    recheck: float = LIST_RECHECK_SECONDS,
    min_gap: float = LIST_MIN_GAP_SECONDS,
) -> AsyncIterator[bytes]:
    """Send ``first``, then what ``read()`` renders each time it changes, as ``event``
    events: read when the bus announces a job change or after ``recheck`` seconds,
    never sooner than ``min_gap`` seconds after the previous read."""
    ctx, streams = ctx_of(request), streams_of(request)
    watch = SessionWatch(ctx, resolved)
    yield HELLO
    sent = hashlib.sha256(first.encode()).digest()
    yield frame(event, first)
    quiet_since = last_read = time.monotonic()
    while not streams.closing.is_set():
        await streams.nap(ctx.bus.wait_any_job(recheck), recheck)
        if streams.closing.is_set():
            break
        if not await watch.alive():
            yield frame("session", "ended")
            return
        gap = min_gap - (time.monotonic() - last_read)
        if gap > 0:
            await streams.nap(asyncio.sleep(gap), gap)
        last_read = time.monotonic()
        try:
            html = await read()
        except JobyardError:
            continue  # a database outage: keep the page as it is, try again later
        digest = hashlib.sha256(html.encode()).digest()
        if digest != sent:
            sent, quiet_since = digest, time.monotonic()
            yield frame(event, html)
        elif time.monotonic() - quiet_since >= KEEPALIVE_SECONDS:
            quiet_since = time.monotonic()
            yield KEEPALIVE
    yield frame("bye", "the server is stopping")


# -- the dashboard -----------------------------------------------------------------------


@router.get("/events/dashboard")
async def dashboard_events(request: Request) -> Response:
    """The dashboard's live block (counts, chart, running jobs, failures), sent again
    when it changes: read on the bus's job changes, at most every
    :data:`DASHBOARD_MIN_GAP_SECONDS`, at least every :data:`DASHBOARD_RECHECK_SECONDS`
    (what its polling did)."""
    resolved = await signed_in(request)
    if resolved is None:
        return _no_session()
    ctx = ctx_of(request)

    async def read() -> str:
        board = await overview.dashboard(ctx, resolved.principal)
        values = {"board": board, "user": resolved.principal, **dashboard_extras()}
        return render_block("dashboard.html", "board", values)

    try:
        first = await read()
    except JobyardError as exc:
        return error_page(request, resolved, exc)
    body = _list_body(
        request,
        resolved,
        first,
        read,
        event="board",
        recheck=DASHBOARD_RECHECK_SECONDS,
        min_gap=DASHBOARD_MIN_GAP_SECONDS,
    )
    return _open_stream(request, resolved, body)


def dashboard_extras() -> dict[str, Any]:
    """What the dashboard's template needs beside the board (page and stream alike)."""
    return {"open_limit": overview.OPEN_COUNT_LIMIT, "live_url": "/events/dashboard"}


# -- one job -----------------------------------------------------------------------------


def _render_head(values: dict[str, Any]) -> str:
    return render_block("job.html", "head", values)


def _offset(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    if not value.isdigit() or len(value) > 18:
        raise InvalidInput(f"offset: expected a whole number of bytes, got {value[:40]!r}")
    return int(value)


@router.get("/jobs/{job_id}/events")
async def job_events(request: Request, job_id: str) -> Response:
    """A job's changes and the lines its log gains, until it has ended."""
    resolved = await signed_in(request)
    if resolved is None:
        return _no_session()
    ctx = ctx_of(request)
    try:
        number = path_id(job_id, "no such job")
        offset = _offset(request.query_params.get("offset"))
        await jobs.get(ctx, resolved.principal, number)  # the 404 of its page
    except JobyardError as exc:
        return error_page(request, resolved, exc)
    body = _job_body(request, resolved, number, offset)
    return _open_stream(request, resolved, body)


def _head_state(job: Job) -> tuple[Any, ...]:
    return (job.status, job.status_reason, job.started_at, job.ended_at, job.exit_code)


async def _job_head(ctx: Context, resolved: Resolved, job_id: int) -> tuple[Job, str]:
    detail = await overview.job_detail(ctx, resolved.principal, job_id)
    values = {
        "d": detail,
        "job": detail.job,
        "ended": detail.job.status in TERMINAL,
        "csrf_token": resolved.session.csrf,
        "user": resolved.principal,
    }
    return detail.job, _render_head(values)


async def _pump_log(
    ctx: Context, principal: Principal, job_id: int, offset: int | None, out: asyncio.Queue[Any]
) -> None:
    """Put what the job prints on ``out`` as text, through the API's log follow, then
    ``None`` once the log is read to its end (or there is none, or reading failed: the
    stream then ends with the job, and the page's download link still has it all)."""
    try:
        while True:
            try:
                _, key = await logs.open_log(ctx, principal, job_id)
                break
            except NotFound:  # not begun yet (or never will: the job ended without a log)
                if (await jobs.get(ctx, principal, job_id)).status in TERMINAL:
                    return
                await ctx.bus.wait_job(job_id, JOB_RECHECK_SECONDS)
        size = await ctx.blobs.size(key) or 0
        start = min(offset if offset is not None else 0, size)
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        async for chunk in logs.stream_log(ctx, job_id, key, offset=start, follow=True):
            text = decoder.decode(chunk)
            if text:
                await out.put(text)
        tail = decoder.decode(b"", final=True)
        if tail:
            await out.put(tail)
    except JobyardError:
        pass
    finally:
        out.put_nowait(None)


async def _job_body(
    request: Request, resolved: Resolved, job_id: int, offset: int | None
) -> AsyncIterator[bytes]:
    ctx, streams = ctx_of(request), streams_of(request)
    watch = SessionWatch(ctx, resolved)
    lines: asyncio.Queue[Any] = asyncio.Queue()
    pump = asyncio.create_task(_pump_log(ctx, resolved.principal, job_id, offset, lines))
    yield HELLO
    try:
        job, html = await _job_head(ctx, resolved, job_id)
        state = _head_state(job)
        yield frame("head", html)
        log_done = False
        next_check = time.monotonic() + JOB_RECHECK_SECONDS
        quiet_since = time.monotonic()
        while not streams.closing.is_set():
            # Log text first: it arrives without the bus (the worker writes a file).
            wait = max(0.0, min(next_check - time.monotonic(), KEEPALIVE_SECONDS))
            if not log_done:
                got = asyncio.ensure_future(lines.get())
                await streams.nap(_either(got, ctx.bus.wait_job(job_id, wait)), wait)
                if got.done():
                    text = got.result()
                    if text is None:
                        log_done = True
                    else:
                        batch = [text]
                        while not lines.empty():
                            more = lines.get_nowait()
                            if more is None:
                                log_done = True
                                break
                            batch.append(more)
                        quiet_since = time.monotonic()
                        yield frame("log", "".join(batch))
                else:
                    got.cancel()
            else:
                await streams.nap(ctx.bus.wait_job(job_id, wait), wait)
            if streams.closing.is_set():
                break
            if not await watch.alive():
                yield frame("session", "ended")
                return
            if time.monotonic() < next_check and not log_done:
                continue
            next_check = time.monotonic() + JOB_RECHECK_SECONDS
            try:
                job = await jobs.get(ctx, resolved.principal, job_id)
                if _head_state(job) != state:
                    job, html = await _job_head(ctx, resolved, job_id)
                    state = _head_state(job)
                    quiet_since = time.monotonic()
                    yield frame("head", html)
            except NotFound:
                yield frame("end", "gone")  # purged, or no longer visible
                return
            except JobyardError:
                continue  # a database outage: try again later
            if job.status in TERMINAL and log_done:
                yield frame("end", job.status.value)
                return
            if time.monotonic() - quiet_since >= KEEPALIVE_SECONDS:
                quiet_since = time.monotonic()
                yield KEEPALIVE
        yield frame("bye", "the server is stopping")
    finally:
        pump.cancel()
        with suppress(asyncio.CancelledError, JobyardError):
            await pump


async def _either(first: asyncio.Future[Any], second: Any) -> None:
    """Return when ``first`` is done or the awaitable ``second`` returns."""
    other = asyncio.ensure_future(second)
    try:
        await asyncio.wait({first, other}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not other.done():
            other.cancel()
            with suppress(asyncio.CancelledError):
                await other
