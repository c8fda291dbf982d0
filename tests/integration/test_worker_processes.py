"""Local slots in worker processes (the default) and inside the API process."""

from __future__ import annotations

import asyncio
import os
import signal
import time

from tests.integration.conftest import ServerFactory
from tests.integration.test_jobs_api import _alive


async def test_slots_inside_the_api_process(start_server: ServerFactory) -> None:
    env = await start_server(worker_processes=0, workers=2)
    ok = await env.run_command(["sh", "-c", "echo in-process"])
    assert (await env.wait_status(ok["id"]))["status"] == "FINISHED"
    long = await env.run_command(["sleep", "60"])
    await env.wait_status(long["id"], {"RUNNING"})
    r = await env.client.post(f"/api/v1/jobs/{long['id']}/abort")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "FAILED"


async def test_a_dead_worker_process_is_replaced_and_its_jobs_fail(
    start_server: ServerFactory,
) -> None:
    env = await start_server(workers=2, worker_processes=1)
    job = await env.run_command(["sh", "-c", 'echo "pid=$$"; exec sleep 300'])
    running = await env.wait_status(job["id"], {"RUNNING"})
    worker_pid = int(running["worker_id"].split(":")[1])
    assert worker_pid != os.getpid()
    program = int(await env.wait_log_line(job["id"], "pid="))
    os.kill(worker_pid, signal.SIGKILL)
    done = await env.wait_status(job["id"], timeout=30)
    assert done["status"] == "FAILED"
    assert "worker process died" in done["status_reason"]
    deadline = time.monotonic() + 10
    while _alive(program):
        assert time.monotonic() < deadline, "the orphaned program was not killed"
        await asyncio.sleep(0.05)
    after = await env.run_command(["true"])
    finished = await env.wait_status(after["id"], timeout=60)
    assert finished["status"] == "FINISHED"
    assert finished["worker_id"] != running["worker_id"]


async def test_a_worker_process_whose_parent_vanishes_exits_without_touching_its_jobs(
    start_server: ServerFactory,
) -> None:
    """End of file on the control socket without "stop" means the parent died.

    The kernel closes a dying server's sockets before its PR_SET_PDEATHSIG kills the
    worker process, so after ``kill -9`` of the server the worker may see the end of
    file first. It must then exit as that SIGKILL would, leaving its programs running
    for the next start to end and kill, not abort them as in an orderly stop. Here the
    parent lives on and only closes its end, so the parent's own recovery is what ends
    the job.
    """
    env = await start_server(workers=1, worker_processes=1)
    job = await env.run_command(["sh", "-c", 'echo "pid=$$"; exec sleep 300'])
    await env.wait_status(job["id"], {"RUNNING"})
    await env.wait_log_line(job["id"], "pid=")
    [process] = env.runtime._processes
    assert process._writer is not None
    process._writer.close()  # as the kernel does for a parent killed with SIGKILL
    done = await env.wait_status(job["id"], timeout=30)
    assert done["status"] == "FAILED"
    assert "worker process died" in done["status_reason"], done["status_reason"]
