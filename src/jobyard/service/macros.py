"""Macro use cases: list, set, delete, import and export per level; resolution for a job.

Secure values are encrypted here, before the store sees them, and decrypted only in
:func:`jobyard.engine.jobmacros.resolve_for_job`, which the worker backend calls to build
the job's environment. Nothing else returns, logs or exports a secure value: listings show a
secure macro by name with value ``None``, previews show ``*****``.

Permissions: account macros are read by all and written by admins; user macros are
read and written by that user and admins (others get 404); template and jobconfig
macros follow the object's ``view`` and ``edit`` rights. A job's SESSION_ID writes no
macro at any level (403); what it reads is also bounded by the job's definers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jobyard.core.crypto import Keyring, associated_data
from jobyard.core.errors import Forbidden, InvalidInput, NotFound
from jobyard.core.macros import (
    MASK,
    MacroDef,
    MacroSources,
    ResolvedMacro,
    StoredMacro,
    layer_sources,
)
from jobyard.core.validation import check_macros
from jobyard.service import access, auditlog
from jobyard.service.context import Context, Principal
from jobyard.store.protocol import Store

#: Longest macro value accepted (bytes of UTF-8 are checked by the DTO as characters).
MAX_VALUE = 10_000


def keyring_for(ctx: Context) -> Keyring:
    """The keyring of this server's home (loaded once by its context, see
    :class:`~jobyard.core.crypto.Keyrings`)."""
    return ctx.keyrings.get(ctx.settings.home, ctx.settings.secret_key)


@dataclass(frozen=True, slots=True)
class Level:
    """Where macros are defined: a scope and the object id (0 for the account)."""

    scope: str
    scope_id: int = 0

    @property
    def label(self) -> str:
        """E.g. ``account`` or ``jobconfig 7``."""
        return self.scope if self.scope == "account" else f"{self.scope} {self.scope_id}"


ACCOUNT = Level("account", 0)


async def me(ctx: Context, principal: Principal) -> Level:
    """The caller's own user level (``NotFound`` for a token without a user record)."""
    user_id = principal.user_id
    if user_id is None:
        user_id = await ctx.store.macro_user_id(principal.name)
    if user_id is None:
        raise NotFound(
            f"the caller {principal.name!r} has no user record, hence no user macros",
            {"user": principal.name},
        )
    return Level("user", user_id)


def _own(principal: Principal, level: Level) -> bool:
    """Whether every principal of the caller (a bounded job token: its definers too) is
    an admin or the user of this user level."""
    return all(
        p.active and (p.is_admin or (level.scope == "user" and p.user_id == level.scope_id))
        for p in principal.everyone
    )


#: The access-policy resource of the levels that belong to an object.
_RESOURCE = {"template": "templates", "jobconfig": "jobconfigs"}


async def _check_object(ctx: Context, principal: Principal, level: Level, action: str) -> None:
    """Template and jobconfig macros follow the object's permissions (404 if hidden)."""
    resource = _RESOURCE.get(level.scope)
    if resource is None:
        return
    if resource == "templates":
        template = await ctx.store.template_get(level.scope_id)
        await access.require(ctx, principal, action, resource, template)
    else:
        jobconfig = await ctx.store.jobconfig_get(level.scope_id)
        await access.require(ctx, principal, action, resource, jobconfig)


async def _check_read(ctx: Context, principal: Principal, level: Level) -> None:
    if level.scope == "user" and not _own(principal, level):
        own_id = await ctx.store.macro_user_id(principal.name)
        if own_id != level.scope_id:
            raise NotFound(f"user {level.scope_id} does not exist", {"user_id": level.scope_id})
        if principal.bounded_by:  # a job token whose definers may not read them
            raise Forbidden(
                f"this job's SESSION_ID may not read the private macros of user "
                f"{principal.name!r}: someone else decided what the job runs"
            )
    await _check_object(ctx, principal, level, "view")


async def _check_write(ctx: Context, principal: Principal, level: Level) -> None:
    access.refuse_job_token(principal, "change macros")
    await _check_read(ctx, principal, level)
    if level.scope == "account" and not principal.is_admin:
        raise Forbidden("only admins may change account macros")
    await _check_object(ctx, principal, level, "edit")


async def _audit(
    ctx: Context,
    principal: Principal,
    verb: str,
    level: Level,
    details: dict[str, Any],
    remote_addr: str | None,
) -> None:
    """One ``macro.<verb>`` entry: the level and the macro NAMES, never a value."""
    where = {"level": level.scope, "level_id": level.scope_id}
    await auditlog.record(
        ctx, principal, f"macro.{verb}", level.scope, level.scope_id, where | details, remote_addr
    )


def _encrypt(ring: Keyring, level: Level, name: str, value: str) -> str:
    return ring.encrypt(value, associated_data(level.scope, level.scope_id, name))


def _check_value(name: str, value: str) -> None:
    check_macros({name: value}, "name")
    if len(value) > MAX_VALUE:
        raise InvalidInput(f"macro {name!r}: a value may hold {MAX_VALUE} characters")


async def list_level(ctx: Context, principal: Principal, level: Level) -> list[StoredMacro]:
    """A level's macros by name (secure values stay encrypted: the caller masks them)."""
    await _check_read(ctx, principal, level)
    return await ctx.store.macros_list(level.scope, level.scope_id)


async def set_macro(
    ctx: Context,
    principal: Principal,
    level: Level,
    name: str,
    value: str,
    *,
    secure: bool,
    remote_addr: str | None = None,
) -> StoredMacro:
    """Create or replace one macro; a secure one cannot become non-secure (422)."""
    await _check_write(ctx, principal, level)
    _check_value(name, value)
    stored = _encrypt(keyring_for(ctx), level, name, value) if secure else value
    items = [(name, stored, secure, False)]
    result = await ctx.store.macros_put(
        level.scope, level.scope_id, items, updated_by=principal.name
    )
    await _audit(ctx, principal, "set", level, {"name": name, "secure": secure}, remote_addr)
    return next(m for m in result if m.name == name)


async def delete_macro(
    ctx: Context,
    principal: Principal,
    level: Level,
    name: str,
    *,
    remote_addr: str | None = None,
) -> None:
    """Delete one macro of a level."""
    await _check_write(ctx, principal, level)
    await ctx.store.macro_delete(level.scope, level.scope_id, name, changed_by=principal.name)
    await _audit(ctx, principal, "delete", level, {"name": name}, remote_addr)


async def import_level(
    ctx: Context,
    principal: Principal,
    level: Level,
    defs: list[MacroDef],
    *,
    remote_addr: str | None = None,
) -> list[StoredMacro]:
    """Create or replace the file's macros in one transaction; others are left alone.

    A secure macro without a value (encrypted in the file, or exported by jobyard)
    is created with an empty value, or keeps its value if it already exists.
    """
    await _check_write(ctx, principal, level)
    ring: Keyring | None = None  # loaded for the first secure macro only
    items: list[tuple[str, str, bool, bool]] = []
    for d in defs:
        value = d.value or ""
        _check_value(d.name, value)
        if d.secure:
            ring = ring or keyring_for(ctx)
            items.append((d.name, _encrypt(ring, level, d.name, value), True, d.value is None))
        else:
            items.append((d.name, value, False, False))
    if not items:
        return await ctx.store.macros_list(level.scope, level.scope_id)
    stored = await ctx.store.macros_put(
        level.scope, level.scope_id, items, updated_by=principal.name
    )
    names = [d.name for d in defs]
    await _audit(ctx, principal, "import", level, {"names": names}, remote_addr)
    return stored


# -- resolution --------------------------------------------------------------------------


async def preview(
    ctx: Context, principal: Principal, jobconfig_id: int, user: str | None
) -> tuple[MacroSources, dict[str, ResolvedMacro]]:
    """What a job of this jobconfig submitted by ``user`` (default: the caller) would get.

    Secure values are ``*****``; another user's private macros only for admins.
    """
    jobconfig = await ctx.store.jobconfig_get(jobconfig_id)
    await access.require(ctx, principal, "view", "jobconfigs", jobconfig)
    name = user or principal.name
    if not _sees_user_level(principal, name):
        if name == principal.name:  # a bounded job token: its definers may not see them
            raise Forbidden(
                f"this job's SESSION_ID may not read the private macros of user {name!r}: "
                "someone else decided what the job runs"
            )
        raise NotFound(f"user {name!r} does not exist", {"user": name})
    sources = await ctx.store.macro_sources(jobconfig_id=jobconfig_id, user_name=name)
    return sources, layer_sources(sources, {}, lambda _level, _m: MASK)


async def job_record(ctx: Context, principal: Principal, job_id: int) -> dict[str, Any] | None:
    """The resolved macros kept on a job the caller may view (None before its start).

    Values from the user level are that user's private macros (the submitter's; for a
    scheduled job the owner's): only that user and admins see them, everyone else gets
    the name and level with ``value`` None, as for a secure macro.
    """
    job = await ctx.store.job_get(job_id)
    await access.require_job(ctx, principal, "view", job)
    record = job.resolved_macros
    if record is None or _sees_user_level(principal, job.submitted_by):
        return record
    return {
        name: ({**entry, "value": None} if entry.get("level") == "user" else entry)
        for name, entry in record.items()
    }


def _sees_user_level(principal: Principal, user_name: str | None) -> bool:
    """Whether the caller (and every principal bounding it) may read ``user_name``'s
    private macros: that user or an admin."""
    return all(
        p.active and (p.is_admin or (user_name is not None and p.name == user_name))
        for p in principal.everyone
    )


async def reencrypt_all(store: Store, ring: Keyring) -> int:
    """Re-encrypt every secure value with the ring's current key (key rotation)."""

    def transform(m: StoredMacro) -> str:
        aad = associated_data(m.scope, m.scope_id, m.name)
        return ring.encrypt(ring.decrypt(m.value, aad), aad)

    return await store.macros_reencrypt(transform)
