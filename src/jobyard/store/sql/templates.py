"""Templates: shared package, entry point and macros of jobconfigs."""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import case, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from jobyard.core.errors import Conflict, InvalidInput, NotFound
from jobyard.core.labels import stored_labels, validate_labels
from jobyard.core.models import JobConfig, Package, Page
from jobyard.core.retries import validate_policy
from jobyard.core.templates import DEFINITION_FIELDS, CloneResult, Template, TemplateSpec
from jobyard.store.schema import jobconfigs, macros, packages, templates
from jobyard.store.sql.base import (
    SqlBase,
    Tx,
    check_limit,
    decode_cursor,
    encode_cursor,
    jobconfig_from_row,
    package_from_row,
)

_SPEC_FIELDS = frozenset(f.name for f in dataclasses.fields(TemplateSpec))


class TemplatesMixin(SqlBase):
    """Templates: shared package, entry point and macros of jobconfigs."""

    async def template_insert(self, spec: TemplateSpec, *, owner: str | None = None) -> Template:
        """Create; ``Conflict`` if the name is taken, ``NotFound`` for an unknown package."""
        values = _validate({f: getattr(spec, f) for f in _SPEC_FIELDS})
        return await self._write(_template_insert, values, owner)

    async def template_get(self, template_id: int) -> Template:
        """Return a template or raise ``NotFound``."""
        return await self._read(read_template, template_id)

    async def template_get_by_name(self, name: str) -> Template:
        """Return a template by its unique name or raise ``NotFound``."""
        return await self._read(_template_get_by_name, name)

    async def template_update(
        self, template_id: int, changes: dict[str, Any], *, changed_by: str | None = None
    ) -> Template:
        """Apply field changes (keys are :class:`TemplateSpec` fields), bump updated_at.

        When what its jobconfigs run really changes (package, entry point, command),
        ``changed_by`` becomes its definer.
        """
        unknown = sorted(set(changes) - _SPEC_FIELDS)
        if unknown:
            raise InvalidInput(
                f"unknown template fields: {', '.join(unknown)}", {"fields": unknown}
            )
        return await self._write(
            _template_update, template_id, _validate(dict(changes)), changed_by
        )

    async def template_delete(self, template_id: int) -> None:
        """Delete a template and its macros; ``Conflict`` while a jobconfig names it."""
        await self._write(_template_delete, template_id)

    async def templates_list(self, *, cursor: str | None, limit: int) -> Page[Template]:
        """Ordered by id ascending, cursor-paginated."""
        after = decode_cursor(cursor)
        check_limit(limit)
        return await self._read(_templates_list, after, limit)

    async def template_jobconfigs(self, template_id: int) -> list[JobConfig]:
        """The jobconfigs naming this template, by id; ``NotFound`` for an unknown template."""
        return await self._read(_template_jobconfigs, template_id)

    async def package_get_by_sha256(self, sha256: str) -> Package | None:
        """The package with this content hash, if uploaded (template import resolves by it)."""
        return await self._read(_package_by_sha256, sha256)

    async def template_clone(
        self,
        template_id: int,
        *,
        name: str,
        owner: str | None,
        jobconfig_prefix: str | None = None,
    ) -> CloneResult:
        """Copy a template (and, with ``jobconfig_prefix``, its jobconfigs) in one transaction.

        Copied jobconfigs are named ``prefix + name`` and name the new template; their
        schedules are not copied. Non-secure macros of the copied objects are copied;
        secure ones are not (their names are reported). ``Conflict`` on any name clash.
        """
        _validate({"name": name})
        return await self._write(_template_clone, template_id, name, owner, jobconfig_prefix)


def _validate(values: dict[str, Any]) -> dict[str, Any]:
    if "name" in values:
        name = values["name"]
        if not isinstance(name, str) or not name.strip():
            raise InvalidInput("a template needs a non-empty name")
    validate_policy(values)
    if "labels" in values:
        values["labels"] = stored_labels(validate_labels(values["labels"]))
    if values.get("command") is not None:
        values["command"] = list(values["command"])
    if "description" in values and values["description"] is None:
        values["description"] = ""
    return values


def template_from_row(row: Any) -> Template:
    """Map a ``templates`` row (columns in :class:`Template` field order)."""
    return Template(*row)


def _not_found(template_id: int) -> NotFound:
    return NotFound(f"template {template_id} does not exist", {"template_id": template_id})


def _name_taken(name: str) -> Conflict:
    return Conflict(f"a template named {name!r} already exists", {"name": name})


def check_package(tx: Tx, package_id: int | None) -> None:
    """``NotFound`` for a package id that does not exist (None: nothing to check)."""
    if package_id is None:
        return
    if tx.conn.execute(select(packages.c.id).where(packages.c.id == package_id)).first() is None:
        raise NotFound(f"package {package_id} does not exist", {"package_id": package_id})


def read_template(tx: Tx, template_id: int) -> Template:
    """The template row, or ``NotFound``."""
    row = tx.conn.execute(select(templates).where(templates.c.id == template_id)).first()
    if row is None:
        raise _not_found(template_id)
    return template_from_row(row)


def check_template(tx: Tx, template_id: int | None) -> None:
    """``NotFound`` naming ``template_id`` when it names no template.

    On PostgreSQL the row is share-locked until commit, so a concurrent delete of the
    template either waits and then sees the new jobconfig, or wins first.
    """
    if template_id is None:
        return
    stmt = select(templates.c.id).where(templates.c.id == template_id)
    if tx.pg:
        stmt = stmt.with_for_update(read=True)
    if tx.conn.execute(stmt).first() is None:
        raise _not_found(template_id)


def _package_by_sha256(tx: Tx, sha256: str) -> Package | None:
    row = tx.conn.execute(select(packages).where(packages.c.sha256 == sha256)).first()
    return None if row is None else package_from_row(row)


def _template_insert(tx: Tx, values: dict[str, Any], owner: str | None) -> Template:
    check_package(tx, values.get("package_id"))
    if values.get("retries"):
        values = {**values, "retry_since": tx.now}  # only jobs ended from now on retry
    stmt = (
        insert(templates)
        .values(
            **values,
            owner=owner,
            created_at=tx.now,
            updated_at=tx.now,
            definition_changed_by=owner,
            definition_changed_at=tx.now,
        )
        .returning(*templates.c)
    )
    try:
        row = tx.conn.execute(stmt).one()
    except IntegrityError as exc:
        raise _name_taken(values["name"]) from exc
    return template_from_row(row)


def _template_get_by_name(tx: Tx, name: str) -> Template:
    row = tx.conn.execute(select(templates).where(templates.c.name == name)).first()
    if row is None:
        raise NotFound(f"template {name!r} does not exist", {"name": name})
    return template_from_row(row)


def _template_update(
    tx: Tx, template_id: int, changes: dict[str, Any], changed_by: str | None
) -> Template:
    if "package_id" in changes:
        check_package(tx, changes["package_id"])
    values = dict(changes)
    if any(k in changes for k in DEFINITION_FIELDS):
        current_stmt = select(templates).where(templates.c.id == template_id)
        if tx.pg:
            current_stmt = current_stmt.with_for_update()
        row = tx.conn.execute(current_stmt).first()
        if row is None:
            raise _not_found(template_id)
        current = template_from_row(row)
        if any(changes[k] != getattr(current, k) for k in DEFINITION_FIELDS if k in changes):
            values.update(definition_changed_by=changed_by, definition_changed_at=tx.now)
    if "retries" in changes:  # as for jobconfigs: turning retries on starts the clock
        values["retry_since"] = (
            case((templates.c.retries == 0, tx.now), else_=templates.c.retry_since)
            if changes["retries"]
            else None
        )
    stmt = (
        update(templates)
        .where(templates.c.id == template_id)
        .values(**values, updated_at=tx.now)
        .returning(*templates.c)
    )
    try:
        row = tx.conn.execute(stmt).first()
    except IntegrityError as exc:
        raise _name_taken(changes.get("name", "")) from exc
    if row is None:
        raise _not_found(template_id)
    return template_from_row(row)


def _template_delete(tx: Tx, template_id: int) -> None:
    stmt = select(templates.c.id).where(templates.c.id == template_id)
    if tx.pg:
        stmt = stmt.with_for_update()
    if tx.conn.execute(stmt).first() is None:
        raise _not_found(template_id)
    # The count only: the caller may not be allowed to see which jobconfigs they are.
    users = tx.conn.execute(
        select(func.count()).where(jobconfigs.c.template_id == template_id)
    ).scalar_one()
    if users:
        raise Conflict(
            f"template {template_id} is used by {users} jobconfig(s): point them elsewhere "
            "or delete them first",
            {"template_id": template_id, "jobconfigs": users},
        )
    tx.conn.execute(
        delete(macros).where(macros.c.scope == "template", macros.c.scope_id == template_id)
    )
    tx.conn.execute(delete(templates).where(templates.c.id == template_id))


def _templates_list(tx: Tx, after: int | None, limit: int) -> Page[Template]:
    stmt = select(templates).order_by(templates.c.id).limit(limit + 1)
    if after is not None:
        stmt = stmt.where(templates.c.id > after)
    items = [template_from_row(row) for row in tx.conn.execute(stmt)]
    if len(items) > limit:
        items = items[:limit]
        return Page(items, encode_cursor(items[-1].id))
    return Page(items, None)


def _template_jobconfigs(tx: Tx, template_id: int) -> list[JobConfig]:
    read_template(tx, template_id)
    rows = tx.conn.execute(
        select(jobconfigs).where(jobconfigs.c.template_id == template_id).order_by(jobconfigs.c.id)
    )
    return [jobconfig_from_row(row) for row in rows]


def _copy_macros(tx: Tx, scope: str, source_id: int, target_id: int) -> list[str]:
    """Copy the non-secure macros of one object to another; return the secure names skipped."""
    rows = tx.conn.execute(
        select(macros.c.name, macros.c.value, macros.c.secure)
        .where(macros.c.scope == scope, macros.c.scope_id == source_id)
        .order_by(macros.c.name)
    ).all()
    plain = [
        {
            "scope": scope,
            "scope_id": target_id,
            "name": r.name,
            "value": r.value,
            "secure": False,
            "updated_at": tx.now,
            "updated_by": None,
        }
        for r in rows
        if not r.secure
    ]
    if plain:
        tx.conn.execute(insert(macros), plain)
    return [r.name for r in rows if r.secure]


def _template_clone(
    tx: Tx, template_id: int, name: str, owner: str | None, prefix: str | None
) -> CloneResult:
    source = read_template(tx, template_id)
    values = {f: getattr(source, f) for f in _SPEC_FIELDS} | {"name": name}
    values["labels"] = stored_labels(source.labels)
    clone = _template_insert(tx, values, owner)
    skipped: dict[str, list[str]] = {}
    secure = _copy_macros(tx, "template", source.id, clone.id)
    if secure:
        skipped["template"] = secure
    copies: list[JobConfig] = []
    if prefix is not None:
        for jc in _template_jobconfigs(tx, template_id):
            row = {
                c.name: getattr(jc, c.name)
                for c in jobconfigs.c
                if c.name not in ("id", "created_at", "updated_at")
            }
            # The copy is the cloner's: they own it and are its definer.
            row.update(
                name=prefix + jc.name,
                template_id=clone.id,
                labels=stored_labels(jc.labels),
                owner=owner,
                definition_changed_by=owner,
                definition_changed_at=tx.now,
            )
            stmt = (
                insert(jobconfigs)
                .values(**row, created_at=tx.now, updated_at=tx.now)
                .returning(*jobconfigs.c)
            )
            try:
                copy = jobconfig_from_row(tx.conn.execute(stmt).one())
            except IntegrityError as exc:
                raise Conflict(
                    f"a jobconfig named {row['name']!r} already exists",
                    {"name": row["name"]},
                ) from exc
            secure = _copy_macros(tx, "jobconfig", jc.id, copy.id)
            if secure:
                skipped[copy.name] = secure
            copies.append(copy)
    return CloneResult(clone, copies, skipped)
