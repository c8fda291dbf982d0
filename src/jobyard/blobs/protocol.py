"""The blob seam: where package archives, job logs, payloads and outputs live.

Keys are relative POSIX paths built by :mod:`jobyard.blobs.keys`. Two adapters answer
this protocol: a local (or mounted, shared) folder and an S3-compatible bucket; callers
never see a filesystem path of the store, except the two hand-overs the job path needs:

- :meth:`BlobStore.spool_path` is where a writer on this host appends a growing blob (a
  running job's log) so readers can follow it; :meth:`BlobStore.seal` publishes it when
  the writer is done. The local folder hands out the blob's final path (no copy, no
  upload); a bucket hands out a spool file and uploads it on ``seal``.
- :meth:`BlobStore.append` adds a piece at an offset from any host (a remote worker's
  log, through whichever replica receives it), durable and visible to every replica at
  once; :meth:`BlobStore.seal` from any replica then makes the pieces one blob.
- :meth:`BlobStore.materialize` gives a local file with a blob's bytes for reading (a
  package to unpack, a payload to copy): the local folder answers its own file, a
  bucket downloads into the file the caller names.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import Protocol


class BlobStore(Protocol):
    """Content storage by key."""

    # -- writes ------------------------------------------------------------------------
    async def put_file(self, key: str, src: Path, *, move: bool = False) -> int:
        """Store the file at ``src`` under ``key`` atomically; return its size.

        ``move`` hands the file over: it is gone from ``src`` afterwards.
        """
        ...

    async def put_bytes(self, key: str, data: bytes) -> int:
        """Store ``data`` under ``key`` atomically; return its size."""
        ...

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        """Store what ``chunks`` yields under ``key`` atomically; return its size."""
        ...

    async def copy(self, src: str, dst: str) -> int:
        """Copy a blob to another key; return its size (``NotFound`` when absent)."""
        ...

    # -- reads -------------------------------------------------------------------------
    async def exists(self, key: str) -> bool:
        """Tell whether ``key`` holds a blob."""
        ...

    async def size(self, key: str) -> int | None:
        """Size of the blob, or None when absent."""
        ...

    def read_chunks(
        self, key: str, *, offset: int = 0, chunk_size: int = 65536
    ) -> AsyncIterator[bytes]:
        """Stream the blob from ``offset`` to its current end (``NotFound`` when absent).

        A blob still being written on this host (see :meth:`spool_path`) is read from
        its spool file, and one growing by :meth:`append` from what every host appended
        so far, so a log can be followed while its job runs, through any server. A
        reader past the end of a growing blob gets nothing (more may come).
        """
        ...

    async def get_file(self, key: str, dest: Path) -> int:
        """Write the blob into ``dest`` (a file the caller owns); return its size."""
        ...

    async def materialize(self, key: str, dest: Path) -> Path:
        """A local file holding the blob's bytes, to be read and never changed.

        The local folder answers its own file; a remote store downloads into ``dest``
        (the caller's file, which it removes when done) and answers ``dest``.
        """
        ...

    async def list_children(self, prefix: str) -> list[tuple[str, float]]:
        """``(name, modified_at)`` of each entry right under the folder ``prefix``.

        An entry is a blob or a sub-folder (its newest blob's time on a bucket); an
        absent folder has none. Retention walks the store with it.
        """
        ...

    # -- growing blobs (logs of running jobs) ------------------------------------------
    def spool_path(self, key: str) -> Path:
        """Local file where a writer on this host appends ``key`` while it grows."""
        ...

    async def append(self, key: str, offset: int, data: bytes, *, unsealed: bool = False) -> int:
        """Add ``data`` at ``offset`` of the growing blob ``key``; answer its size after.

        Durable and visible to every host sharing the store when it returns. Idempotent:
        bytes already there are not written again (a retried piece changes nothing).
        ``Conflict`` (``details.size``) when ``offset`` is past the end: a piece was
        lost, the sender resends from ``size``. An empty piece creates an empty blob.

        ``unsealed``: the caller knows the blob is not sealed (its writer still holds
        it) and that the writer sends its pieces in order. A first piece (offset 0) is
        then stored without looking at what is stored (a bucket: one request instead of
        three) and the answer is its end: a retried first piece holds the same bytes,
        and no later piece exists before the writer had this one's answer.
        """
        ...

    async def seal(self, key: str) -> None:
        """The writer is done: make the blob durable and whole in the store.

        Seals what this host spooled (:meth:`spool_path`) or, when it spooled nothing,
        the pieces :meth:`append` stored from any host; nothing when there is neither.
        """
        ...

    async def spooled(self, prefix: str) -> list[str]:
        """Keys under ``prefix`` with a spool file on this host not sealed yet (a crash or
        an unreachable store at the end of their writer); none for a local folder."""
        ...

    # -- deletes and retention ---------------------------------------------------------
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
        """Move a blob to another key; False when ``src`` is absent."""
        ...

    async def delete_batch(
        self, keys: list[str], prefixes: list[str], *, dry_run: bool = False
    ) -> tuple[int, int]:
        """Delete blobs by key and by folder prefix in one go; ``(files, bytes)`` removed.

        ``dry_run`` removes nothing and answers what would go.
        """
        ...
