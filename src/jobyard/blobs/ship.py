"""Running logs of local slots, shipped to a bucket as pieces while their jobs run.

With a bucket as blob store, a local slot appends its job's log to a spool file on its
host (the one file its runner writes, as on a local folder). So that every replica
serves that log live, one task per ``jobyard up`` uploads the bytes each spool file
gained every ``JOBYARD_S3_LOG_PIECE_SECONDS`` as a piece (:mod:`jobyard.blobs.pieces`);
the job path itself gains nothing: no call per job, only this periodic upload.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from jobyard.blobs.s3 import S3BlobStore
from jobyard.core.errors import JobyardError

log = logging.getLogger("jobyard.blobs")

#: The largest piece one upload sends (a log that grew more sends several).
PIECE_MAX_BYTES = 8 * 1024 * 1024


class LogShipper:
    """Uploads the new bytes of the spool files of one host, remembering what it sent."""

    def __init__(self, blobs: S3BlobStore) -> None:
        self._blobs = blobs
        #: Bytes of each spool file already stored as pieces, by key.
        self._shipped: dict[str, int] = {}

    async def ship(self) -> int:
        """Upload what each spool file gained since the last call; answer how many pieces.

        A spool file that disappears meanwhile was sealed (its object holds every byte):
        the piece just uploaded for it is deleted again, so none outlives the seal. A
        marker file beside a shipped spool file tells the seal to delete the pieces
        (:meth:`~jobyard.blobs.s3.S3BlobStore.shipped_marker`): a job that ends within one
        round costs its seal no more than before.
        """
        keys = await self._blobs.spooled("logs")
        pieces = 0
        for key in keys:
            path = self._blobs.spool_path(key)
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            done = self._shipped.get(key)
            if done is None:  # first seen (or this server restarted): ask the bucket
                done = await self._blobs.pieces_size(key)
            marker = self._blobs.shipped_marker(key)
            while done < size:
                data = await asyncio.to_thread(_read_range, path, done, PIECE_MAX_BYTES)
                if not data:
                    break
                marker.touch()  # before the piece: the seal then knows to delete it
                name = await self._blobs.put_piece(key, done, data)
                pieces += 1
                if not path.exists():  # sealed meanwhile, perhaps after listing pieces
                    await self._blobs.delete_piece(name)
                    break
                done += len(data)
            self._shipped[key] = done
        for gone in set(self._shipped) - set(keys):
            del self._shipped[gone]
            with contextlib.suppress(FileNotFoundError):
                self._blobs.shipped_marker(gone).unlink()  # left by a race with the seal
        return pieces

    async def run(self, interval: float) -> None:
        """Ship every ``interval`` seconds until cancelled; a bucket that fails is logged
        and tried again at the next round (the pieces resume where they stopped)."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.ship()
            except (JobyardError, OSError) as exc:
                log.warning("could not ship running logs to %s: %s", self._blobs.where, exc)


def _read_range(path: Path, offset: int, limit: int) -> bytes:
    """Up to ``limit`` bytes of the file at ``path`` from ``offset`` (none when gone)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(limit)
    except FileNotFoundError:
        return b""
