"""The blob seam: where package archives, job logs, payloads and outputs live.

Keys are relative POSIX paths built by :mod:`jobyard.blobs.keys`; the local
implementation maps them under ``$JOBYARD_HOME/blobs``; an S3-compatible one can
follow without touching callers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol


class BlobStore(Protocol):
    """Content storage by key."""

    async def put_file(self, key: str, src: Path, *, move: bool = False) -> int:
        """Store the file at ``src`` under ``key`` atomically; return its size."""
        ...

    async def put_bytes(self, key: str, data: bytes) -> int:
        """Store ``data`` under ``key`` atomically; return its size."""
        ...

    async def exists(self, key: str) -> bool:
        """Tell whether ``key`` holds a blob."""
        ...

    async def size(self, key: str) -> int | None:
        """Size of the blob, or None when absent."""
        ...

    def read_chunks(
        self, key: str, *, offset: int = 0, chunk_size: int = 65536
    ) -> AsyncIterator[bytes]:
        """Stream the blob from ``offset`` to its current end."""
        ...

    def local_path(self, key: str) -> Path:
        """Filesystem path of ``key`` (the local store, and workers writing logs)."""
        ...

    async def delete_prefix(self, prefix: str) -> None:
        """Delete every blob under ``prefix`` (retention, jobconfig deletion)."""
        ...

    async def touch(self, key: str) -> bool:
        """Mark ``key`` as just used (its modification time: now); False when absent."""
        ...

    async def modified_at(self, key: str) -> float | None:
        """When ``key`` was last written or touched (epoch seconds), or None when absent."""
        ...

    async def rename(self, src: str, dst: str) -> bool:
        """Move a blob to another key atomically; False when ``src`` is absent."""
        ...

    async def delete_batch(
        self, keys: list[str], prefixes: list[str], *, dry_run: bool = False
    ) -> tuple[int, int]:
        """Delete blobs by key and by folder prefix in one go; ``(files, bytes)`` removed.

        ``dry_run`` removes nothing and answers what would go.
        """
        ...
