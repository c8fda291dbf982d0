"""Appending to a blob while its writer is on another host (remote workers' logs).

A remote worker streams its job's log in pieces, each with the offset it starts at. The
piece lands in the blob store's spool file of the key (in a local folder, the blob
itself, so every replica sharing the folder serves the live log; in a bucket, the spool
of the replica that received it, uploaded by :meth:`BlobStore.seal`).
"""

from __future__ import annotations

import asyncio
import os

from jobyard.blobs.protocol import BlobStore
from jobyard.core.errors import Conflict


async def append_at(blobs: BlobStore, key: str, offset: int, data: bytes) -> int:
    """Write ``data`` at ``offset`` of ``key``'s spool file; return the file's new size.

    Idempotent: bytes already there are not written again (a retried piece changes
    nothing). ``Conflict`` (with ``details.size``) when ``offset`` is past the end: a
    piece was lost, the sender must resend from ``size``.
    """
    path = blobs.spool_path(key)

    def write() -> int:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            size = os.fstat(fd).st_size
            if offset > size:
                raise Conflict(
                    f"log piece at offset {offset} leaves a gap: the log has {size} bytes; "
                    f"resend from offset {size}",
                    {"size": size},
                )
            skip = size - offset
            if skip < len(data):
                os.pwrite(fd, data[skip:], size)
                size += len(data) - skip
            return size
        finally:
            os.close(fd)

    return await asyncio.to_thread(write)
