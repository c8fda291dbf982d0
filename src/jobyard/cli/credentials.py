"""Tokens of ``jobyard login``, kept per server URL in a private user file.

The file is ``$XDG_CONFIG_HOME/jobyard/credentials.json`` (default
``~/.config/jobyard/credentials.json``), mode 0600 in a 0700 folder, written
atomically. An expired access token is refreshed on the way (its refresh token is
rotated and saved).
"""

from __future__ import annotations

import contextlib
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

#: Refresh this long before the access token expires (clock skew, slow calls).
EXPIRY_MARGIN = timedelta(seconds=30)


def credentials_path() -> Path:
    """Where the CLI keeps login tokens."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "jobyard" / "credentials.json"


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _servers(data: dict[str, Any]) -> dict[str, Any]:
    servers = data.get("servers")
    return servers if isinstance(servers, dict) else {}


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def entry_of(server: str, name: str, answer: dict[str, Any]) -> dict[str, Any]:
    """What to save from a login or refresh answer."""
    now = datetime.now(UTC)
    return {
        "name": name,
        "access_token": answer["access_token"],
        "access_expires_at": (now + timedelta(seconds=int(answer["expires_in"]))).isoformat(),
        "refresh_token": answer["refresh_token"],
        "refresh_expires_at": (
            now + timedelta(seconds=int(answer.get("refresh_expires_in") or 0))
        ).isoformat(),
    }


def save(server: str, entry: dict[str, Any]) -> Path:
    """Store (replace) the tokens of ``server``; return the file."""
    path = credentials_path()
    data = _load(path)
    servers = _servers(data)
    servers[server] = entry
    data["servers"] = servers
    _write(path, data)
    return path


def forget(server: str) -> dict[str, Any] | None:
    """Remove the tokens of ``server``; return what was stored."""
    path = credentials_path()
    data = _load(path)
    servers = _servers(data)
    entry = servers.pop(server, None)
    if entry is not None:
        data["servers"] = servers
        _write(path, data)
    return entry if isinstance(entry, dict) else None


def stored(server: str) -> dict[str, Any] | None:
    """The saved entry of ``server``, if any."""
    entry = _servers(_load(credentials_path())).get(server)
    return entry if isinstance(entry, dict) else None


def _expired(entry: dict[str, Any], field: str) -> bool:
    try:
        when = datetime.fromisoformat(str(entry.get(field)))
    except ValueError:
        return True
    return when - EXPIRY_MARGIN <= datetime.now(UTC)


def access_token(server: str) -> str:
    """The saved access token of ``server``, refreshed first if it has expired.

    Empty when nothing is saved. When the refresh fails, the stale token is returned:
    the server then says why it is refused (expired: log in again).
    """
    entry = stored(server)
    if entry is None:
        return ""
    token = str(entry.get("access_token") or "")
    if not _expired(entry, "access_expires_at") or _expired(entry, "refresh_expires_at"):
        return token
    try:
        response = httpx.post(
            f"{server}/api/v1/token/refresh",
            json={"refresh_token": entry.get("refresh_token")},
            timeout=10.0,
        )
    except httpx.HTTPError:
        return token
    if response.status_code != 200:
        return token
    fresh = entry_of(server, str(entry.get("name") or ""), response.json())
    save(server, fresh)
    return str(fresh["access_token"])
