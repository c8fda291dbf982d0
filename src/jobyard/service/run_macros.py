"""Run-time macros: what a caller may hand a job when it submits it.

The ``macros`` of a run (``POST /jobconfigs/{id}/run``, later hooks; a rerun keeps the
old job's values) override every other level, so they decide what the job's program
sees. Whoever may only *execute* a jobconfig must not be able to steer it beyond what
its editors allowed:

In this order (the first refusal answers):

* caps on count and total bytes (settings ``run_macros_max_count`` and
  ``run_macros_max_bytes``), for everyone;
* names that steer loaders and interpreters (:data:`jobyard.core.macros.LOADER_MACROS`,
  ``LD_*``...) are refused for everyone: an editor sets them on the jobconfig;
* a name that is secure at any level the job would get (account, template, the
  submitter's user level, jobconfig) is refused: overriding it would replace the
  secret, and the value would sit in clear on the job record. The answer names the
  level where it can be changed;
* a caller with only ``execute`` may set only the jobconfig's ``parameters``; one who
  may ``edit`` it (owner, admin) may set any other name.

A schedule's macros are not run-time macros: they are set by editors, like the
jobconfig's own. Every check here applies to job tokens (``SESSION_ID``) as well.
"""

from __future__ import annotations

from collections.abc import Mapping

from jobyard.core.errors import InvalidInput
from jobyard.core.macros import (
    MacroSources,
    StoredMacro,
    check_no_loader_names,
    check_run_macro_limits,
)
from jobyard.core.models import JobConfig
from jobyard.core.validation import check_macros
from jobyard.service import access
from jobyard.service.context import Context, Principal


async def check(
    ctx: Context,
    principal: Principal,
    macros: Mapping[str, str],
    *,
    jobconfig: JobConfig | None,
    submitter: str | None,
    parameters_only: bool = True,
) -> None:
    """Refuse (422 saying what to fix) run-time ``macros`` this caller may not give.

    ``jobconfig`` None: an ad-hoc job (its submitter chose the program: no parameter
    rule). ``submitter``: whose user level the job gets. ``parameters_only`` False
    skips the parameter rule (a rerun repeats values that were accepted before).
    """
    if not macros:
        return
    settings = ctx.settings
    check_run_macro_limits(
        macros, max_count=settings.run_macros_max_count, max_bytes=settings.run_macros_max_bytes
    )
    check_macros(macros)
    if jobconfig is None:
        check_no_loader_names(macros, "a jobconfig")
    else:
        check_no_loader_names(macros, f"jobconfig {jobconfig.id}")
    sources = await ctx.store.macro_sources(
        jobconfig_id=None if jobconfig is None else jobconfig.id,
        template_id=None if jobconfig is None else jobconfig.template_id,
        user_name=submitter,
    )
    _check_secure(macros, sources, jobconfig)
    if jobconfig is not None and parameters_only:
        await _check_parameters(ctx, principal, macros, jobconfig)


async def _check_parameters(
    ctx: Context, principal: Principal, macros: Mapping[str, str], jobconfig: JobConfig
) -> None:
    """Only editors (owner, admin) may set names the jobconfig does not declare."""
    extra = sorted(set(macros) - set(jobconfig.parameters))
    if not extra or await access.can(ctx, principal, "edit", "jobconfigs", jobconfig):
        return
    declared = ", ".join(jobconfig.parameters) or "none"
    plural = "are not parameters" if len(extra) > 1 else "is not a parameter"
    raise InvalidInput(
        f"{', '.join(extra)} {plural} of jobconfig {jobconfig.id} (its parameters: "
        f"{declared}): with execute rights you may set only its parameters at run time; "
        "someone who may edit the jobconfig can add the name to its 'parameters'",
        {"field": "macros", "macros": extra, "parameters": list(jobconfig.parameters)},
    )


def _secure_level(
    name: str, sources: MacroSources, jobconfig: JobConfig | None
) -> tuple[str, str] | None:
    """The level where ``name`` is secure (the one whose value the job would get) and
    the route that changes it; None if it is secure nowhere."""

    def has(rows: list[StoredMacro]) -> bool:
        return any(m.name == name and m.secure for m in rows)

    if jobconfig is not None and has(sources.jobconfig_secure):
        return "jobconfig", f"PUT /api/v1/jobconfigs/{jobconfig.id}/macros/{name}"
    if has(sources.user):
        return "user", f"PUT /api/v1/me/macros/{name}"
    if sources.template_id is not None and has(sources.template):
        return "template", f"PUT /api/v1/templates/{sources.template_id}/macros/{name}"
    if has(sources.account):
        return "account", f"PUT /api/v1/macros/account/{name}"
    return None


def _check_secure(
    macros: Mapping[str, str], sources: MacroSources, jobconfig: JobConfig | None
) -> None:
    found: dict[str, tuple[str, str]] = {}
    for name in sorted(macros):
        where = _secure_level(name, sources, jobconfig)
        if where is not None:
            found[name] = where
    if not found:
        return
    parts = [
        f"{name} is a secure macro of the {level} level: change it there ({route})"
        for name, (level, route) in found.items()
    ]
    raise InvalidInput(
        "; ".join(parts) + ". A secure macro cannot be given a value at run time",
        {
            "field": "macros",
            "macros": sorted(found),
            "levels": {name: level for name, (level, _) in found.items()},
        },
    )
