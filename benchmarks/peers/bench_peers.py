"""jobyard against Celery + Redis (and RQ) on the same workload, in one run.

The workload, identical on each system: trivial jobs that each spawn and reap ``true``.

* **Burst**: ``--jobs`` jobs submitted by ``--clients`` concurrent submitters; end to end
  is from the first submit (jobyard: the first ``created_at``) to the last program
  reaped (jobyard: the last ``ended_at``).
* **Idle latency**: one job at a time, ``--samples`` after ``--warmup``; submit →
  program started. jobyard: ``created_at`` → ``started_at`` (RUNNING) of the job record,
  which the worker writes just after the spawn (``bench_latency.py``); Celery and RQ:
  ``time.time()`` just before the submit call → ``time.time()`` at the top of the task
  body, just before its spawn.

Every stamp is ``time.time()`` (or jobyard's record of it) on this one machine.

jobyard runs with its default settings (SQLite in a temporary home, default isolation,
default local slots) through the HTTP API, reusing ``bench_throughput.burst`` and
``bench_latency.sample``, and the same on a throwaway PostgreSQL cluster (``--engines``).
``jobyard-remote`` is the same workload through remote workers on PostgreSQL: one
``jobyard server`` (no local slots) on a fresh database of the throwaway cluster, and
``jobyard worker`` processes on this host holding jobyard's default slot count between
them (``--remote-processes``: 1 = one worker with every slot, what a user runs first;
``1,2`` measures one worker and two with half the slots each, as two systems).
Celery and RQ run from their own venv (``.venv-peers``, ``--peers-python``) with
``redis-server`` (Debian's) on a free port in a temporary folder, without persistence:

* ``celery``: prefork with as many processes as jobyard's default slots, ``-O fair``,
  ``--prefetch-multiplier 64``, no gossip / mingle / heartbeat, no result backend,
  rate limits disabled (a user tuning for many short tasks);
* ``celery4``: prefork 4 with Celery's defaults (the reference in MEASUREMENTS.md);
* ``rq``: ``rq worker-pool`` with as many workers as jobyard's slots (each job forked
  from its worker, RQ's default), results not kept.

``--rounds`` repeats every system, alternating their order, so that a noisy neighbour
weighs on all of them. Ratios compare figures of the same round. A missed target prints
``MISSED``; the exit status is non-zero only when a system could not run.

    make bench-peers [ARGS="--rounds 3"]
    .venv/bin/python benchmarks/peers/bench_peers.py [--jobs 1000] [--samples 200] \\
        [--rounds 1] [--systems jobyard,jobyard-remote,celery,celery4,rq] \\
        [--engines sqlite,postgresql] [--remote-processes 1]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

HERE = Path(__file__).resolve().parent
BENCHMARKS = HERE.parent
if str(BENCHMARKS) not in sys.path:  # the sibling scripts and their _common
    sys.path.insert(0, str(BENCHMARKS))

import bench_latency  # noqa: E402
import bench_throughput  # noqa: E402
from _common import (  # noqa: E402
    Server,
    jobyard_up,
    machine,
    percentile,
    run_loop,
    table,
    verdict,
)
from _procs import redis_server, resp_int, spawn, wait_for  # noqa: E402
from _remote import remote_workers, split_slots  # noqa: E402

from jobyard.settings import _default_workers  # noqa: E402

TARGET_BURST_RATIO = 1.0
#: Idle submit -> RUNNING p50 targets: local slots on SQLite (issue 9), remote workers on
#: PostgreSQL (issue 11). Other jobyard systems are reported beside them without a target.
TARGET_IDLE_P50_MS = {"jobyard:sqlite": 3.0, "jobyard-remote": 5.0}
CELERY_PREFETCH = 64
SYSTEMS = ("jobyard", "jobyard-remote", "celery", "celery4", "rq")
ENGINES = ("sqlite", "postgresql")
LABELS = {
    "jobyard:sqlite": "jobyard (SQLite)",
    "jobyard:postgresql": "jobyard (PostgreSQL)",
    "jobyard-remote:1": "jobyard remote, PostgreSQL (1 worker)",
    "jobyard-remote:2": "jobyard remote, PostgreSQL (2 workers)",
    "celery": "Celery + Redis, tuned",
    "celery4": "Celery + Redis, prefork 4, defaults",
    "rq": "RQ + Redis",
}
INTERVALS = {
    "jobyard": "created_at -> RUNNING (job record)",
    "peer": "before submit call -> task body starts",
}


@dataclass
class Result:
    """One system measured once (one round)."""

    key: str
    round_no: int
    jobs: int
    span_s: float
    submit_s: float
    busy: float
    load: float
    started: list[float]  # idle: submit -> program started (s)
    ended: list[float]  # idle: submit -> program ended (s)
    call: list[float]  # idle: the submit call / HTTP round trip (s)

    @property
    def label(self) -> str:
        """The system's name in the tables."""
        return label(self.key)

    @property
    def rate(self) -> float:
        """End-to-end jobs/s of the burst."""
        return self.jobs / self.span_s

    def p50_ms(self, values: Sequence[float] | None = None) -> float:
        """Median of ``values`` (default: submit -> started) in ms."""
        return percentile(self.started if values is None else values, 50) * 1000


def label(key: str) -> str:
    """A system's name in the tables (``jobyard-remote:N``: N worker processes)."""
    if key in LABELS:
        return LABELS[key]
    return f"jobyard remote, PostgreSQL ({key.split(':', 1)[1]} workers)"


def target_ms(key: str) -> float | None:
    """The idle p50 target of a system, if it has one."""
    return TARGET_IDLE_P50_MS.get(key.split(":", 1)[0] if key.startswith("jobyard-remote") else key)


# -- one system, once ----------------------------------------------------------------------


def measure_jobyard(engine: str, args: argparse.Namespace, round_no: int, pg: Any) -> Result:
    """Idle latency then the burst, on one fresh ``jobyard up`` with default settings."""
    env: dict[str, str] = {}
    if engine == "postgresql":
        env["JOBYARD_DATABASE_URL"] = pg.url(pg.create_database())
    with jobyard_up(env=env) as server:
        return _measure_server(server, f"jobyard:{engine}", args, round_no)


def measure_remote(
    processes: int, args: argparse.Namespace, round_no: int, pg: Any, slots: int
) -> Result:
    """The same on one ``jobyard server`` (PostgreSQL, no local slots) whose jobs run on
    ``processes`` ``jobyard worker`` processes sharing ``slots`` slots."""
    env = {"JOBYARD_DATABASE_URL": pg.url(pg.create_database())}
    with (
        jobyard_up(env=env, command="server") as server,
        remote_workers(server, split_slots(slots, processes)),
    ):
        return _measure_server(server, f"jobyard-remote:{processes}", args, round_no)


def _measure_server(server: Server, key: str, args: argparse.Namespace, round_no: int) -> Result:
    """Warm-up, idle latency, then the burst, on a running server and its workers."""
    run_loop(bench_throughput._warm(server))
    found = bench_latency.sample(server, args.samples, args.warmup)
    burst = run_loop(
        bench_throughput.burst(
            server, key, "/api/v1/jobs", {"command": ["true"]}, args.jobs, args.clients
        )
    )
    if burst.span_s is None or burst.statuses != f"FINISHED={burst.jobs}":
        raise RuntimeError(f"jobyard burst did not run every job: {burst.statuses}")
    return Result(
        key=key,
        round_no=round_no,
        jobs=burst.jobs,
        span_s=burst.span_s,
        submit_s=burst.submit_s,
        busy=burst.machine_busy,
        load=os.getloadavg()[0],
        started=found["created -> RUNNING (started)"],
        ended=found["created -> ended"],
        call=found["client: POST /jobs round trip"],
    )


def _worker_command(system: str, python: str, port: int, slots: int) -> list[str]:
    if system == "rq":
        return [
            python,
            "-m",
            "rq.cli",
            "worker-pool",
            "peers",
            "--num-workers",
            str(slots),
            "--url",
            f"redis://127.0.0.1:{port}/0",
            "--path",
            str(HERE),
            "--logging-level",
            "WARNING",
        ]
    base = [python, "-m", "celery", "-A", "celery_app", "worker", "--pool", "prefork"]
    base += ["--loglevel", "WARNING", "--hostname", f"peers-{port}@%h"]
    if system == "celery4":  # Celery's defaults but the process count
        return [*base, "--concurrency", "4"]
    return [
        *base,
        "--concurrency",
        str(slots),
        "-O",
        "fair",
        "--prefetch-multiplier",
        str(CELERY_PREFETCH),
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]


def measure_peer(system: str, args: argparse.Namespace, round_no: int, slots: int) -> Result:
    """Redis, the workers, then ``peer_client.py`` (idle latency, then the burst)."""
    with (
        tempfile.TemporaryDirectory(prefix=f"jy-peers-{system}-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        folder = Path(tmp)
        port = stack.enter_context(redis_server(stack, folder))
        url = f"redis://127.0.0.1:{port}/0"
        env = {**os.environ, "PEERS_REDIS_URL": url, "PYTHONPATH": str(HERE)}
        log = folder / "worker.log"
        # Celery's warm shutdown (SIGTERM) takes a few seconds. RQ's workers finish their
        # blocking dequeue first (minutes): once the client is done nothing is left to
        # finish, so after 2 s they are killed.
        worker = spawn(
            stack,
            _worker_command(system, args.peers_python, port, slots),
            log,
            env=env,
            grace=2 if system == "rq" else 20,
        )
        if system == "rq":
            ready = lambda: resp_int(port, "SCARD", "rq:workers:peers") >= slots  # noqa: E731
        else:
            children = 4 if system == "celery4" else slots
            ready = lambda: (  # noqa: E731
                resp_int(port, "LLEN", "peers:celery:ready") >= 1
                and resp_int(port, "LLEN", "peers:celery:children") >= children
            )
        wait_for(f"{system} worker", ready, worker, log)
        client_log = folder / "client.err"
        client = spawn(
            stack,
            [
                args.peers_python,
                str(HERE / "peer_client.py"),
                "--system",
                "rq" if system == "rq" else "celery",
                "--redis-url",
                url,
                "--jobs",
                str(args.jobs),
                "--clients",
                str(args.clients),
                "--samples",
                str(args.samples),
                "--warmup",
                str(args.warmup),
            ],
            client_log,
            env=env,
            stdout=folder / "client.json",
        )
        code = client.wait(timeout=1800)
        if code != 0:
            text = client_log.read_text(errors="replace")
            raise RuntimeError(f"{system} client exited with {code}:\n{text[-3000:]}")
        answer = json.loads((folder / "client.json").read_text())
    burst, latency = answer["burst"], answer["latency"]
    return Result(
        key=system,
        round_no=round_no,
        jobs=int(burst["jobs"]),
        span_s=float(burst["last_ended"]) - float(burst["first_submit"]),
        submit_s=float(burst["submit_s"]),
        busy=float(burst["machine_busy"]),
        load=os.getloadavg()[0],
        started=latency["started"],
        ended=latency["ended"],
        call=latency["call"],
    )


# -- report ------------------------------------------------------------------------------


def _ratio(value: float, reference: Result | None, attr: str) -> str:
    if reference is None:
        return "-"
    base = reference.rate if attr == "rate" else reference.p50_ms()
    return f"{value / base:.2f}x"


def report(results: list[Result], args: argparse.Namespace, slots: int) -> None:
    """The tables and the verdict lines."""
    celery = {r.round_no: r for r in results if r.key == "celery"}
    celery4 = {r.round_no: r for r in results if r.key == "celery4"}
    rows = []
    for r in results:
        rows.append(
            [
                r.label,
                r.round_no,
                f"{r.rate:.0f}",
                _ratio(r.rate, celery.get(r.round_no), "rate"),
                f"{r.span_s:.2f}",
                f"{r.jobs / r.submit_s:.0f}",
                f"{r.busy * 100:.0f} %",
                f"{r.load:.2f}",
            ]
        )
    print(
        table(
            f"Burst of {args.jobs} jobs spawning `true`, {args.clients} concurrent submitters "
            f"(jobyard {slots} slots; tuned Celery and RQ {slots} processes)",
            [
                "system",
                "round",
                "end-to-end jobs/s",
                "x Celery",
                "first submit -> last ended (s)",
                "submits/s",
                "machine busy",
                "load (1 min) after",
            ],
            rows,
        )
    )
    rows = []
    for r in results:
        interval = INTERVALS["jobyard" if r.key.startswith("jobyard") else "peer"]
        rows.append(
            [
                r.label,
                r.round_no,
                interval,
                f"{r.p50_ms():.2f}",
                f"{percentile(r.started, 90) * 1000:.2f}",
                f"{percentile(r.started, 99) * 1000:.2f}",
                _ratio(r.p50_ms(), celery.get(r.round_no), "p50"),
                f"{r.p50_ms(r.ended):.2f}",
                f"{r.p50_ms(r.call):.2f}",
            ]
        )
    print(
        table(
            f"Idle submit -> program started (ms), one job at a time, {args.samples} samples",
            [
                "system",
                "round",
                "interval",
                "p50",
                "p90",
                "p99",
                "p50 x Celery",
                "submit -> ended p50",
                "submit call p50",
            ],
            rows,
        )
    )
    print()
    for r in results:
        if not r.key.startswith("jobyard"):
            continue
        reference = celery.get(r.round_no)
        goal = target_ms(r.key)
        target = goal is not None
        if reference is None:
            print(f"round {r.round_no}: {r.label} burst: Celery not measured, no ratio")
        else:
            ratio = r.rate / reference.rate
            tail = (
                f"target >= {TARGET_BURST_RATIO:.1f}x: {verdict(ratio >= TARGET_BURST_RATIO)}"
                if target
                else "reported beside the target"
            )
            other = celery4.get(r.round_no)
            if other is not None and other.rate > reference.rate:  # say so: a higher bar
                tail += f" ({r.rate / other.rate:.2f}x Celery prefork 4's {other.rate:.0f})"
            print(
                f"round {r.round_no}: {r.label} burst {r.rate:.0f} jobs/s = {ratio:.2f}x "
                f"Celery's {reference.rate:.0f}; {tail}"
            )
        p50 = r.p50_ms()
        tail = (
            f"target <= {goal:g} ms: {verdict(p50 <= goal)}"
            if goal is not None
            else "reported beside the target"
        )
        print(f"round {r.round_no}: {r.label} idle submit -> RUNNING p50 {p50:.2f} ms; {tail}")
    if args.rounds > 1:
        _medians(results)


def _medians(results: list[Result]) -> None:
    print("\nmedians over the rounds (ratios: of the medians, to the tuned Celery's):")
    medians: dict[str, tuple[float, float]] = {}
    for key in dict.fromkeys(r.key for r in results):
        mine = [r for r in results if r.key == key]
        if mine:
            rate = statistics.median(r.rate for r in mine)
            medians[key] = (rate, statistics.median(r.p50_ms() for r in mine))
    reference = medians.get("celery")
    for key, (rate, p50) in medians.items():
        ratios = f" ({rate / reference[0]:.2f}x, {p50 / reference[1]:.2f}x)" if reference else ""
        print(f"  {label(key)}: burst {rate:.0f} jobs/s; idle p50 {p50:.2f} ms{ratios}")


# -- main ----------------------------------------------------------------------------------


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _versions(python: str) -> str:
    code = (
        "import celery, redis, rq; "
        "print(f'Celery {celery.__version__}, RQ {rq.__version__}, redis-py {redis.__version__}')"
    )
    peers = subprocess.run(
        [python, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    server = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=False, timeout=10
    )
    server_version = next(
        (w.split("=", 1)[1] for w in server.stdout.split() if w.startswith("v=")), "?"
    )
    return f"{peers.stdout.strip() or peers.stderr.strip()[-200:]}; redis-server {server_version}"


def _plan(systems: list[str], engines: list[str], processes: list[int]) -> list[str]:
    plan: list[str] = []
    for system in systems:
        if system == "jobyard":
            plan += [f"jobyard:{engine}" for engine in engines]
        elif system == "jobyard-remote":
            plan += [f"jobyard-remote:{n}" for n in processes]
        else:
            plan.append(system)
    return plan


def _split(value: str, allowed: Sequence[str], what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    unknown = sorted(set(items) - set(allowed))
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)} (choose from {', '.join(allowed)})")
    return items


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000, help="jobs per burst")
    parser.add_argument("--samples", type=int, default=200, help="idle latency samples")
    parser.add_argument("--warmup", type=int, default=10, help="idle jobs before sampling")
    parser.add_argument("--clients", type=int, default=8, help="concurrent submitters")
    parser.add_argument("--rounds", type=int, default=1, help="repeats, alternating order")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--engines", default=",".join(ENGINES), help="jobyard's databases")
    parser.add_argument(
        "--remote-processes",
        default="1",
        help="jobyard-remote: worker processes sharing the slots, one system per value (e.g. 1,2)",
    )
    parser.add_argument(
        "--peers-python",
        default=str(BENCHMARKS.parent / ".venv-peers" / "bin" / "python"),
        help="Python of the venv holding Celery and RQ (make bench-peers creates it)",
    )
    args = parser.parse_args()
    # Absolute (not resolved: a venv's python is a symlink that must keep its venv path),
    # since the workers and the client run with this folder as their working directory.
    args.peers_python = str(Path(args.peers_python).absolute())
    systems = _split(args.systems, SYSTEMS, "systems")
    engines = _split(args.engines, ENGINES, "engines")
    slots = _default_workers()
    try:
        processes = [int(v) for v in args.remote_processes.split(",") if v.strip()]
        for n in processes:
            split_slots(slots, n)
    except ValueError as exc:
        raise SystemExit(f"--remote-processes {args.remote_processes}: {exc}") from None
    plan = _plan(systems, engines, processes)
    if any(not key.startswith("jobyard") for key in plan) and not Path(args.peers_python).exists():
        raise SystemExit(f"{args.peers_python} missing: run `make bench-peers` (it creates it)")
    signal.signal(signal.SIGTERM, _interrupt)
    print(
        f"bench_peers: {args.jobs} jobs per burst, {args.clients} concurrent submitters, "
        f"{args.samples} idle samples after {args.warmup}; {args.rounds} round(s) of "
        f"{', '.join(label(k) for k in plan)}"
    )
    print(f"machine: {machine()}")
    if any(not key.startswith("jobyard") for key in plan):
        print(f"peers: {_versions(args.peers_python)}")
    print(
        f"slots: jobyard default local slots = {slots} (jobyard.settings); jobyard remote: "
        f"{slots} slots over {' or '.join(map(str, processes))} `jobyard worker` process(es); "
        f"Celery tuned: prefork {slots}, -O fair, --prefetch-multiplier {CELERY_PREFETCH}; "
        f"RQ: worker-pool of {slots}"
    )
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}", flush=True)
    results: list[Result] = []
    failed: list[str] = []
    with contextlib.ExitStack() as stack:
        pg: Any = None
        for round_no in range(1, args.rounds + 1):
            order = plan if round_no % 2 else list(reversed(plan))
            for key in order:
                started = time.monotonic()
                try:
                    if key.startswith("jobyard"):
                        engine = key.split(":", 1)[1]
                        remote = key.startswith("jobyard-remote")
                        if (remote or engine == "postgresql") and pg is None:
                            from tests.support.pg import start_cluster

                            pg = start_cluster()
                            stack.callback(pg.stop)
                        if remote:
                            result = measure_remote(int(engine), args, round_no, pg, slots)
                        else:
                            result = measure_jobyard(engine, args, round_no, pg)
                    else:
                        result = measure_peer(key, args, round_no, slots)
                except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                    print(f"round {round_no}: {label(key)} could not run: {exc}", flush=True)
                    failed.append(key)
                    continue
                results.append(result)
                print(
                    f"round {round_no}: {result.label}: burst {result.rate:.0f} jobs/s, idle p50 "
                    f"{result.p50_ms():.2f} ms ({time.monotonic() - started:.0f} s; machine "
                    f"busy {result.busy * 100:.0f} % in the burst; load {result.load:.2f})",
                    flush=True,
                )
    report(results, args, slots)
    print(f"\nload average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        # Every ``with`` block has unwound by now: processes stopped, folders removed.
        print("\nbench_peers: interrupted; its processes and folders are cleaned up", flush=True)
        sys.exit(130)
