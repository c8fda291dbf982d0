"""A reusable authorization matrix: every API route x every persona -> the expected status.

The matrix is generated from the application's route table (:func:`route_table`), so a
route without a declared :class:`Rule` fails :func:`missing_rules` — adding a route
means declaring who may call it.

Rule format: ``Rule(method, path, expect, prepare=..., check=..., pending=...)`` where

* ``method`` and ``path`` are exactly as in the route table (``GET``,
  ``/api/v1/jobconfigs/{jobconfig_id}``);
* ``expect`` maps every :class:`Persona` to the status it must get; build it with
  :func:`guarded` (object routes: the policy rules), :func:`admin_only`,
  :func:`any_user`, :func:`open_route`, then :func:`override` single personas;
* ``prepare(world, persona)`` builds the concrete :class:`Call` (path with real ids,
  body, fresh objects for destructive routes); without it, the path's ``{name}``
  placeholders are filled from ``world.ids``;
* ``check(world, persona, response)`` asserts more than the status (a listing must not
  show objects the persona may not view);
* ``pending``: a reason when the route does not enforce the rule yet; tests run it
  as ``pytest.mark.xfail(strict=True)``, so it turns into a failure (XPASS) the day the
  route complies, telling whoever wired it to drop ``pending``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import httpx
import pytest


class Persona(StrEnum):
    """Who calls."""

    NO_TOKEN = "no_token"
    EXPIRED = "expired"  # a personal token past its expiry
    REVOKED = "revoked"  # a personal token that was revoked
    NO_POLICY = "no_policy"  # a user without any policy
    VIEW = "view"  # a user granted view on the target objects
    EXECUTE = "execute"  # ... granted execute
    EDIT = "edit"  # ... granted edit
    OWNER = "owner"  # the user who owns the target objects
    ADMIN = "admin"
    JOB_ADMIN = "job_admin"  # the SESSION_ID of a running job of the admin's
    JOB_OWNER = "job_owner"  # the SESSION_ID of a running job of the owner's
    WORKER = "worker"  # a valid worker token (jyw_...): it opens the worker routes only


PERSONAS: tuple[Persona, ...] = tuple(Persona)
UNAUTHENTICATED: tuple[Persona, ...] = (Persona.NO_TOKEN, Persona.EXPIRED, Persona.REVOKED)
#: Authenticated non-admin users that own nothing.
GRANTEES: tuple[Persona, ...] = (Persona.NO_POLICY, Persona.VIEW, Persona.EXECUTE, Persona.EDIT)
#: Job tokens (SESSION_ID of a running job): they read and run, never administer.
JOB_TOKENS: tuple[Persona, ...] = (Persona.JOB_ADMIN, Persona.JOB_OWNER)
#: What a job token may do on the objects its user may reach: read and run them.
JOB_ACTIONS: frozenset[str] = frozenset({"view", "execute"})
#: What each persona was granted (any grant implies view).
GRANTED: dict[Persona, frozenset[str]] = {
    Persona.NO_POLICY: frozenset(),
    Persona.VIEW: frozenset({"view"}),
    Persona.EXECUTE: frozenset({"view", "execute"}),
    Persona.EDIT: frozenset({"view", "edit"}),
}
#: Routes' path placeholders: ``{name}`` and ``{name:converter}``.
_UNSET: Any = object()

Expect = Mapping[Persona, int]


@dataclass(frozen=True)
class Call:
    """One concrete request. ``token``: use this bearer instead of the persona's own."""

    path: str
    json: Any = None
    params: Mapping[str, str] | None = None
    content: bytes | None = None
    headers: Mapping[str, str] | None = None
    files: Mapping[str, tuple[str, bytes, str]] | None = None
    token: str | None = None


Prepare = Callable[[Any, Persona], Awaitable[Call]]
Check = Callable[[Any, Persona, httpx.Response], None]


@dataclass(frozen=True)
class Rule:
    """Who may call one route (see the module docstring)."""

    method: str
    path: str
    expect: Expect
    prepare: Prepare | None = None
    check: Check | None = None
    pending: str | None = None
    note: str = field(default="", compare=False)

    @property
    def key(self) -> tuple[str, str]:
        """``(METHOD, path)`` as in the route table."""
        return (self.method, self.path)

    @property
    def id(self) -> str:
        """A readable pytest id."""
        return f"{self.method} {self.path}"


# -- expectation builders ------------------------------------------------------------


def _matrix(unauthenticated: int, others: int, admin: int, job: int) -> dict[Persona, int]:
    out = {p: unauthenticated for p in UNAUTHENTICATED}
    out.update({p: others for p in (*GRANTEES, Persona.OWNER)})
    out[Persona.ADMIN] = admin
    out.update({p: job for p in JOB_TOKENS})
    out[Persona.WORKER] = unauthenticated  # a worker token is no API token at all
    return out


def worker_only(ok: int) -> dict[Persona, int]:
    """The worker routes: a worker token gets ``ok``; every other token 403 (a worker
    token is needed); no valid token 401."""
    out = _matrix(401, 403, 403, 403)
    out[Persona.WORKER] = ok
    return out


def open_route(ok: int) -> dict[Persona, int]:
    """No token needed (health, login): everyone gets ``ok``."""
    return {p: ok for p in PERSONAS}


def any_user(ok: int, job: int | None = None) -> dict[Persona, int]:
    """Any valid token: ``ok``; no valid token: 401; job tokens ``job`` (default ``ok``:
    give 403 for routes that administer or create definitions)."""
    return _matrix(401, ok, ok, ok if job is None else job)


def admin_only(ok: int, others: int = 404, job: int = 403) -> dict[Persona, int]:
    """Admins get ``ok``; other users ``others`` (404 by default: nothing to probe); job
    tokens 403 (they never administer, an admin's job included)."""
    return _matrix(401, others, ok, job)


def guarded(need: str, ok: int) -> dict[Persona, int]:
    """An object route needing ``need`` (view, edit, delete, execute) on the target.

    Owner and admin: ``ok``. A grantee that may not view the target: 404; one that may
    view it but lacks ``need``: 403; one that has ``need``: ``ok``. Job tokens (of the
    owner and of the admin) may view and execute (``ok``), never edit or delete (403).
    """
    out = _matrix(401, ok, ok, ok if need in JOB_ACTIONS else 403)
    for persona in GRANTEES:
        granted = GRANTED[persona]
        if need in granted:
            out[persona] = ok
        elif "view" in granted:
            out[persona] = 403
        else:
            out[persona] = 404
    return out


def override(expect: Expect, **statuses: int) -> dict[Persona, int]:
    """``expect`` with some personas changed: ``override(x, owner=404)``."""
    out = dict(expect)
    for name, status in statuses.items():
        out[Persona(name)] = status
    return out


# -- the route table -------------------------------------------------------------------


def _walk(routes: Iterable[Any]) -> Iterator[Any]:
    for route in routes:
        nested = getattr(route, "effective_candidates", None)  # FastAPI's included routers
        if callable(nested):
            yield from _walk(nested())
            continue
        sub = getattr(route, "routes", None)  # a Mount or an older included router
        if sub and not hasattr(route, "methods"):
            yield from _walk(sub)
            continue
        yield route


def route_table(app: Any) -> set[tuple[str, str]]:
    """Every ``(METHOD, path)`` the application answers (HEAD left out)."""
    keys: set[tuple[str, str]] = set()
    for route in _walk(app.routes):
        path = getattr(route, "path", None)
        methods = getattr(route, "methods", None) or set()
        if not path:
            continue
        keys.update((m, path) for m in methods if m != "HEAD")
    return keys


def missing_rules(app: Any, rules: Iterable[Rule]) -> list[str]:
    """Routes that have no rule (each must be declared)."""
    declared = {r.key for r in rules}
    return sorted(f"{m} {p}" for m, p in route_table(app) - declared)


def stale_rules(app: Any, rules: Iterable[Rule]) -> list[str]:
    """Rules for routes that do not exist (renamed or removed), and duplicates."""
    table = route_table(app)
    seen: set[tuple[str, str]] = set()
    out = []
    for rule in rules:
        if rule.key not in table:
            out.append(f"{rule.id}: no such route")
        if rule.key in seen:
            out.append(f"{rule.id}: declared twice")
        seen.add(rule.key)
        if set(rule.expect) != set(PERSONAS):
            out.append(f"{rule.id}: expectations for {sorted(set(PERSONAS) - set(rule.expect))}")
    return out


def as_params(rules: Iterable[Rule]) -> list[Any]:
    """``pytest.param`` per rule; pending ones as strict xfail with their reason."""
    out = []
    for rule in rules:
        reason = f"{rule.id}: {rule.pending}"
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if rule.pending else []
        out.append(pytest.param(rule, id=rule.id, marks=marks))
    return out


# -- running -------------------------------------------------------------------------


def fill(path: str, ids: Mapping[str, Any]) -> str:
    """``/x/{a}/y/{b:path}`` with ``ids["a"]`` and ``ids["b"]``."""
    out = path
    while "{" in out:
        start = out.index("{")
        end = out.index("}", start)
        name = out[start + 1 : end].split(":", 1)[0]
        out = out[:start] + str(ids[name]) + out[end + 1 :]
    return out


async def run_rule(
    client: httpx.AsyncClient,
    world: Any,
    rule: Rule,
    tokens: Mapping[Persona, str | None],
) -> list[str]:
    """Call the route as every persona; the mismatches (empty: the rule holds)."""
    problems: list[str] = []
    for persona in PERSONAS:
        if rule.prepare is not None:
            call = await rule.prepare(world, persona)
        else:
            call = Call(path=fill(rule.path, world.ids))
        token = call.token if call.token is not None else tokens[persona]
        headers = dict(call.headers or {})
        if token is not None and persona is not Persona.NO_TOKEN:
            headers["Authorization"] = f"Bearer {token}"
        response = await client.request(
            rule.method,
            call.path,
            json=call.json,
            params=call.params,
            content=call.content,
            files=call.files,
            headers=headers,
        )
        want = rule.expect[persona]
        if response.status_code != want:
            problems.append(
                f"{persona.value}: got {response.status_code}, want {want}: {response.text[:160]}"
            )
            continue
        if rule.check is not None and response.is_success:
            try:
                rule.check(world, persona, response)
            except AssertionError as exc:
                problems.append(f"{persona.value}: {exc}")
    return problems
