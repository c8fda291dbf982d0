"""Which request paths belong to the console rather than to the API.

The API's authentication middleware lets these through without a bearer token: the
console authenticates them itself, with its session cookie. The list is closed on
purpose: any other path still needs a bearer token (and ``/api/...`` never takes the
cookie), so a new console page must be added here to be reachable.
"""

from __future__ import annotations

#: Console pages matched exactly.
EXACT: frozenset[str] = frozenset(
    {"/", "/login", "/logout", "/jobs", "/jobconfigs", "/packages", "/workers"}
    | {"/events/jobs", "/events/dashboard", "/users", "/me", "/tokens", "/policies", "/audit"}
)
#: Console paths matched by prefix: job, jobconfig, package, user and worker pages,
#: actions, static files.
PREFIXES: tuple[str, ...] = (
    "/jobs/",
    "/jobconfigs/",
    "/packages/",
    "/static/",
    "/users/",
    "/me/",
    "/tokens/",
    "/policies/",
    "/workers/",
)


def is_console_path(path: str) -> bool:
    """Whether ``path`` is served (and authenticated) by the console."""
    return path in EXACT or path.startswith(PREFIXES)


def safe_next(target: str | None) -> str:
    """Where to go after logging in: ``target`` if it is a local path, else ``/``.

    Only a path on this server is accepted: an absolute URL, a scheme-relative one
    (``//evil.example``), a backslash (which browsers read as a slash) or a control
    character would turn the login page into an open redirect.
    """
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    if "\\" in target or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in target):
        return "/"
    if len(target) > 2000:
        return "/"
    return target
