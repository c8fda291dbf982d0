"""Schedules in real time: real ``jobyard up`` subprocesses, the real clock, no mocking.

Three scenarios prove the acceptance points of scheduling end to end:

* **restart** (embedded SQLite): two jobconfigs, each with a once-a-minute cron
  schedule, one ``fire_once`` and one ``skip``. The server fires once, is stopped
  (SIGTERM) for more than three minutes across at least three nominal firings, and
  restarted: ``fire_once`` gets exactly one catch-up job (for the latest missed fire
  time), ``skip`` none; the next on-time firing then gives each exactly one job.
* **2 replicas** and **3 replicas** (each on its own PostgreSQL database): 200
  schedules firing every minute for five minutes; afterwards, read from the database,
  every schedule has exactly one job for every nominal minute of the window.

They take minutes each, so the module fixture starts all of them at once in background
threads (one function per scenario, returning what it observed or raising); each test
joins its scenario and asserts. Only the scenarios of selected tests are started.
Server logs stay in the pytest temp folder (``*.stderr.log``), named in failures.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.realtime import (
    Api,
    as_utc,
    floor_minute,
    iso,
    log_tails,
    mid_minute,
    minutes_between,
    poll,
    sleep_until,
    utcnow,
)
from tests.support.server import jobyard_server

pytestmark = [pytest.mark.slow, pytest.mark.beside]

EVERY_MINUTE = "0 * * * * ?"
MINUTE = timedelta(minutes=1)
#: Moderate slots so that six servers share this machine's cores.
WORKERS = 4
SERVER_ENV = {"JOBYARD_WORKER_PROCESSES": "1"}
TERMINAL = {"FINISHED", "ERROR", "FAILED", "CANCELLED"}
#: The restart scenario keeps the server down at least this long ...
DOWNTIME_SECONDS = 180.0
#: ... across at least this many nominal firings.
MISSED_FIRINGS = 3
#: The replica scenarios run their schedules at least this long (and >= 5 firings).
REPLICA_RUN_SECONDS = 300.0
REPLICA_FIRINGS = 5
JOBCONFIGS_PER_DB = 20
SCHEDULES_PER_JOBCONFIG = 10
#: Longest a scenario may take before its test gives up waiting.
SCENARIO_TIMEOUT = 15 * 60.0
FIRED_LOG = re.compile(r"jobyard\.scheduler: fired (\d+) job\(s\)")


# -- scenario A: restart on SQLite ---------------------------------------------------------

POLICIES = ("fire_once", "skip")


@dataclass
class RestartRun:
    """What the restart scenario saw (jobs and schedules as the API returned them)."""

    root: Path
    owner: str | None = None
    jobconfig: dict[str, int] = field(default_factory=dict)  # policy -> jobconfig id
    schedule: dict[str, int] = field(default_factory=dict)  # policy -> schedule id
    first_fire: dict[str, datetime] = field(default_factory=dict)  # policy -> next_fire_at
    before_stop: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    stopped_at: datetime | None = None  # the first server has exited
    restarted_at: datetime | None = None  # the second server is being started
    down_seconds: float = 0.0
    caught_up: bool = False  # both schedules moved past the restart time in time
    after_catchup: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    catchup_schedules: dict[str, dict[str, Any]] = field(default_factory=dict)
    catchup_snapshot_at: datetime | None = None
    on_time: dict[str, datetime] = field(default_factory=dict)  # first firing after restart
    final: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    final_schedules: dict[str, dict[str, Any]] = field(default_factory=dict)


def _jobs_by_policy(api: Api, run: RestartRun) -> dict[str, list[dict[str, Any]]]:
    return {p: api.jobs_of(run.jobconfig[p]) for p in POLICIES}


def _schedules_by_policy(api: Api, run: RestartRun) -> dict[str, dict[str, Any]]:
    out = {}
    for p in POLICIES:
        (found,) = [s for s in api.schedules_of(run.jobconfig[p]) if s["id"] == run.schedule[p]]
        out[p] = found
    return out


def _all_ended(jobs: dict[str, list[dict[str, Any]]]) -> bool:
    return all(j["status"] in TERMINAL for items in jobs.values() for j in items)


def run_restart(root: Path) -> RestartRun:
    """Scenario A; see the module docstring."""
    root.mkdir(parents=True)
    home = root / "home"
    run = RestartRun(root=root)
    with jobyard_server(home, workers=WORKERS, env=SERVER_ENV) as server:
        api = Api(server)
        try:
            for policy in POLICIES:
                jc = api.call(
                    "POST",
                    "/api/v1/jobconfigs",
                    expect=201,
                    json={"name": f"minutely-{policy}", "command": ["true"], "max_concurrent": 0},
                )
                sched = api.call(
                    "POST",
                    f"/api/v1/jobconfigs/{jc['id']}/schedules",
                    expect=201,
                    json={"cron": EVERY_MINUTE, "misfire_policy": policy, "name": policy},
                )
                run.owner = jc["owner"]
                run.jobconfig[policy] = jc["id"]
                run.schedule[policy] = sched["id"]
                run.first_fire[policy] = as_utc(sched["next_fire_at"])
            # Let the first firing happen on time, then stop.
            sleep_until(max(run.first_fire.values()))

            def fired_once() -> bool:
                jobs = _jobs_by_policy(api, run)
                return all(jobs[p] for p in POLICIES) and _all_ended(jobs)

            poll(fired_once, timeout=45)
            run.before_stop = _jobs_by_policy(api, run)
        finally:
            api.close()
    run.stopped_at = utcnow()
    down_since = time.monotonic()
    first_log = root / "home.stderr.log"
    if first_log.exists():  # the restart reopens (truncates) it: keep the first run's
        first_log.replace(root / "home-before-restart.stderr.log")

    restart_at = mid_minute(run.stopped_at + timedelta(seconds=DOWNTIME_SECONDS + 1))
    while floor_minute(restart_at) - floor_minute(run.stopped_at) < MISSED_FIRINGS * MINUTE:
        restart_at = mid_minute(restart_at + MINUTE)  # pragma: no cover - 181 s always do
    sleep_until(restart_at)
    run.down_seconds = time.monotonic() - down_since
    run.restarted_at = utcnow()
    with jobyard_server(home, workers=WORKERS, env=SERVER_ENV) as server:
        api = Api(server)
        try:
            restarted = run.restarted_at

            def caught_up() -> bool:
                found = _schedules_by_policy(api, run)
                return all(
                    s["next_fire_at"] and as_utc(s["next_fire_at"]) > restarted
                    for s in found.values()
                )

            run.caught_up = poll(caught_up, timeout=30)
            run.catchup_schedules = _schedules_by_policy(api, run)
            run.after_catchup = _jobs_by_policy(api, run)
            run.catchup_snapshot_at = utcnow()
            for p in POLICIES:
                nxt = run.catchup_schedules[p]["next_fire_at"]
                run.on_time[p] = as_utc(nxt) if nxt else floor_minute(restarted) + MINUTE
            sleep_until(max(run.on_time.values()))

            def fired_on_time() -> bool:
                jobs = _jobs_by_policy(api, run)
                fired = all(
                    any(as_utc(j["scheduled_for"]) == run.on_time[p] for j in jobs[p])
                    for p in POLICIES
                )
                return fired and _all_ended(jobs)

            poll(fired_on_time, timeout=45)
            run.final = _jobs_by_policy(api, run)
            run.final_schedules = _schedules_by_policy(api, run)
        finally:
            api.close()
    return run


# -- scenario B: replicas on PostgreSQL ----------------------------------------------------


@dataclass
class ReplicaRun:
    """What a replica scenario saw; ``jobs`` and ``schedules`` are read after the stop."""

    replicas: int
    root: Path
    owner: str | None = None
    first_fire: dict[int, datetime] = field(default_factory=dict)  # schedule id -> first
    jobconfig_of: dict[int, int] = field(default_factory=dict)  # schedule id -> jobconfig
    created_at: datetime | None = None  # every schedule exists
    window_end: datetime | None = None  # last nominal minute checked
    stopping_at: datetime | None = None
    settled: bool = False  # the window's last firing was complete and ended before the stop
    jobs: list[dict[str, Any]] = field(default_factory=list)
    schedules: dict[int, dict[str, Any]] = field(default_factory=dict)
    fired_per_replica: list[int] = field(default_factory=list)  # from the servers' logs
    workers_seen: int = 0


JOB_COLUMNS = (
    "id",
    "jobconfig_id",
    "schedule_id",
    "scheduled_for",
    "status",
    "trigger",
    "submitted_by",
    "created_at",
    "worker_id",
)


def _db_rows(db_url: str, query: str) -> list[dict[str, Any]]:
    with psycopg.connect(db_url) as conn, conn.cursor() as cur:
        cur.execute(query)
        names = [d.name for d in cur.description or []]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def run_replicas(replicas: int, root: Path, db_url: str) -> ReplicaRun:
    """Scenario B with ``replicas`` servers on the (empty) database ``db_url``."""
    root.mkdir(parents=True)
    run = ReplicaRun(replicas=replicas, root=root)
    env = {
        **SERVER_ENV,
        "JOBYARD_DATABASE_URL": db_url,
        "JOBYARD_BLOBS_DIR": str(root / "shared-blobs"),
    }
    homes = [root / f"replica{i}" for i in range(replicas)]
    with contextlib.ExitStack() as stack:
        # The first replica migrates the database and mints the admin token; the others
        # find the token in their home (the server helper waits for that file).
        servers = [stack.enter_context(jobyard_server(homes[0], workers=WORKERS, env=env))]
        for home in homes[1:]:
            home.mkdir(parents=True)
            (home / "admin.token").write_text(servers[0].token + "\n")
            servers.append(stack.enter_context(jobyard_server(home, workers=WORKERS, env=env)))
        apis = [Api(s) for s in servers]
        for api in apis:
            stack.callback(api.close)
        for i in range(JOBCONFIGS_PER_DB):
            api = apis[i % replicas]
            jc = api.call(
                "POST",
                "/api/v1/jobconfigs",
                expect=201,
                json={"name": f"fleet-{i:02d}", "command": ["true"], "max_concurrent": 0},
            )
            run.owner = jc["owner"]
            for k in range(SCHEDULES_PER_JOBCONFIG):
                sched = apis[(i + k) % replicas].call(
                    "POST",
                    f"/api/v1/jobconfigs/{jc['id']}/schedules",
                    expect=201,
                    json={"cron": EVERY_MINUTE, "name": f"s{k:02d}"},
                )
                run.first_fire[sched["id"]] = as_utc(sched["next_fire_at"])
                run.jobconfig_of[sched["id"]] = jc["id"]
        run.created_at = utcnow()
        # Run >= 5 minutes and >= 5 firings of every schedule, then stop mid-minute.
        enough = max(
            run.created_at + timedelta(seconds=REPLICA_RUN_SECONDS),
            max(run.first_fire.values()) + (REPLICA_FIRINGS - 1) * MINUTE,
        )
        stop_from = mid_minute(enough, earliest=10, latest=40)
        sleep_until(stop_from)
        run.window_end = floor_minute(stop_from)
        wanted = sum(1 for first in run.first_fire.values() if first <= run.window_end)
        end_sql = f"TIMESTAMPTZ '{run.window_end.isoformat()}'"

        def window_settled() -> bool:
            (row,) = _db_rows(
                db_url,
                "SELECT count(*) FILTER (WHERE scheduled_for = "
                f"{end_sql}) AS last, count(*) FILTER (WHERE status NOT IN "
                "('FINISHED', 'ERROR', 'FAILED', 'CANCELLED')) AS running FROM jobs",
            )
            return bool(row["last"] >= wanted and row["running"] == 0)

        # Wait for the window's last firing to be complete and ended (or give up before
        # the next fire time, and let the test report what is missing).
        latest_stop = run.window_end + timedelta(seconds=50)
        run.settled = poll(window_settled, timeout=(latest_stop - utcnow()).total_seconds())
        run.stopping_at = utcnow()
        # ExitStack: clients close, then the replicas get SIGTERM (last started first).
    run.jobs = _db_rows(db_url, f"SELECT {', '.join(JOB_COLUMNS)} FROM jobs ORDER BY id")
    run.schedules = {
        row["id"]: row
        for row in _db_rows(
            db_url,
            "SELECT id, jobconfig_id, next_fire_at, last_fire_at, last_result FROM schedules",
        )
    }
    for home in homes:
        log = home.with_name(home.name + ".stderr.log").read_text(errors="replace")
        run.fired_per_replica.append(sum(int(n) for n in FIRED_LOG.findall(log)))
    run.workers_seen = len({j["worker_id"] for j in run.jobs if j["worker_id"]})
    return run


# -- the fixture: every selected scenario at once ---------------------------------------------

SCENARIO_OF_TEST = {
    "test_restart_fire_once_catches_up_once_and_skip_drops": "restart",
    "test_two_replicas_fire_every_firing_exactly_once": "replicas2",
    "test_three_replicas_fire_every_firing_exactly_once": "replicas3",
}


@dataclass
class Scenarios:
    """Futures of the running scenarios, by name."""

    futures: dict[str, Future[Any]]
    roots: dict[str, Path]

    def result(self, name: str) -> Any:
        """Join a scenario; its failure becomes this test's, with the server logs."""
        try:
            return self.futures[name].result(timeout=SCENARIO_TIMEOUT)
        except Exception as exc:
            raise AssertionError(
                f"scenario {name!r} failed: {exc!r}\n{log_tails(self.roots[name])}"
            ) from exc


@pytest.fixture(scope="module")
def scenarios(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Scenarios]:
    here = Path(__file__)
    selected = {
        SCENARIO_OF_TEST[item.name]
        for item in request.session.items
        if item.path == here and item.name in SCENARIO_OF_TEST
    }
    base = tmp_path_factory.mktemp("schedules-realtime")
    roots = {name: base / name for name in selected}
    work: dict[str, Callable[[], Any]] = {}
    databases: list[str] = []
    cluster = None
    if "restart" in selected:
        work["restart"] = lambda: run_restart(roots["restart"])
    for n in (2, 3):
        name = f"replicas{n}"
        if name not in selected:
            continue
        if cluster is None:
            cluster = request.getfixturevalue("pg_cluster")
        database = cluster.create_database()
        databases.append(database)
        url = cluster.url(database)
        work[name] = lambda n=n, url=url, root=roots[name]: run_replicas(n, root, url)
    try:
        with ThreadPoolExecutor(max_workers=max(1, len(work)), thread_name_prefix="sched") as pool:
            futures = {name: pool.submit(fn) for name, fn in work.items()}
            yield Scenarios(futures, roots)
            # Leaving the pool waits for every scenario (their servers stop in them).
    finally:
        for database in databases:
            assert cluster is not None
            cluster.drop_database(database)


# -- checks ------------------------------------------------------------------------------------


def _pairs_twice(jobs: list[dict[str, Any]]) -> list[str]:
    """``(schedule_id, scheduled_for)`` pairs held by more than one job, described."""
    held: dict[tuple[int, datetime], list[int]] = defaultdict(list)
    for j in jobs:
        if j["schedule_id"] is not None:
            held[(j["schedule_id"], as_utc(j["scheduled_for"]))].append(j["id"])
    return [
        f"schedule {sid} at {t.isoformat()}: jobs {ids}"
        for (sid, t), ids in sorted(held.items())
        if len(ids) > 1
    ]


def _bad_jobs(
    jobs: list[dict[str, Any]], owner: str | None, schedule_of: Callable[[dict[str, Any]], int]
) -> list[str]:
    """Jobs that are not proper schedule firings (trigger, schedule, owner, whole minute)."""
    bad = []
    for j in jobs:
        problems = []
        if j["trigger"] != "schedule":
            problems.append(f"trigger {j['trigger']!r}")
        if j["schedule_id"] != schedule_of(j):
            problems.append(f"schedule_id {j['schedule_id']} (wanted {schedule_of(j)})")
        if j["submitted_by"] != owner:
            problems.append(f"submitted_by {j['submitted_by']!r} (wanted the owner {owner!r})")
        if j["scheduled_for"] is None:
            problems.append("no scheduled_for")
        elif as_utc(j["scheduled_for"]) != floor_minute(as_utc(j["scheduled_for"])):
            problems.append(f"scheduled_for {j['scheduled_for']} is not a whole minute")
        if problems:
            bad.append(f"job {j['id']}: " + ", ".join(problems))
    return bad


def _not_finished(jobs: list[dict[str, Any]]) -> list[str]:
    return [
        f"job {j['id']} (schedule {j['schedule_id']} at {j['scheduled_for']}): {j['status']}"
        for j in jobs
        if j["status"] != "FINISHED"
    ]


_RESULT_AT = re.compile(r"^(?P<at>\S+): (?P<what>.*)$")
_MISSED = re.compile(r"(\d+)(\+?) missed firing")


def _result_of(schedule: dict[str, Any]) -> tuple[datetime, str, int]:
    """``last_result`` split into (firing time, text, missed count)."""
    text = schedule["last_result"] or ""
    match = _RESULT_AT.match(text)
    assert match, f"schedule {schedule['id']}: unexpected last_result {text!r}"
    missed = _MISSED.search(match["what"])
    return as_utc(match["at"]), match["what"], int(missed.group(1)) if missed else 0


# -- tests -------------------------------------------------------------------------------------


def test_restart_fire_once_catches_up_once_and_skip_drops(scenarios: Scenarios) -> None:
    run: RestartRun = scenarios.result("restart")
    where = f"(server logs under {run.root})"
    assert run.stopped_at is not None and run.restarted_at is not None

    # Before the stop: each schedule fired once, on time, as the jobconfig's owner.
    for p in POLICIES:
        jobs = run.before_stop[p]
        assert [as_utc(j["scheduled_for"]) for j in jobs] == [run.first_fire[p]], (
            f"{p}: before the stop exactly one job for {run.first_fire[p].isoformat()} "
            f"was expected, got {[(j['id'], j['scheduled_for']) for j in jobs]} {where}"
        )

    # The downtime: >= 180 s across >= 3 nominal firings of every schedule.
    assert run.down_seconds >= DOWNTIME_SECONDS, run.down_seconds
    for p in POLICIES:
        missed_while_down = [
            t
            for t in minutes_between(run.first_fire[p] + MINUTE, floor_minute(run.restarted_at))
            if run.stopped_at < t < run.restarted_at
        ]
        assert len(missed_while_down) >= MISSED_FIRINGS, (p, missed_while_down)

    # Right after the restart, before the next on-time firing.
    assert run.caught_up, (
        f"30 s after the restart the schedules had not moved past it: "
        f"{run.catchup_schedules} {where}"
    )
    assert run.catchup_snapshot_at is not None
    assert run.catchup_snapshot_at < min(run.on_time.values()), (
        "the post-restart snapshot came after the next fire time; cannot tell catch-up "
        f"from on-time jobs {where}"
    )
    missed: dict[str, list[datetime]] = {}
    for p in POLICIES:
        fired_at, what, count = _result_of(run.catchup_schedules[p])
        # Every nominal firing after the pre-stop one, up to the restart's firing round.
        missed[p] = minutes_between(run.first_fire[p] + MINUTE, floor_minute(fired_at))
        assert len(missed[p]) >= MISSED_FIRINGS
        assert count == len(missed[p]), (
            f"{p}: last_result {what!r} should count {len(missed[p])} missed firings "
            f"({iso(missed[p][0])}..{iso(missed[p][-1])}) {where}"
        )
        assert run.on_time[p] == floor_minute(fired_at) + MINUTE, (
            f"{p}: after the catch-up round at {fired_at.isoformat()} next_fire_at should be "
            f"the next minute, not {run.on_time[p].isoformat()}"
        )
    before = {p: {j["id"] for j in run.before_stop[p]} for p in POLICIES}
    catch_up = [j for j in run.after_catchup["fire_once"] if j["id"] not in before["fire_once"]]
    assert len(catch_up) == 1, (
        f"fire_once: exactly one catch-up job for the {len(missed['fire_once'])} missed "
        f"firings was expected, got {[(j['id'], j['scheduled_for']) for j in catch_up]} {where}"
    )
    (job,) = catch_up
    assert as_utc(job["scheduled_for"]) == missed["fire_once"][-1], (
        f"the catch-up job should be recorded for the latest missed fire time "
        f"{missed['fire_once'][-1].isoformat()}, not {job['scheduled_for']}"
    )
    assert "catch-up" in run.catchup_schedules["fire_once"]["last_result"]
    skipped = [j for j in run.after_catchup["skip"] if j["id"] not in before["skip"]]
    assert skipped == [], (
        f"skip: no job was expected for the missed firings, got "
        f"{[(j['id'], j['scheduled_for']) for j in skipped]} {where}"
    )
    assert "skipped" in run.catchup_schedules["skip"]["last_result"]

    # The next on-time firing: exactly one job each; nothing else ever appeared.
    expected = {
        "fire_once": [
            run.first_fire["fire_once"],
            missed["fire_once"][-1],
            run.on_time["fire_once"],
        ],
        "skip": [run.first_fire["skip"], run.on_time["skip"]],
    }
    for p in POLICIES:
        got = [as_utc(j["scheduled_for"]) for j in run.final[p]]
        assert got == expected[p], (
            f"{p}: jobs for {[iso(t) for t in expected[p]]} were expected, got "
            f"{[(j['id'], iso(as_utc(j['scheduled_for']))) for j in run.final[p]]} {where}"
        )
        assert as_utc(run.final_schedules[p]["last_fire_at"]) == run.on_time[p]
        assert as_utc(run.final_schedules[p]["next_fire_at"]) == run.on_time[p] + MINUTE
    every = [j for p in POLICIES for j in run.final[p]]
    assert _pairs_twice(every) == [], where
    schedule_of = {run.jobconfig[p]: run.schedule[p] for p in POLICIES}
    assert _bad_jobs(every, run.owner, lambda j: schedule_of[j["jobconfig_id"]]) == []
    assert _not_finished(every) == [], where
    print(
        f"restart: down {run.down_seconds:.0f} s ({iso(run.stopped_at)}..{iso(run.restarted_at)}); "
        f"fire_once caught up {len(missed['fire_once'])} missed firings "
        f"({iso(missed['fire_once'][0])}..{iso(missed['fire_once'][-1])}) with job {job['id']} "
        f"for {iso(as_utc(job['scheduled_for']))}; skip dropped {len(missed['skip'])}; "
        f"on time again at {iso(run.on_time['fire_once'])}"
    )


def _check_replicas(run: ReplicaRun) -> None:
    where = f"(database read after the stop; server logs under {run.root})"
    assert run.window_end is not None and run.created_at is not None
    assert len(run.first_fire) == JOBCONFIGS_PER_DB * SCHEDULES_PER_JOBCONFIG

    # Every job is a proper firing of one of our schedules; no pair twice.
    strangers = [
        j["id"] for j in run.jobs if run.jobconfig_of.get(j["schedule_id"]) != j["jobconfig_id"]
    ]
    assert not strangers, (
        f"jobs of no schedule (of their jobconfig) of this test: {strangers[:30]} {where}"
    )
    bad = _bad_jobs(run.jobs, run.owner, lambda j: int(j["schedule_id"]))
    assert not bad, "\n".join(bad[:30])
    twice = _pairs_twice(run.jobs)
    assert not twice, f"{len(twice)} firing(s) produced several jobs {where}:\n" + "\n".join(
        twice[:30]
    )

    # Exactly one job for every schedule and every nominal minute of the window.
    held: dict[int, set[datetime]] = defaultdict(set)
    for j in run.jobs:
        held[j["schedule_id"]].add(as_utc(j["scheduled_for"]))
    missing: list[str] = []
    unexpected: list[str] = []
    after_window = 0
    firings = Counter[int]()
    for sid, first in sorted(run.first_fire.items()):
        want = set(minutes_between(first, run.window_end))
        firings[len(want)] += 1
        missing.extend(f"schedule {sid} at {iso(t)}" for t in sorted(want - held[sid]))
        for t in sorted(held[sid] - want):
            if t > run.window_end:
                after_window += 1  # fired while the replicas were being stopped
            else:
                unexpected.append(f"schedule {sid} at {iso(t)} (first fire {iso(first)})")
    per_minute = Counter(
        as_utc(j["scheduled_for"]) for j in run.jobs if as_utc(j["scheduled_for"]) <= run.window_end
    )
    summary = ", ".join(f"{iso(t)}: {n}" for t, n in sorted(per_minute.items()))
    assert not missing, (
        f"{len(missing)} firing(s) produced no job (jobs per minute: {summary}; "
        f"window settled before the stop: {run.settled}) {where}:\n" + "\n".join(missing[:30])
    )
    assert not unexpected, f"jobs outside the schedules' fire times {where}:\n" + "\n".join(
        unexpected[:30]
    )
    assert min(firings) >= REPLICA_FIRINGS, f"too short a window: firings per schedule {firings}"
    assert run.window_end - min(run.first_fire.values()) >= (REPLICA_FIRINGS - 1) * MINUTE

    # The stored next fire time follows the last firing (nothing lost at the stop).
    wrong_next = []
    for sid in run.first_fire:
        row = run.schedules[sid]
        last = max(held[sid])
        if as_utc(row["last_fire_at"]) != last or as_utc(row["next_fire_at"]) != last + MINUTE:
            wrong_next.append(
                f"schedule {sid}: last_fire_at {row['last_fire_at']}, next_fire_at "
                f"{row['next_fire_at']}, last job for {iso(last)}"
            )
    assert not wrong_next, "\n".join(wrong_next[:30])

    # Every job ran to FINISHED.
    not_done = _not_finished(run.jobs)
    assert not not_done, f"{len(not_done)} job(s) did not finish {where}:\n" + "\n".join(
        not_done[:30]
    )

    lateness = sorted(
        (as_utc(j["created_at"]) - as_utc(j["scheduled_for"])).total_seconds() for j in run.jobs
    )
    print(
        f"{run.replicas} replicas: {len(run.jobs)} jobs for {len(run.first_fire)} schedules, "
        f"firings per schedule {dict(firings)}, {after_window} after the window; "
        f"jobs fired per replica (from logs) {run.fired_per_replica}; "
        f"{run.workers_seen} worker(s) ran them; lateness p50 "
        f"{lateness[len(lateness) // 2]:.3f} s, max {lateness[-1]:.3f} s"
    )


@pytest.mark.pg
def test_two_replicas_fire_every_firing_exactly_once(scenarios: Scenarios) -> None:
    _check_replicas(scenarios.result("replicas2"))


@pytest.mark.pg
def test_three_replicas_fire_every_firing_exactly_once(scenarios: Scenarios) -> None:
    _check_replicas(scenarios.result("replicas3"))
