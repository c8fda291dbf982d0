"""Follow a job to its end: its log on stdout as it is written, a live status line on stderr.

Used by ``jobyard run --follow`` and ``jobyard jobs log --follow``. The log goes to
stdout untouched (so it can be redirected); the status line is drawn only on a
terminal, and the final line (status, reason, exit code) goes to stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.spinner import Spinner
from rich.text import Text

from jobyard.cli.context import EXIT_INTERRUPTED, CliState, exit_code_for_status
from jobyard.cli.render import format_seconds, job_duration, parse_time, status_text
from jobyard.client import ApiClient, ApiError, ClientError, JsonObject, Utf8Stream
from jobyard.core.jobs import TERMINAL, JobStatus


def is_ended(job: JsonObject) -> bool:
    """Whether the job is in an end status (FINISHED, ERROR, FAILED, CANCELLED)."""
    try:
        return JobStatus(str(job.get("status"))) in TERMINAL
    except ValueError:
        return False


class LineWriter:
    """Write text to ``sys.stdout`` whole lines at a time.

    Looked up at each write, because a live display swaps ``sys.stdout`` for a proxy that
    prints above the status line, and that proxy would break a half line in two.
    """

    def __init__(self) -> None:
        self._pending = ""
        self.written = 0

    def feed(self, text: str) -> None:
        """Add text; everything up to the last newline is written now."""
        self._pending += text
        head, newline, rest = self._pending.rpartition("\n")
        if newline:
            self._emit(head + "\n")
            self._pending = rest

    def finish(self) -> None:
        """Write what is left, ending it with a newline."""
        if self._pending:
            self._emit(self._pending + "\n")
            self._pending = ""

    def _emit(self, text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()
        self.written += len(text)


class StatusLine:
    """The live line: spinner, job id, status, time waited or run."""

    def __init__(self, job: JsonObject) -> None:
        self.job = job
        self._spinner = Spinner("dots", style="cyan")

    def text(self, now: datetime | None = None) -> Text:
        """The line's text for the job as last polled."""
        now = now or datetime.now(UTC)
        job = self.job
        ran = job_duration(job, now)
        if ran is not None:
            elapsed = f"running {format_seconds(ran)}"
        else:
            created = parse_time(job.get("created_at"))
            waited = (now - created).total_seconds() if created else 0.0
            elapsed = f"waiting {format_seconds(waited)}"
        line = Text.assemble(
            ("job ", "dim"),
            (str(job.get("id", "?")), "bold"),
            "  ",
            status_text(job.get("status")),
            "  ",
            (elapsed, "dim"),
        )
        waiting = job.get("waiting_reason")
        if isinstance(waiting, dict) and job.get("status") == JobStatus.QUEUED:
            # A job in a pool no live worker serves would otherwise just look stuck.
            pool = (waiting.get("details") or {}).get("pool")
            why = f"no worker serves pool {pool!r}" if pool else str(waiting.get("code"))
            line.append(f"  {why}", style="yellow")
        return line

    def __rich__(self) -> Spinner:
        self._spinner.update(text=self.text())
        return self._spinner


def final_line(job: JsonObject) -> Text:
    """``job 12 FINISHED  exit code 0  ran 3.1s  (reason)``, coloured by status."""
    parts: list[Any] = [("job ", "dim"), (str(job.get("id", "?")), "bold"), "  "]
    parts.append(status_text(job.get("status")))
    if job.get("exit_code") is not None:
        parts.append(f"  exit code {job['exit_code']}")
    ran = job_duration(job)
    if ran is not None:
        parts.append((f"  ran {format_seconds(ran)}", "dim"))
    if job.get("status_reason"):
        parts.append(f"  reason: {job['status_reason']}")
    return Text.assemble(*parts)


async def stream_log(
    api: ApiClient, job_id: int, writer: LineWriter, *, poll_seconds: float = 1.0
) -> None:
    """Copy the job's log to ``writer`` until the job has ended and the log is complete.

    A log that does not exist yet (job still waiting for a worker) is waited for; one that
    never will (cancelled, failed before starting) ends the copy. A stream that stops
    before the job ended is resumed at the byte where it stopped.
    """
    offset = 0
    decoder = Utf8Stream()
    while True:
        try:
            async for chunk in api.job_log_follow(job_id, offset=offset):
                offset += len(chunk)
                writer.feed(decoder.feed(chunk))
        except ApiError as exc:
            if exc.status != 404:
                raise
        if is_ended(await api.job_get(job_id)):
            writer.feed(decoder.flush())
            return
        await asyncio.sleep(poll_seconds)


async def wait_ended(api: ApiClient, job_id: int, *, poll_seconds: float = 1.0) -> JsonObject:
    """The job once it is in an end status."""
    while True:
        job = await api.job_get(job_id)
        if is_ended(job):
            return job
        await asyncio.sleep(poll_seconds)


@contextlib.contextmanager
def _live(console: Console | None, line: StatusLine) -> Iterator[bool]:
    if console is None or not console.is_terminal:
        yield False
        return
    live = Live(
        line,
        console=console,
        transient=True,
        refresh_per_second=8,
        redirect_stdout=sys.stdout.isatty(),
        redirect_stderr=False,
    )
    with live:
        yield True


async def follow_job(
    api: ApiClient,
    job_id: int,
    *,
    status_console: Console | None = None,
    poll_seconds: float = 1.0,
) -> JsonObject:
    """Stream the log of ``job_id`` to stdout (with a live status line) and return the ended job."""
    line = StatusLine(await api.job_get(job_id))
    writer = LineWriter()

    async def poll() -> None:
        while True:
            await asyncio.sleep(poll_seconds)
            with contextlib.suppress(ClientError):
                line.job = await api.job_get(job_id)

    with _live(status_console, line) as live:
        poller = asyncio.create_task(poll()) if live else None
        try:
            await stream_log(api, job_id, writer, poll_seconds=poll_seconds)
            return await wait_ended(api, job_id, poll_seconds=poll_seconds)
        finally:
            writer.finish()
            if poller is not None:
                poller.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await poller


def follow_and_report(state: CliState, job_id: int) -> int:
    """Follow a job in the terminal; print its final line; return the exit code of its status.

    Ctrl-C stops following, not the job: it says how to abort and returns 130.
    """

    async def work(api: ApiClient) -> JsonObject:
        return await follow_job(api, job_id, status_console=state.err)

    try:
        job = state.call(work)
    except KeyboardInterrupt:
        state.err.print(
            f"\nstopped following job {job_id}; it keeps running. "
            f"Abort it with: [bold]jobyard jobs abort {job_id}[/]"
        )
        return EXIT_INTERRUPTED
    state.err.print(final_line(job))
    return exit_code_for_status(str(job.get("status")))
