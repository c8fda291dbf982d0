"""A whole apply in one transaction: the writes of a document, committed together or not.

The writes run through the same transaction bodies as the single-object methods (so
every check those make in the database holds: names taken, packages, templates and
jobconfigs that exist, a schedule's version), in the order given. A refused write
raises :class:`~jobyard.core.applywrites.WriteRefused` and the transaction rolls back.

An :class:`~jobyard.core.applywrites.Expect` in the list writes nothing: it refuses the
list (``Stale``) when an object the plan was made from changed since it was read, so a
plan never lands on rows another apply has changed meanwhile.

Lock order on PostgreSQL, taken before the first write: the templates the writes change
or name, then the schedules of the jobconfigs they change, then those jobconfigs, each
set by id. That is the order the other transactions follow (a jobconfig write locks its
template before its row; firing locks schedules, then jobconfigs, then jobs), so two
applies, or an apply and the scheduler, wait for each other instead of deadlocking.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from jobyard.core.access import AuditNote
from jobyard.core.applywrites import (
    ApplyWrite,
    Expect,
    JobConfigWrite,
    Ref,
    ScheduleDelete,
    ScheduleWrite,
    Stale,
    TemplateWrite,
    WriteRefused,
)
from jobyard.core.errors import InvalidInput, JobyardError, NotFound
from jobyard.store.schema import jobconfigs, schedules, templates
from jobyard.store.sql.access import audit_note_insert
from jobyard.store.sql.base import SqlBase, Tx
from jobyard.store.sql.jobconfigs import _jobconfig_insert, _jobconfig_update
from jobyard.store.sql.jobconfigs import _validate as jobconfig_values
from jobyard.store.sql.schedules import _schedule_delete, _schedule_insert, _schedule_replace
from jobyard.store.sql.templates import _template_insert, _template_update
from jobyard.store.sql.templates import _validate as template_values
from jobyard.store.sql.transitions import lock_jobconfigs


class ApplyMixin(SqlBase):
    """:meth:`apply_writes`: the store call behind a real ``POST /apply``."""

    async def apply_writes(self, writes: Sequence[ApplyWrite]) -> list[int | None]:
        """Run ``writes`` in order in ONE transaction (see the module docstring)."""
        return await self._write(_apply, list(writes))


def _apply(tx: Tx, writes: list[ApplyWrite]) -> list[int | None]:
    if tx.pg:
        _lock(tx, writes)
    ids: list[int | None] = []
    for index, write in enumerate(writes):
        try:
            written = _run(tx, write, ids)
        except JobyardError as exc:
            raise WriteRefused(index, exc) from exc
        ids.append(written)
        note = None if isinstance(write, Expect) else write.audit
        if note is not None and written is not None:
            audit_note_insert(tx, _resolved(note, ids), written)
    return ids


def _lock(tx: Tx, writes: list[ApplyWrite]) -> None:
    """Lock what the writes change, in the fixed order of the module docstring."""
    template_ids: set[int] = set()
    jobconfig_ids: set[int] = set()
    for w in writes:
        if isinstance(w, TemplateWrite) and w.template_id is not None:
            template_ids.add(w.template_id)
        elif isinstance(w, JobConfigWrite):
            if isinstance(w.template, int):
                template_ids.add(w.template)
            if w.jobconfig_id is not None:
                jobconfig_ids.add(w.jobconfig_id)
        elif isinstance(w, ScheduleWrite) and isinstance(w.jobconfig, int):
            jobconfig_ids.add(w.jobconfig)
        elif isinstance(w, ScheduleDelete):
            jobconfig_ids.add(w.jobconfig_id)
        elif isinstance(w, Expect):
            (template_ids if w.kind == "template" else jobconfig_ids).add(w.object_id)
    if template_ids:
        tx.conn.execute(
            select(templates.c.id)
            .where(templates.c.id.in_(sorted(template_ids)))
            .order_by(templates.c.id)
            .with_for_update()
        ).all()
    if jobconfig_ids:
        tx.conn.execute(
            select(schedules.c.id)
            .where(schedules.c.jobconfig_id.in_(sorted(jobconfig_ids)))
            .order_by(schedules.c.id)
            .with_for_update()
        ).all()
        lock_jobconfigs(tx, jobconfig_ids)


def _id(value: int | Ref, ids: list[int | None]) -> int:
    """An id given, or the id written by an earlier write of the list."""
    if isinstance(value, int):
        return value
    written = ids[value.index] if 0 <= value.index < len(ids) else None
    if written is None:
        raise InvalidInput(f"write {value.index} has written nothing to refer to yet")
    return written


def _resolved(note: AuditNote, ids: list[int | None]) -> AuditNote:
    """The note with each :class:`Ref` among its details replaced by the id it names."""
    if not note.details or not any(isinstance(v, Ref) for v in note.details.values()):
        return note
    details = {k: _id(v, ids) if isinstance(v, Ref) else v for k, v in note.details.items()}
    return dataclasses.replace(note, details=details)


def _run(tx: Tx, write: ApplyWrite, ids: list[int | None]) -> int | None:
    if isinstance(write, TemplateWrite):
        values = template_values(dataclasses.asdict(write.spec))
        if write.template_id is None:
            return _template_insert(tx, values, write.by).id
        return _template_update(tx, write.template_id, values, write.by).id
    if isinstance(write, JobConfigWrite):
        changes: dict[str, Any] = jobconfig_values(dataclasses.asdict(write.spec))
        changes["template_id"] = None if write.template is None else _id(write.template, ids)
        if write.jobconfig_id is None:
            changes.update(owner=write.by, definition_changed_by=write.by)
            return _jobconfig_insert(tx, changes).id
        return _jobconfig_update(tx, write.jobconfig_id, changes, write.by).id
    if isinstance(write, ScheduleWrite):
        jobconfig_id = _id(write.jobconfig, ids)
        if write.schedule_id is None:
            return _schedule_insert(tx, jobconfig_id, write.spec, write.next_fire_at, write.by).id
        return _schedule_replace(
            tx,
            jobconfig_id,
            write.schedule_id,
            write.spec,
            write.next_fire_at,
            write.expected_version,
            write.by,
        ).id
    if isinstance(write, Expect):
        _expect(tx, write)
        return None
    try:
        _schedule_delete(tx, write.jobconfig_id, write.schedule_id)
    except NotFound:
        return None  # already gone is what was wanted
    return write.schedule_id


def _expect(tx: Tx, expect: Expect) -> None:
    """``Stale`` unless the object (and its schedules) are as the plan read them."""
    table = templates if expect.kind == "template" else jobconfigs
    row = tx.conn.execute(select(table.c.updated_at).where(table.c.id == expect.object_id)).first()
    same = row is not None and row.updated_at == expect.updated_at
    if same and expect.schedules is not None:
        found = tx.conn.execute(
            select(schedules.c.id, schedules.c.version)
            .where(schedules.c.jobconfig_id == expect.object_id)
            .order_by(schedules.c.id)
        ).all()
        same = tuple((r.id, r.version) for r in found) == expect.schedules
    if not same:
        raise Stale(
            f"the {expect.kind} changed while this apply was planned: apply again",
            {"kind": expect.kind},
        )
