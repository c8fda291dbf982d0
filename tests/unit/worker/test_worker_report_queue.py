"""A remote worker's reports leave with its acquisitions or by the reports call
(``worker/report_queue.py``), each job's reports in order."""

from __future__ import annotations

import asyncio
from typing import Any

from jobyard.worker.report_queue import ReportQueue


class FakeCalls:
    """The reports call: records each batch, answers every report moved; ``hold``
    keeps a call in flight until set."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[int, str]]] = []
        self.hold: asyncio.Event | None = None

    async def send(self, worker_id: str, items: list[dict[str, Any]]) -> Any:
        self.batches.append([(i["job_id"], i["kind"]) for i in items])
        if self.hold is not None:
            await self.hold.wait()
        return {"results": [_moved(i) for i in items]}


def _moved(item: dict[str, Any]) -> dict[str, Any]:
    return {"job_id": item["job_id"], "kind": item["kind"], "moved": True, "error": None}


def _running(job_id: int) -> dict[str, Any]:
    return {"job_id": job_id, "kind": "running", "pid": 1, "started_at": "x", "record": None}


def _end(job_id: int) -> dict[str, Any]:
    return {"job_id": job_id, "kind": "end", "status": "FINISHED", "exit_code": 0}


async def _turns(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_with_no_acquisition_carrying_a_report_leaves_by_the_reports_call() -> None:
    calls = FakeCalls()
    queue = ReportQueue(calls.send)
    answer = queue.put("w", _running(1))
    assert await answer == (True, None)
    assert calls.batches == [[(1, "running")]]


async def test_an_acquisition_carries_what_is_queued_and_the_call_waits_for_it() -> None:
    calls = FakeCalls()
    queue = ReportQueue(calls.send)
    first = queue.put("w", _running(1))
    second = queue.put("w", _end(1))
    carried = queue.for_acquisition("w")
    assert [(i["job_id"], i["kind"]) for _w, i, _a in carried] == [(1, "running"), (1, "end")]
    late = queue.put("w", _running(2))  # queued while the carrying acquisition is out
    await _turns()
    assert calls.batches == []  # the next acquisition takes it; no reports call
    assert queue.for_acquisition("w") == []  # one carrying acquisition at a time
    queue.settle(carried, [_moved(i) for _w, i, _a in carried])
    assert await first == (True, None) and await second == (True, None)
    taken = queue.for_acquisition("w")  # the next acquisition, sent on the answer
    assert [(i["job_id"], i["kind"]) for _w, i, _a in taken] == [(2, "running")]
    queue.settle(taken, [{"job_id": 2, "kind": "running", "moved": False, "error": "lost"}])
    assert await late == (False, "lost")
    assert calls.batches == []


async def test_a_jobs_report_waits_while_another_of_the_same_job_is_on_its_way() -> None:
    calls = FakeCalls()
    calls.hold = asyncio.Event()
    queue = ReportQueue(calls.send)
    running = queue.put("w", _running(1))
    await _turns()
    assert calls.batches == [[(1, "running")]]  # in flight by the reports call
    end = queue.put("w", _end(1))
    other = queue.put("w", _running(2))
    carried = queue.for_acquisition("w")
    assert [(i["job_id"], i["kind"]) for _w, i, _a in carried] == [(2, "running")]
    calls.hold.set()
    assert await running == (True, None)
    await _turns()
    assert len(calls.batches) == 1  # the end waits for the acquisition answered first
    queue.settle(carried, [_moved(i) for _w, i, _a in carried])
    assert await other == (True, None)
    assert await end == (True, None)
    assert calls.batches == [[(1, "running")], [(1, "end")]]


async def test_a_failed_acquisition_gives_its_reports_back_to_the_reports_call() -> None:
    calls = FakeCalls()
    queue = ReportQueue(calls.send)
    answer = queue.put("w", _end(3))
    carried = queue.for_acquisition("w")
    assert len(carried) == 1
    queue.give_back(carried)
    assert await answer == (True, None)
    assert calls.batches == [[(3, "end")]]
    assert queue.carry  # an outage: the next acquisitions carry reports again


async def test_a_server_that_refuses_or_ignores_carried_reports_gets_them_by_the_call() -> None:
    for refuse in (True, False):
        calls = FakeCalls()
        queue = ReportQueue(calls.send)
        answer = queue.put("w", _end(4))
        carried = queue.for_acquisition("w")
        if refuse:
            queue.give_back(carried, refused=True)  # 422: it does not know ``reports``
        else:
            queue.settle(carried, None)  # answered without ``results``
        assert await answer == (True, None)
        assert calls.batches == [[(4, "end")]]
        assert not queue.carry
        queue.put("w", _end(5))
        assert queue.for_acquisition("w") == []
