"""API calls of users, tokens, templates, macros, policies and audit (part of ``ApiClient``).

Split from :mod:`jobyard.client` by concept; :class:`AdminCalls` is a base of
``ApiClient``, which provides the transport (``_send``, ``_json``, ``_page``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from jobyard.client_types import API, JsonObject, Page
from jobyard.client_types import params as _params


class AdminCalls:
    """Calls of the access-control, template and macro routes."""

    # -- transport, provided by ApiClient ----------------------------------------------

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        raise NotImplementedError

    async def _json(self, method: str, path: str, **kwargs: Any) -> JsonObject:
        raise NotImplementedError

    async def _page(self, path: str, params: httpx.QueryParams) -> Page:
        raise NotImplementedError

    # -- users, login and tokens ----------------------------------------------------

    async def login(self, name: str, password: str) -> JsonObject:
        """``POST /login``: an access token and a refresh token (no bearer needed)."""
        return await self._json("POST", f"{API}/login", json={"name": name, "password": password})

    async def token_refresh(self, refresh_token: str) -> JsonObject:
        """``POST /token/refresh``: a new pair; the given refresh token stops working."""
        body = {"refresh_token": refresh_token}
        return await self._json("POST", f"{API}/token/refresh", json=body)

    async def logout(self, refresh_token: str | None = None) -> None:
        """``POST /logout``: revoke this access token (and the refresh token, if given)."""
        body = {"refresh_token": refresh_token} if refresh_token else {}
        await self._send("POST", f"{API}/logout", json=body)

    async def me(self) -> JsonObject:
        """``GET /me``: who this token belongs to."""
        return await self._json("GET", f"{API}/me")

    async def users_list(self, *, cursor: str | None = None, limit: int | None = None) -> Page:
        """One page of users (admins: all; others: themselves)."""
        return await self._page(f"{API}/users", _params(cursor=cursor, limit=limit))

    async def user_create(self, spec: Mapping[str, Any]) -> JsonObject:
        """Create a user (``name``, ``role``, optional ``password``)."""
        return await self._json("POST", f"{API}/users", json=dict(spec))

    async def user_get(self, user_id: int) -> JsonObject:
        """One user."""
        return await self._json("GET", f"{API}/users/{user_id}")

    async def user_patch(self, user_id: int, changes: Mapping[str, Any]) -> JsonObject:
        """Change role, password or active."""
        return await self._json("PATCH", f"{API}/users/{user_id}", json=dict(changes))

    async def user_deactivate(self, user_id: int) -> JsonObject:
        """Deactivate: tokens revoked, not-started jobs cancelled."""
        return await self._json("POST", f"{API}/users/{user_id}/deactivate")

    async def user_activate(self, user_id: int) -> JsonObject:
        """Reactivate a user."""
        return await self._json("POST", f"{API}/users/{user_id}/activate")

    async def tokens_list(
        self, *, user: str | None = None, all_kinds: bool = False
    ) -> list[JsonObject]:
        """Tokens of the caller (admins: of ``user``)."""
        params = _params(user=user, all=True if all_kinds else None)
        body = await self._json("GET", f"{API}/tokens", params=params)
        return list(body.get("items") or [])

    async def token_create(self, spec: Mapping[str, Any]) -> JsonObject:
        """Mint a personal token; the answer's ``token`` is its value (shown once)."""
        return await self._json("POST", f"{API}/tokens", json=dict(spec))

    async def token_revoke(self, token_id: int) -> None:
        """Revoke a token."""
        await self._send("DELETE", f"{API}/tokens/{token_id}")

    # -- templates ----------------------------------------------------------------

    async def template_create(self, spec: Mapping[str, Any]) -> JsonObject:
        """``POST /templates``: create a template (201)."""
        return await self._json("POST", f"{API}/templates", json=dict(spec))

    async def templates_list(
        self, *, name: str | None = None, cursor: str | None = None, limit: int | None = None
    ) -> Page:
        """``GET /templates``: one page of templates, optionally only the one named ``name``."""
        return await self._page(f"{API}/templates", _params(name=name, cursor=cursor, limit=limit))

    async def template_get(self, template_id: int) -> JsonObject:
        """``GET /templates/{id}``."""
        return await self._json("GET", f"{API}/templates/{template_id}")

    async def template_find(self, name: str) -> JsonObject | None:
        """The template named ``name``, or ``None`` when there is none."""
        page = await self.templates_list(name=name)
        for item in page.items:
            if item.get("name") == name:
                return item
        return None

    async def template_replace(self, template_id: int, spec: Mapping[str, Any]) -> JsonObject:
        """``PUT /templates/{id}``: replace every writable field."""
        return await self._json("PUT", f"{API}/templates/{template_id}", json=dict(spec))

    async def template_delete(self, template_id: int) -> None:
        """``DELETE /templates/{id}`` (204; 409 while jobconfigs name it)."""
        await self._send("DELETE", f"{API}/templates/{template_id}")

    async def template_jobconfigs(self, template_id: int) -> list[JsonObject]:
        """``GET /templates/{id}/jobconfigs``: the jobconfigs naming it."""
        body = await self._json("GET", f"{API}/templates/{template_id}/jobconfigs")
        return list(body.get("items") or [])

    async def template_clone(
        self,
        template_id: int,
        name: str,
        *,
        with_jobconfigs: bool = False,
        jobconfig_prefix: str | None = None,
    ) -> JsonObject:
        """``POST /templates/{id}/clone``: ``{"template", "jobconfigs", ...}`` (201)."""
        body: JsonObject = {"name": name, "with_jobconfigs": with_jobconfigs}
        if jobconfig_prefix is not None:
            body["jobconfig_prefix"] = jobconfig_prefix
        return await self._json("POST", f"{API}/templates/{template_id}/clone", json=body)

    async def template_export(self, template_id: int) -> JsonObject:
        """``GET /templates/{id}/export``: the template with its jobconfigs and schedules."""
        return await self._json("GET", f"{API}/templates/{template_id}/export")

    async def template_import(self, document: Mapping[str, Any]) -> JsonObject:
        """``POST /templates/import``: create or update by name; the report of what changed."""
        return await self._json("POST", f"{API}/templates/import", json=dict(document))

    # -- worker tokens ----------------------------------------------------------

    async def worker_token_create(self, name: str, pool: str | None = None) -> JsonObject:
        """``POST /worker-tokens``: a new worker token, its value in this answer only."""
        return await self._json("POST", f"{API}/worker-tokens", json={"name": name, "pool": pool})

    async def worker_tokens_list(self) -> list[JsonObject]:
        """``GET /worker-tokens``: every worker token (never their values)."""
        body = await self._json("GET", f"{API}/worker-tokens")
        return list(body.get("items") or [])

    async def worker_token_revoke(self, token_id: int) -> JsonObject:
        """``DELETE /worker-tokens/{id}``: revoke a worker token."""
        return await self._json("DELETE", f"{API}/worker-tokens/{token_id}")

    # -- macros ---------------------------------------------------------------

    async def macros_list(self, base: str) -> list[JsonObject]:
        """``GET <level>/macros``: a level's macros (secure ones with value null)."""
        body = await self._json("GET", base)
        return list(body.get("items") or [])

    async def macro_set(self, base: str, name: str, value: str, *, secure: bool) -> JsonObject:
        """``PUT <level>/macros/{name}``: create or replace a macro."""
        body = {"value": value, "secure": secure}
        return await self._json("PUT", f"{base}/{quote(name, safe='')}", json=body)

    async def macro_delete(self, base: str, name: str) -> None:
        """``DELETE <level>/macros/{name}`` (204)."""
        await self._send("DELETE", f"{base}/{quote(name, safe='')}")

    async def macros_export(self, base: str, *, fmt: str = "json") -> bytes:
        """``GET <level>/macros/export``: the macro-definition file (no secure values)."""
        response = await self._send("GET", f"{base}/export", params=_params(format=fmt))
        return response.content

    async def macros_import(self, base: str, data: bytes, *, content_type: str) -> JsonObject:
        """``POST <level>/macros/import`` of a JSON or XML macro-definition file."""
        headers = {"Content-Type": content_type}
        return await self._json("POST", f"{base}/import", content=data, headers=headers)

    async def macros_resolved(self, jobconfig_id: int, *, user: str | None = None) -> JsonObject:
        """``GET /jobconfigs/{id}/macros/resolved``: what a job would get, with levels."""
        path = f"{API}/jobconfigs/{jobconfig_id}/macros/resolved"
        return await self._json("GET", path, params=_params(user=user))

    async def job_macros(self, job_id: int) -> JsonObject:
        """``GET /jobs/{id}/macros``: the macros a job got and the level of each."""
        return await self._json("GET", f"{API}/jobs/{job_id}/macros")

    async def find_id_by_name(self, collection: str, name: str) -> int | None:
        """The id of the object named ``name`` in ``/api/v1/<collection>`` (templates, users)."""
        cursor: str | None = None
        while True:
            page = await self._page(
                f"{API}/{collection}", _params(name=name, cursor=cursor, limit=100)
            )
            for item in page.items:
                if item.get("name") == name:
                    return int(item["id"])
            if not page.next_cursor:
                return None
            cursor = page.next_cursor

    # -- access policies and the audit log ---------------------------------------

    async def policies_list(self, user_id: int) -> list[JsonObject]:
        """``GET /users/{id}/policies``: a user's access policies (admins)."""
        body = await self._json("GET", f"{API}/users/{user_id}/policies")
        return list(body.get("items") or [])

    async def policy_grant(
        self, user_id: int, *, action: str, resource: str, selector: str
    ) -> JsonObject:
        """``POST /users/{id}/policies``: grant ``action`` on ``resource`` ``selector`` (201)."""
        body = {"action": action, "resource": resource, "selector": selector}
        return await self._json("POST", f"{API}/users/{user_id}/policies", json=body)

    async def policy_revoke(self, user_id: int, policy_id: int) -> None:
        """``DELETE /users/{id}/policies/{pid}`` (204)."""
        await self._send("DELETE", f"{API}/users/{user_id}/policies/{policy_id}")

    async def jobstats(
        self,
        *,
        jobconfig_id: int | None = None,
        since: str | None = None,
        until: str | None = None,
        bucket: str = "hour",
    ) -> JsonObject:
        """``GET /jobstats``: counts, durations and queue waits of ended jobs you may view."""
        params: dict[str, str | int] = {"bucket": bucket}
        if jobconfig_id is not None:
            params["jobconfig_id"] = jobconfig_id
        if since:
            params["since"] = since
        if until:
            params["until"] = until
        return await self._json("GET", f"{API}/jobstats", params=params)

    async def purge(self, *, dry_run: bool = False) -> JsonObject:
        """``POST /admin/purge``: run a retention pass now (admins); counts of what went."""
        return await self._json("POST", f"{API}/admin/purge", json={"dry_run": dry_run})

    async def audit_list(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        object_type: str | None = None,
        object_id: str | None = None,
        since: str | None = None,
        until: str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> Page:
        """``GET /audit``: one page of the audit log, newest first (admins)."""
        params = _params(
            actor=actor,
            action=action,
            object_type=object_type,
            object_id=object_id,
            since=since,
            until=until,
            cursor=cursor,
            limit=limit,
        )
        return await self._page(f"{API}/audit", params)
