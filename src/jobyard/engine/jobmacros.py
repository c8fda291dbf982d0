"""A job's macros resolved for its run: the environment, the secrets to mask, the record.

Worker side only: secure values are decrypted here and nowhere else (the service layer
encrypts them and shows them masked). Each :class:`~jobyard.engine.local_backend.LocalBackend`
keeps the keyrings of its slots in a :class:`~jobyard.core.crypto.Keyrings` of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from jobyard.core.claims import Claim
from jobyard.core.crypto import Keyring, SecretError, associated_data
from jobyard.core.macros import MacroSources, StoredMacro, layer_sources, record_of
from jobyard.core.models import Job
from jobyard.store.protocol import Store


@dataclass(frozen=True, slots=True)
class JobMacros:
    """A job's resolved macros: the environment, the secrets to mask, the record to keep."""

    env: dict[str, str]
    secrets: list[str]
    record: dict[str, Any]
    #: What the job's log should say about its macros (a level withheld, and why).
    notes: list[str] = field(default_factory=list)


async def resolve_for_job(store: Store, keys: Callable[[], Keyring], job: Job) -> JobMacros:
    """Resolve and decrypt a job's macros (worker side only), and where each came from.

    The caller stores ``record`` on the job (``Store.job_initialize``, with its session
    token, in one transaction).

    The user level is the submitting user's (``job.submitted_by``; for a scheduled job
    the jobconfig's owner) — private values that only that user and admins may read. A
    job whose program was decided by someone else (``job.definers``, other than admins)
    does not get them: that someone could print them. The template is the job's, else its
    jobconfig's. ``keys`` loads the keyring, only when the job has a secure macro.
    """
    user_name = job.submitted_by
    notes = []
    if user_name and job.definers:
        untrusted = await _untrusted_definers(store, job.definers)
        if untrusted:
            notes.append(_withheld_note(user_name, untrusted))
            user_name = None
    sources = await store.macro_sources(
        jobconfig_id=job.jobconfig_id, template_id=job.template_id, user_name=user_name
    )
    return _resolve_sources(sources, job, keys, notes)


def resolve_claimed(claim: Claim, keys: Callable[[], Keyring]) -> JobMacros:
    """:func:`resolve_for_job` for a claimed job: its macro levels came with the claim."""
    notes = []
    if claim.withheld_by and claim.job.submitted_by:
        notes.append(_withheld_note(claim.job.submitted_by, claim.withheld_by))
    return _resolve_sources(claim.sources, claim.job, keys, notes)


def _withheld_note(user_name: str, untrusted: Iterable[str]) -> str:
    return (
        f"user-level macros of {user_name} not given to this job: what it runs was "
        f"last decided by {', '.join(untrusted)}, who may not read them (pass a value "
        "as a run-time parameter instead)"
    )


def _resolve_sources(
    sources: MacroSources, job: Job, keys: Callable[[], Keyring], notes: list[str]
) -> JobMacros:
    def reveal(level: str, m: StoredMacro) -> str:
        try:
            return keys().decrypt(m.value, associated_data(m.scope, m.scope_id, m.name))
        except SecretError as exc:
            raise SecretError(
                f"secure {level} macro {m.name!r} cannot be decrypted: {exc.message}",
                {"macro": m.name, "level": level},
            ) from None

    resolved = layer_sources(sources, job.macros, reveal)
    record = record_of(resolved)
    env = {name: m.value for name, m in resolved.items()}
    secrets = sorted({m.value for m in resolved.values() if m.secure and m.value})
    return JobMacros(env=env, secrets=secrets, record=record, notes=notes)


async def _untrusted_definers(store: Store, definers: Iterable[str | None]) -> list[str]:
    """The definers who are not active admins (admins may read every user's macros)."""
    untrusted = []
    for name in sorted({n for n in definers if isinstance(n, str) and n}):  # NULLs: skipped
        user = await store.user_find(name)
        if user is None or not user.active or user.role != "admin":
            untrusted.append(name)
    return untrusted
