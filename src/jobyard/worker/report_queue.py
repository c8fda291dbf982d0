"""A remote worker's RUNNING and end reports on their way to the server.

Reports are queued and leave in batches by two roads:

* **with the next acquisition** (``POST /api/v1/worker/acquire`` carries them in
  ``reports``): under a burst the worker acquires every few milliseconds, and the
  server writes the reports and the claim in one transaction, so one HTTP call and one
  commit do what two did;
* **by the reports call** (``POST /api/v1/worker/reports``) when no acquisition is due:
  a report queued while no acquisition carrying reports is in flight leaves at once
  (an acquisition without reports may be a long-poll that waits for a submit).

A job's reports stay in order: none of a job leaves while another of the same job is
on its way (its RUNNING report before its end; the server applies a batch's RUNNING
reports before its ends). A carrying acquisition that fails gives its reports back,
to go again (every report is guarded on the server: a repeated one changes nothing).
A server that refuses reports in an acquisition (older than this worker, 422) gets
them by the reports call from then on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

#: Most reports sent in one call.
REPORTS_PER_CALL = 200

#: A queued report: the worker it is for, its JSON item, its outcome to come.
Entry = tuple[str, dict[str, Any], "asyncio.Future[tuple[bool, str | None]]"]
#: Sends ``(worker_id, items)`` by the reports call; its answer's JSON.
Send = Callable[[str, list[dict[str, Any]]], Awaitable[Any]]


class ReportQueue:
    """See the module docstring; one per worker process."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._queued: list[Entry] = []
        #: Jobs with a report on its way (by either road).
        self._in_flight: set[int] = set()
        self._sender: asyncio.Task[None] | None = None
        #: While an acquisition carrying reports is in flight: set when it is answered.
        self._carrying: asyncio.Event | None = None
        #: Whether acquisitions may carry reports (False once a server refused them).
        self.carry = True

    def __len__(self) -> int:
        return len(self._queued)

    def put(self, worker_id: str, item: dict[str, Any]) -> asyncio.Future[tuple[bool, str | None]]:
        """Queue a report; its ``(moved, error)`` to come."""
        answer: asyncio.Future[tuple[bool, str | None]] = asyncio.get_running_loop().create_future()
        answer.add_done_callback(_retrieved)
        self._queued.append((worker_id, item, answer))
        self._kick()
        return answer

    def _take(self, worker_id: str) -> list[Entry]:
        """Up to :data:`REPORTS_PER_CALL` queued reports of ``worker_id`` whose job has
        none on its way, taken off the queue (their jobs now on their way)."""
        taken: list[Entry] = []
        kept: list[Entry] = []
        busy = self._in_flight
        for entry in self._queued:
            if (
                len(taken) < REPORTS_PER_CALL
                and entry[0] == worker_id
                and entry[1]["job_id"] not in busy
            ):
                taken.append(entry)
            else:
                kept.append(entry)
        if taken:
            self._queued = kept
            self._in_flight.update(item["job_id"] for _w, item, _a in taken)
        return taken

    def for_acquisition(self, worker_id: str) -> list[Entry]:
        """The reports an acquisition about to be sent carries (none when acquisitions
        may not carry reports). Each must come back through :meth:`settle` or
        :meth:`give_back`."""
        if not self.carry or self._carrying is not None:
            return []
        taken = self._take(worker_id)
        if taken:
            self._carrying = asyncio.Event()
        return taken

    def settle(self, taken: list[Entry], results: Any) -> None:
        """The answer of a carrying acquisition: ``results`` as the server gave them (not
        a list: it ignored them, so they go again by the reports call)."""
        if not taken:
            return
        if not isinstance(results, list):
            self.give_back(taken, refused=True)
            return
        _resolve(taken, results)
        self._landed(taken)

    def give_back(self, taken: list[Entry], *, refused: bool = False) -> None:
        """A carrying acquisition failed: its reports go again, first in the queue;
        ``refused``: the server does not take reports in acquisitions."""
        if not taken:
            return
        if refused:
            self.carry = False
        self._queued[0:0] = taken
        self._landed(taken)

    def _landed(self, taken: list[Entry]) -> None:
        self._in_flight.difference_update(item["job_id"] for _w, item, _a in taken)
        carrying, self._carrying = self._carrying, None
        if carrying is not None:
            carrying.set()
        self._kick()

    def _kick(self) -> None:
        if self._queued and (self._sender is None or self._sender.done()):
            self._sender = asyncio.get_running_loop().create_task(
                self._run(), name="worker-reports"
            )

    async def _run(self) -> None:
        while self._queued:
            carrying = self._carrying
            if carrying is not None:
                # An acquisition carrying reports is answered without a wait, and the
                # next one, sent as soon as it is answered, takes what is queued now.
                await carrying.wait()
                await asyncio.sleep(0)
                continue
            taken = self._take(self._queued[0][0])
            if not taken:
                return  # each waits for its job's report on its way: that one kicks
            try:
                answer = await self._send(taken[0][0], [item for _w, item, _a in taken])
            except Exception as exc:  # the callers see it (they retry nothing themselves)
                for _w, _item, future in taken:
                    if not future.done():
                        future.set_exception(exc)
                self._in_flight.difference_update(item["job_id"] for _w, item, _a in taken)
                continue
            _resolve(taken, answer.get("results") or [])
            self._in_flight.difference_update(item["job_id"] for _w, item, _a in taken)


def _resolve(taken: list[Entry], results: list[Any]) -> None:
    found = {(r.get("job_id"), r.get("kind")): r for r in results if isinstance(r, dict)}
    for _w, item, future in taken:
        result = found.get((item["job_id"], item["kind"])) or {}
        if not future.done():
            future.set_result((bool(result.get("moved")), result.get("error")))


def _retrieved(future: asyncio.Future[Any]) -> None:
    """Mark a future's exception as seen (its caller may have stopped waiting)."""
    if not future.cancelled():
        future.exception()
