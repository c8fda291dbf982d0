"""The status model data matches SPEC §2 exactly."""

from __future__ import annotations

from jobyard.core.jobs import (
    ABORTABLE,
    ACTIVE,
    CANCELLABLE,
    INITIAL,
    TERMINAL,
    TRANSITIONS,
    JobStatus,
    can_move,
    sources_of,
)

S = JobStatus
SPEC_EDGES = {
    (S.WAITING, S.SEQUENCED), (S.WAITING, S.CANCELLED),
    (S.SEQUENCED, S.QUEUED), (S.SEQUENCED, S.CANCELLED),
    (S.QUEUED, S.INITIALIZING), (S.QUEUED, S.CANCELLED),
    (S.INITIALIZING, S.RUNNING), (S.INITIALIZING, S.FAILED),
    (S.RUNNING, S.FINISHED), (S.RUNNING, S.ERROR), (S.RUNNING, S.FAILED),
}  # fmt: skip


def test_transitions_are_exactly_the_spec() -> None:
    edges = {(a, b) for a, targets in TRANSITIONS.items() for b in targets}
    assert edges == SPEC_EDGES
    assert set(TRANSITIONS) == set(JobStatus)


def test_derived_sets() -> None:
    assert {S.WAITING, S.SEQUENCED} == INITIAL
    assert {S.CANCELLED, S.FINISHED, S.ERROR, S.FAILED} == TERMINAL
    assert {S.WAITING, S.SEQUENCED, S.QUEUED} == CANCELLABLE
    assert {S.INITIALIZING, S.RUNNING} == ABORTABLE
    assert {S.QUEUED, S.INITIALIZING, S.RUNNING} == ACTIVE
    assert sources_of(S.FAILED) == {S.INITIALIZING, S.RUNNING}
    assert sources_of(S.SEQUENCED) == {S.WAITING}
    assert not sources_of(S.WAITING)
    for a in JobStatus:
        for b in JobStatus:
            assert can_move(a, b) == ((a, b) in SPEC_EDGES)
