"""What the console's HTTP tests share: a page's CSRF token, and a browser-like client
signed in to the console."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from tests.integration.conftest import Env


def csrf_of(html: str) -> str:
    """The CSRF token a console page puts in its forms."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


@asynccontextmanager
async def signed_in(
    env: Env, name: str, password: str, *, page: str = "/"
) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """A browser logged in to the console as ``name`` (sending a same-origin ``Origin``),
    and its session's CSRF token read from ``page``."""
    async with httpx.AsyncClient(
        base_url=env.url, timeout=30, headers={"Origin": env.url}
    ) as client:
        r = await client.post("/login", data={"name": name, "password": password})
        assert r.status_code == 303, r.text
        shown = await client.get(page)
        assert shown.status_code == 200, shown.text
        yield client, csrf_of(shown.text)
