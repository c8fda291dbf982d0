"""Receive an uploaded file into a temporary file, enforcing the size limit as it streams.

Shared by the API and the console, so both hold an upload to ``JOBYARD_UPLOAD_MAX_BYTES``
the same way.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

from jobyard.core.errors import TooLarge
from jobyard.service.context import Context

CHUNK = 1024 * 1024


class Upload(Protocol):
    """An uploaded file being received (Starlette's ``UploadFile``, say)."""

    async def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes more of the file (empty at its end)."""
        ...


@contextlib.asynccontextmanager
async def receive_upload(ctx: Context, upload: Upload) -> AsyncIterator[tuple[Path, int]]:
    """Yield ``(path, size)`` of a private temp copy of the upload; removed afterwards."""
    limit = ctx.settings.upload_max_bytes
    tmp_dir = ctx.settings.home / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="upload-", dir=tmp_dir)
    path = Path(name)
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := await upload.read(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise TooLarge(
                        f"upload exceeds the limit of {limit} bytes (JOBYARD_UPLOAD_MAX_BYTES)",
                        {"limit": limit},
                    )
                out.write(chunk)
        yield path, size
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
