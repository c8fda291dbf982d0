"""Macros of the account, template, user and jobconfig levels (secure ones encrypted).

Rows of the ``macros`` table hold the account, template and user levels (plain and
secure) and the *secure* macros of jobconfigs; a jobconfig's plain macros stay in its
``macros`` JSON field (what ``apply``/``export`` have always used). A name is either
plain or secure on a jobconfig, never both: setting it secure removes it from the
field. Secure values arrive here already encrypted; the store never sees a clear one.

A write that changes a jobconfig's or a template's macros changes what its jobs run:
the writer becomes the object's definer (``definition_changed_by``) in the same
transaction. Plain values count when they really change; a secure write or delete
always counts (its old value cannot be compared, and a secret steers a job as much as
a plain value does).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from jobyard.core.errors import Conflict, InvalidInput, NotFound
from jobyard.core.jobs import JobStatus
from jobyard.core.macros import SCOPES, MacroSources, StoredMacro
from jobyard.core.users import User
from jobyard.store.schema import jobconfigs, jobs, macros, templates, users
from jobyard.store.sql.base import SqlBase, Tx, status_is
from jobyard.store.sql.transitions import explain_miss

#: The levels whose macros decide what a job runs, and the table recording the definer.
_DEFINED: dict[str, Any] = {"jobconfig": jobconfigs, "template": templates}

#: ``(name, stored value, secure, only_if_new)``: with ``only_if_new`` an existing
#: secure macro keeps its value (imports of secure names without a value).
MacroWrite = tuple[str, str, bool, bool]

#: The columns of a macro row, in :class:`StoredMacro` field order.
MACRO_COLUMNS = (
    macros.c.scope,
    macros.c.scope_id,
    macros.c.name,
    macros.c.value,
    macros.c.secure,
    macros.c.updated_at,
    macros.c.updated_by,
)


def _row(row: Sequence[Any]) -> StoredMacro:
    return StoredMacro(*row)


def _demote_refused(name: str) -> InvalidInput:
    return InvalidInput(
        f"macro {name!r} is secure and cannot be made non-secure: delete it and create it again",
        {"macro": name},
    )


class MacrosMixin(SqlBase):
    """Macros of the account, template, user and jobconfig levels (secure ones encrypted)."""

    async def macros_list(self, scope: str, scope_id: int) -> list[StoredMacro]:
        """A level's macros by name (a jobconfig's plain ones from its field); ``NotFound``."""
        return await self._read(_macros_list, scope, scope_id)

    async def macros_put(
        self, scope: str, scope_id: int, items: list[MacroWrite], *, updated_by: str | None
    ) -> list[StoredMacro]:
        """Create or replace macros of one level in one transaction; returns the level.

        ``InvalidInput`` for a secure macro given as non-secure (delete and re-create).
        """
        return await self._write(_macros_put, scope, scope_id, items, updated_by)

    async def macro_delete(
        self, scope: str, scope_id: int, name: str, *, changed_by: str | None = None
    ) -> None:
        """Delete one macro of a level; ``NotFound`` if it has no such macro.

        On a jobconfig or template, ``changed_by`` becomes its definer.
        """
        await self._write(_macro_delete, scope, scope_id, name, changed_by)

    async def macros_delete_of(self, scope: str, scope_id: int) -> int:
        """Delete every table row of one object (its jobconfig, template or user is gone)."""
        return await self._write(_macros_delete_of, scope, scope_id)

    async def macro_sources(
        self,
        *,
        jobconfig_id: int | None,
        template_id: int | None = None,
        user_name: str | None = None,
    ) -> MacroSources:
        """Every level's macros for a job of ``jobconfig_id`` (None: ad-hoc) in one read.

        ``template_id``/``user_name`` default to the jobconfig's template and owner.
        """
        return await self._read(_macro_sources, jobconfig_id, template_id, user_name)

    async def job_initialize(
        self,
        job_id: int,
        *,
        worker_id: str,
        resolved: dict[str, Any],
        user_name: str | None,
        token_hash: str | None,
    ) -> User | None:
        """One write when a worker prepares a job: its session token and resolved macros.

        Guarded like a status write: only while the job is INITIALIZING and held by
        ``worker_id``; otherwise nothing is written and ``Conflict`` (``NotFound`` for an
        unknown job) says why. The token (when ``user_name`` and ``token_hash`` are
        given) is stored only if that user exists and is active; the macro record only if
        the job may run (no user, or an active one). Returns the user (None: no such
        user / none given).
        """
        return await self._write(
            _job_initialize, job_id, worker_id, resolved, user_name, token_hash
        )

    async def macros_reencrypt(self, transform: Callable[[StoredMacro], str]) -> int:
        """Rewrite every secure value as ``transform(macro)`` in one transaction; the count."""
        return await self._write(_macros_reencrypt, transform)

    async def macro_user_id(self, name: str) -> int | None:
        """The id of the user called ``name``, if any (user macros are keyed by id)."""
        return await self._read(_user_id, name)


def _check_scope(tx: Tx, scope: str, scope_id: int) -> None:
    if scope not in SCOPES:
        raise InvalidInput(f"unknown macro level {scope!r}", {"scope": scope})
    table: Any = {"template": templates, "user": users, "jobconfig": jobconfigs}.get(scope)
    if table is None:
        if scope_id != 0:
            raise InvalidInput("the account level has scope id 0", {"scope_id": scope_id})
        return
    if tx.conn.execute(select(table.c.id).where(table.c.id == scope_id)).first() is None:
        raise NotFound(f"{scope} {scope_id} does not exist", {f"{scope}_id": scope_id})


def _level_rows(tx: Tx, scope: str, scope_id: int) -> list[StoredMacro]:
    stmt = (
        select(*MACRO_COLUMNS)
        .where(macros.c.scope == scope, macros.c.scope_id == scope_id)
        .order_by(macros.c.name)
    )
    return [_row(r) for r in tx.conn.execute(stmt)]


def _jobconfig_field(tx: Tx, jobconfig_id: int) -> tuple[dict[str, str], Any]:
    row = tx.conn.execute(
        select(jobconfigs.c.macros, jobconfigs.c.updated_at).where(jobconfigs.c.id == jobconfig_id)
    ).first()
    if row is None:
        raise NotFound(f"jobconfig {jobconfig_id} does not exist", {"jobconfig_id": jobconfig_id})
    return dict(row[0] or {}), row[1]


def _macros_list(tx: Tx, scope: str, scope_id: int) -> list[StoredMacro]:
    _check_scope(tx, scope, scope_id)
    rows = _level_rows(tx, scope, scope_id)
    if scope != "jobconfig":
        return rows
    plain, updated_at = _jobconfig_field(tx, scope_id)
    secure_names = {m.name for m in rows}
    rows += [
        StoredMacro("jobconfig", scope_id, name, value, False, updated_at, None)
        for name, value in plain.items()
        if name not in secure_names
    ]
    return sorted(rows, key=lambda m: m.name)


def _macros_put(
    tx: Tx, scope: str, scope_id: int, items: list[MacroWrite], updated_by: str | None
) -> list[StoredMacro]:
    _check_scope(tx, scope, scope_id)
    existing = {m.name: m for m in _level_rows(tx, scope, scope_id)}
    plain: dict[str, str] | None = None
    if scope == "jobconfig":
        plain = _jobconfig_field(tx, scope_id)[0]
    field_changed = False
    defining = False
    for name, value, secure, only_if_new in items:
        old = existing.get(name)
        if old is not None and old.secure and not secure:
            raise _demote_refused(name)
        if plain is not None and not secure:
            defining = defining or plain.get(name) != value
            plain[name] = value
            field_changed = True
            continue
        if plain is not None and name in plain:
            del plain[name]  # a jobconfig name is plain or secure, never both
            field_changed = True
            defining = True
        if old is not None and only_if_new:
            continue
        defining = defining or secure or old is None or old.value != value
        values = {"value": value, "secure": secure, "updated_at": tx.now, "updated_by": updated_by}
        if old is None:
            try:  # PostgreSQL: a concurrent insert of the name (SQLite holds the write lock)
                tx.conn.execute(
                    insert(macros).values(scope=scope, scope_id=scope_id, name=name, **values)
                )
            except IntegrityError:
                raise Conflict(
                    f"macro {name!r} was created at the same time; try again", {"macro": name}
                ) from None
        else:
            tx.conn.execute(
                update(macros)
                .where(
                    macros.c.scope == scope, macros.c.scope_id == scope_id, macros.c.name == name
                )
                .values(**values)
            )
    if plain is not None and field_changed:
        tx.conn.execute(
            update(jobconfigs)
            .where(jobconfigs.c.id == scope_id)
            .values(macros=plain, updated_at=tx.now)
        )
    if defining:
        _mark_defined(tx, scope, scope_id, updated_by)
    return _macros_list(tx, scope, scope_id)


def _mark_defined(tx: Tx, scope: str, scope_id: int, changed_by: str | None) -> None:
    """Record ``changed_by`` as the definer of a jobconfig or template whose macros changed."""
    table = _DEFINED.get(scope)
    if table is not None:
        tx.conn.execute(
            update(table)
            .where(table.c.id == scope_id)
            .values(definition_changed_by=changed_by, definition_changed_at=tx.now)
        )


def _macro_delete(tx: Tx, scope: str, scope_id: int, name: str, changed_by: str | None) -> None:
    _check_scope(tx, scope, scope_id)
    gone = tx.conn.execute(
        delete(macros).where(
            macros.c.scope == scope, macros.c.scope_id == scope_id, macros.c.name == name
        )
    ).rowcount
    if scope == "jobconfig":
        plain = _jobconfig_field(tx, scope_id)[0]
        if name in plain:
            del plain[name]
            tx.conn.execute(
                update(jobconfigs)
                .where(jobconfigs.c.id == scope_id)
                .values(macros=plain, updated_at=tx.now)
            )
            gone += 1
    if not gone:
        raise NotFound(f"{scope} macro {name!r} does not exist", {"macro": name})
    _mark_defined(tx, scope, scope_id, changed_by)


def delete_macros_of(tx: Tx, scope: str, scope_id: int) -> int:
    """Delete every macro of one object, inside the caller's transaction (object deletion)."""
    return _macros_delete_of(tx, scope, scope_id)


def _macros_delete_of(tx: Tx, scope: str, scope_id: int) -> int:
    result = tx.conn.execute(
        delete(macros).where(macros.c.scope == scope, macros.c.scope_id == scope_id)
    )
    return int(result.rowcount or 0)


def _user_id(tx: Tx, name: str) -> int | None:
    row = tx.conn.execute(select(users.c.id).where(users.c.name == name)).first()
    return None if row is None else int(row[0])


def _macro_sources(
    tx: Tx, jobconfig_id: int | None, template_id: int | None, user_name: str | None
) -> MacroSources:
    plain: dict[str, str] = {}
    secure: list[StoredMacro] = []
    if jobconfig_id is not None:
        row = tx.conn.execute(
            select(jobconfigs.c.macros, jobconfigs.c.template_id, jobconfigs.c.owner).where(
                jobconfigs.c.id == jobconfig_id
            )
        ).first()
        if row is not None:
            plain = dict(row[0] or {})
            template_id = template_id if template_id is not None else row[1]
            user_name = user_name if user_name is not None else row[2]
            secure = [m for m in _level_rows(tx, "jobconfig", jobconfig_id) if m.secure]
    user_rows: list[StoredMacro] = []
    if user_name is not None:
        user_id = _user_id(tx, user_name)
        if user_id is not None:
            user_rows = _level_rows(tx, "user", user_id)
    return MacroSources(
        account=_level_rows(tx, "account", 0),
        template=_level_rows(tx, "template", template_id) if template_id is not None else [],
        user=user_rows,
        jobconfig_plain=plain,
        jobconfig_secure=secure,
        template_id=template_id,
        user_name=user_name,
    )


def _job_initialize(
    tx: Tx,
    job_id: int,
    worker_id: str,
    resolved: dict[str, Any],
    user_name: str | None,
    token_hash: str | None,
) -> User | None:
    from jobyard.store.sql.users import _session_token_create

    user = None
    if user_name and token_hash:
        user = _session_token_create(tx, job_id, user_name, token_hash)
    # The guarded UPDATE runs whether or not the record is written, so a job that is no
    # longer this worker's refuses the whole write (the token above is rolled back).
    record = resolved if user is None or user.active else jobs.c.resolved_macros
    held = (
        (jobs.c.id == job_id) & status_is(JobStatus.INITIALIZING) & (jobs.c.worker_id == worker_id)
    )
    if not tx.conn.execute(update(jobs).where(held).values(resolved_macros=record)).rowcount:
        raise explain_miss(tx, job_id, "record its initialization", worker_id=worker_id)
    return user


def _macros_reencrypt(tx: Tx, transform: Callable[[StoredMacro], str]) -> int:
    stmt = select(macros.c.id, *MACRO_COLUMNS).where(macros.c.secure.is_(True))
    if tx.pg:
        stmt = stmt.with_for_update()
    count = 0
    for row in tx.conn.execute(stmt).all():
        macro = _row(row[1:])
        tx.conn.execute(update(macros).where(macros.c.id == row[0]).values(value=transform(macro)))
        count += 1
    return count
