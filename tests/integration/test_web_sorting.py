"""The console's jobs list sorted by id pages through the whole history, both ways.

``sort=id`` (oldest first) must not be the newest page turned around: its first page
starts at the oldest job and its cursor leads to the next-oldest, as ``-id`` (newest
first) pages the other way.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

import httpx

from tests.integration.conftest import Env

PASSWORD = "sorting-pass-1"
API = "/api/v1"
JOBS = 60  # more than one page of 50


def _job_ids(html: str) -> list[int]:
    """The job numbers of the list's rows, in the order shown."""
    return [int(n) for n in re.findall(r'<td><a href="/jobs/(\d+)">#', html)]


def _next_url(html: str) -> str | None:
    found = re.search(r'<a href="([^"]+)" rel="next">', html)
    return None if found is None else unquote(found.group(1).replace("&amp;", "&"))


async def test_oldest_first_pages_over_the_whole_history(env: Env) -> None:
    r = await env.client.post(
        f"{API}/users", json={"name": "sorter", "role": "admin", "password": PASSWORD}
    )
    assert r.status_code == 201, r.text
    r = await env.client.post(
        f"{API}/jobconfigs", json={"name": "sorted", "command": ["/bin/sh", "-c", "true"]}
    )
    assert r.status_code == 201, r.text
    jc = int(r.json()["id"])
    made = []
    for _ in range(JOBS):  # held: they stay WAITING, no worker involved
        r = await env.client.post(f"{API}/jobconfigs/{jc}/run", json={"hold": True})
        assert r.status_code in (200, 201, 202), r.text
        made.append(int(r.json()["id"]))

    async with httpx.AsyncClient(base_url=env.url, timeout=30, headers={"Origin": env.url}) as c:
        r = await c.post("/login", data={"name": "sorter", "password": PASSWORD})
        assert r.status_code == 303, r.text

        first = await c.get("/jobs", params={"sort": "id", "jobconfig": str(jc)})
        assert first.status_code == 200, first.text
        assert _job_ids(first.text) == made[:50]
        assert "page after page" in first.text
        later = _next_url(first.text)
        assert later is not None and "sort=id" in later and "Later jobs" in first.text
        second = await c.get(later)
        assert second.status_code == 200, second.text
        assert _job_ids(second.text) == made[50:]
        assert _next_url(second.text) is None
        assert ">Oldest</a>" in second.text

        # Newest first, the default, pages the other way over the same jobs.
        newest = await c.get("/jobs", params={"sort": "-id", "jobconfig": str(jc)})
        assert _job_ids(newest.text) == made[::-1][:50]
        older = _next_url(newest.text)
        assert older is not None
        assert _job_ids((await c.get(older)).text) == made[::-1][50:]

        # Sorting by run time orders the page shown only, and says so.
        by_duration = await c.get("/jobs", params={"sort": "-duration", "jobconfig": str(jc)})
        assert set(_job_ids(by_duration.text)) == set(made[::-1][:50])
        assert "this page&#39;s jobs only" in by_duration.text


async def test_a_jobconfigs_jobs_tab_is_the_list_filtered_by_it(env: Env) -> None:
    for name, role in (("tabber", "admin"), ("outsider", "user")):
        r = await env.client.post(
            f"{API}/users", json={"name": name, "role": role, "password": PASSWORD}
        )
        assert r.status_code == 201, r.text
    r = await env.client.post(
        f"{API}/jobconfigs", json={"name": "tabbed-cfg", "command": ["/bin/sh", "-c", "true"]}
    )
    jc = int(r.json()["id"])
    tab = f'<a href="/jobs?jobconfig={jc}"'
    for who in ("tabber", "outsider"):
        async with httpx.AsyncClient(
            base_url=env.url, timeout=30, headers={"Origin": env.url}
        ) as c:
            r = await c.post("/login", data={"name": who, "password": PASSWORD})
            assert r.status_code == 303, r.text
            for path in ("", "/macros", "/schedules", "/yaml"):
                page = await c.get(f"/jobconfigs/{jc}{path}")
                if who == "outsider":  # may not view it: the 404 of a missing one
                    assert page.status_code == 404
                    continue
                assert page.status_code == 200, (path, page.text)
                assert f"{tab}>Jobs</a>" in page.text, path
            listed = await c.get("/jobs", params={"jobconfig": str(jc)})
            assert listed.status_code == 200
            if who == "tabber":
                assert f'{tab} aria-current="page">Jobs</a>' in listed.text
                assert 'aria-label="Jobconfig tabbed-cfg"' in listed.text
            else:  # no tab bar naming a jobconfig the user may not view
                assert "tabbed-cfg" not in listed.text and tab not in listed.text
