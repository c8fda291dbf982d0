"""A remote worker's downloads (packages, payload files): streamed to a file, moved into
place only once complete (and verified against its sha256 when one is given), retried
through the worker's servers while they cannot be reached."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import httpx

from jobyard.core.errors import DatabaseUnavailable, InvalidInput
from jobyard.worker.http_link import (
    FIRST_PAUSE,
    MAX_PAUSE,
    RETRIED,
    ServerLink,
    ServerRefused,
    response_body,
)

#: Download (and upload) chunk size.
CHUNK = 256 * 1024


async def download(
    link: ServerLink,
    path: str,
    params: dict[str, str],
    dest: Path,
    *,
    sha256: str | None,
    patience: float,
) -> None:
    """Stream ``GET path`` into ``dest`` (atomically, verified when ``sha256`` is given),
    retried for up to ``patience`` seconds while no server can be reached."""
    dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    pause = FIRST_PAUSE
    while True:
        digest = hashlib.sha256()
        index = link.current
        try:
            async with link.clients[index].stream("GET", path, params=params) as response:
                if response.status_code in RETRIED:
                    raise DatabaseUnavailable(f"server answered {response.status_code}")
                if response.status_code >= 400:
                    await response.aread()
                    raise ServerRefused(response.status_code, response_body(response))
                with open(tmp, "wb") as fh:
                    async for chunk in response.aiter_bytes(CHUNK):
                        digest.update(chunk)
                        fh.write(chunk)
            break
        except (httpx.TransportError, DatabaseUnavailable) as exc:
            link.move_on(index, type(exc).__name__)
            if loop.time() + pause > deadline:
                raise DatabaseUnavailable(f"download of {path} failed: {exc!r}") from exc
            await asyncio.sleep(pause)
            pause = min(pause * 2, MAX_PAUSE)
    if sha256 is not None and digest.hexdigest() != sha256:
        tmp.unlink(missing_ok=True)
        raise InvalidInput(f"download of package {sha256} does not match its sha256")
    os.replace(tmp, dest)
