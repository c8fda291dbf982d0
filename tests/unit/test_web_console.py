"""The console's pure parts: which paths it owns, ``next=``, the cookie format, the chart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from jobyard.core.stats import Summary
from jobyard.service.stats import BucketStats
from jobyard.web.chart import HEIGHT, bars
from jobyard.web.paths import is_console_path, safe_next
from jobyard.web.render import duration, time_tag
from jobyard.web.session import Session


@pytest.mark.parametrize(
    "path",
    ["/", "/login", "/logout", "/jobs", "/jobs/7", "/jobconfigs", "/jobconfigs/3", "/static/x.css"],
)
def test_console_paths(path: str) -> None:
    assert is_console_path(path)


@pytest.mark.parametrize(
    "path", ["/api/v1/jobs", "/metrics", "/healthz", "/docs", "/jobsx", "/login/x", "/static"]
)
def test_api_paths_are_not_the_consoles(path: str) -> None:
    assert not is_console_path(path)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/jobs?status=ERROR", "/jobs?status=ERROR"),
        ("/jobs/3", "/jobs/3"),
        (None, "/"),
        ("", "/"),
        ("jobs", "/"),
        ("//evil.example", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("javascript:alert(1)", "/"),
        ("/x\r\nSet-Cookie: a=b", "/"),
        ("/x\x7f", "/"),
        ("/" + "a" * 3000, "/"),
    ],
)
def test_next_is_a_local_path_or_home(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


def test_the_cookie_round_trips_and_rejects_anything_else() -> None:
    session = Session("jy_" + "a" * 43, "jy_" + "b" * 43, "c" * 43)
    assert Session.decode(session.encode()) == session
    for bad in (
        None,
        "",
        "jy_" + "a" * 43,
        session.encode() + ".extra",
        session.encode().replace("c", "<", 1),
        "jy_a.jy_b.c",  # parts too short
        "x" * 200 + ".b" * 2,
    ):
        assert Session.decode(bad) is None, bad


def test_the_chart_scales_to_the_busiest_hour() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    busy = Summary(counts={"FINISHED": 6, "ERROR": 2})
    chart = bars(
        [
            BucketStats(start, Summary()),
            BucketStats(start + timedelta(hours=1), busy),
        ]
    )
    assert chart.peak == 8
    empty, full = chart.bars
    assert empty.total_height == 0 and empty.failed_height == 0
    assert full.total == 8 and full.failed == 2
    assert full.total_height == HEIGHT - 4
    assert full.failed_height == pytest.approx((HEIGHT - 4) / 4, abs=0.01)
    assert bars([]).bars == []


def test_times_and_durations_for_people() -> None:
    tag = time_tag(datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC))
    assert tag == (
        '<time datetime="2026-03-04T05:06:07Z" title="2026-03-04 05:06:07 UTC">'
        "2026-03-04 05:06:07 UTC</time>"
    )
    assert time_tag(None) == "&mdash;"
    assert [duration(s) for s in (None, 3, 65, 7322, 90000)] == [
        "—",
        "3 s",
        "1 min 05 s",
        "2 h 02 min",
        "1 d 1 h",
    ]
