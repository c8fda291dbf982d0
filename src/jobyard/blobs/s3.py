"""A :class:`~jobyard.blobs.protocol.BlobStore` on an S3-compatible bucket (``boto3``).

Every blob is one object at ``<prefix>/<key>``; the calls to the bucket (boto3 in a
pool of threads, failures as domain errors) are :mod:`jobyard.blobs.s3_calls`.

A running job's log is not an object yet. A local slot appends to a spool file on its
own host (:meth:`S3BlobStore.spool_path`): readers on that host follow the spool file,
:mod:`jobyard.blobs.ship` uploads its new bytes as pieces every few seconds so the
other replicas follow it too, and :meth:`S3BlobStore.seal` uploads it whole when the job
ends. A remote worker's log arrives in pieces through any replica
(:meth:`S3BlobStore.append`): each is an object of its own (:mod:`jobyard.blobs.pieces`)
that every replica reads, and ``seal`` from any replica joins them into the final object.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from jobyard.blobs.local import gap_refused, key_parts
from jobyard.blobs.pieces import (
    PARTS_SUFFIX,
    Piece,
    Segment,
    ending_after,
    layout,
    parse_pieces,
    piece_name,
)
from jobyard.blobs.s3_calls import S3Calls, not_found_to
from jobyard.core.errors import Conflict, InvalidInput, NotFound

if TYPE_CHECKING:
    pass

T = TypeVar("T")

_SEAL_FETCHES = 8  # pieces fetched at once when sealing


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix")`` (prefix may be empty)."""
    if not url.startswith("s3://"):
        raise ValueError(f"not an s3:// URL: {url!r}")
    bucket, _, prefix = url[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"{url!r} names no bucket: write s3://BUCKET[/PREFIX]")
    return bucket, prefix.strip("/")


class S3BlobStore(S3Calls):
    """Blobs as objects of ``bucket`` under ``prefix``; growing logs spool under ``spool``
    (the bucket calls themselves are :class:`~jobyard.blobs.s3_calls.S3Calls`)."""

    # -- writes ------------------------------------------------------------------------
    async def put_file(self, key: str, src: Path, *, move: bool = False) -> int:
        """Upload ``src`` (multipart when large); ``move`` removes it once uploaded."""
        name = self._key(key)
        size = src.stat().st_size
        await self._run(lambda: self._client().upload_file(str(src), self._bucket, name))
        if move:
            with contextlib.suppress(FileNotFoundError):
                src.unlink()
        return size

    async def put_bytes(self, key: str, data: bytes) -> int:
        """One PutObject: S3 publishes an object whole or not at all."""
        name = self._key(key)
        await self._run(lambda: self._client().put_object(Bucket=self._bucket, Key=name, Body=data))
        return len(data)

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        """Spool ``chunks`` to a temporary file, then upload it (sizes unknown up front)."""
        self._spool.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=self._spool, prefix=".put.")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as f:
                async for chunk in chunks:
                    f.write(chunk)
            return await self.put_file(key, tmp, move=True)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    async def copy(self, src: str, dst: str) -> int:
        """Server-side copy (no bytes through this host)."""
        source, target = self._key(src), self._key(dst)
        size = await self.size(src)
        if size is None:
            raise NotFound(f"blob {src!r} not found", {"key": src})
        await self._run(
            lambda: self._client().copy(
                {"Bucket": self._bucket, "Key": source}, self._bucket, target
            )
        )
        return size

    # -- growing blobs -----------------------------------------------------------------
    def spool_path(self, key: str) -> Path:
        """A file under the local spool folder (the writer creates its folder)."""
        return self._spool.joinpath(*key_parts(key))

    def shipped_marker(self, key: str) -> Path:
        """A file beside the spool file of ``key`` saying that pieces of it were shipped
        (:mod:`jobyard.blobs.ship`): sealing it deletes them. Without it (a job shorter
        than one shipping round) sealing is one upload and nothing more."""
        path = self.spool_path(key)
        return path.with_name(f".{path.name}.shipped")

    async def seal(self, key: str) -> None:
        """Upload the spool file of ``key`` whole and remove it; without one, join the
        pieces of ``key`` (from any replica) into its object. Nothing when neither."""
        path = self.spool_path(key)
        if path.is_file():
            await self.put_file(key, path, move=True)
            marker = self.shipped_marker(key)
            if marker.exists():  # shipped while it ran: its pieces are stale now
                await self._delete_names([p.name for p in await self._pieces(key)])
                with contextlib.suppress(FileNotFoundError):
                    marker.unlink()
            return
        pieces = await self._pieces(key)
        if not pieces:
            return
        if await self._head(key) is not None:  # sealed already (by another replica)
            await self._delete_names([p.name for p in pieces])
            return
        size, segments, gap = layout(pieces)
        if gap is not None:
            raise Conflict(
                f"the pieces of {key!r} leave a gap at offset {gap}: resend from offset {gap}",
                {"size": size},
            )
        if len(segments) == 1 and segments[0].skip == 0 and segments[0].length == size:
            # One piece (a short job's whole log): the bucket copies it, no bytes here.
            name, target = segments[0].piece.name, self._key(key)
            await self._run(
                lambda: self._client().copy_object(
                    Bucket=self._bucket,
                    Key=target,
                    CopySource={"Bucket": self._bucket, "Key": name},
                )
            )
            await self._delete_names([p.name for p in pieces])
            return
        self._spool.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=self._spool, prefix=".seal.")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as f:
                # A few pieces at a time: a long log has thousands of small ones.
                for start in range(0, len(segments), _SEAL_FETCHES):
                    batch = segments[start : start + _SEAL_FETCHES]
                    for data in await asyncio.gather(*(self._segment(key, s) for s in batch)):
                        f.write(data)
            await self.put_file(key, tmp, move=True)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        await self._delete_names([p.name for p in pieces])

    async def _segment(self, key: str, seg: Segment) -> bytes:
        chunks = [
            c async for c in self._read_object(seg.piece.name, seg.skip, seg.piece.size, key=key)
        ]
        return b"".join(chunks)

    async def append(self, key: str, offset: int, data: bytes, *, unsealed: bool = False) -> int:
        """Store the new bytes of the piece as an object of their own (see
        :mod:`jobyard.blobs.pieces`): one LIST of the pieces ending at ``offset`` or
        later, then one PUT when something is new. A first piece of an ``unsealed``
        blob is one PUT and nothing more (see :meth:`BlobStore.append`): the whole log of
        a short job costs the bucket one request while the job runs."""
        if offset < 0:
            raise InvalidInput("offset must not be negative", {"field": "offset"})
        if offset == 0 and unsealed:
            # Pieces stored before it at offset 0 (tries of this same request) hold the
            # same bytes: overlapping pieces are allowed, a piece at 0 leaves no gap.
            await self.put_piece(key, 0, data)
            return len(data)
        pieces = await self._pieces(key, after=offset - 1)
        if pieces:  # the pieces never leave a gap: the blob ends where the last one does
            size = max(p.end for p in pieces)
        else:  # the blob ends before offset: a gap, a first piece, or a sealed blob
            head = await self._head(key)
            if head is not None:
                sealed = int(head["ContentLength"])
                if offset + len(data) <= sealed:
                    return sealed
                raise Conflict(f"{key!r} is sealed: no piece is added to it any more")
            # At offset 0 the LIST above saw every piece (none); else see those before.
            size = layout(await self._pieces(key))[0] if offset > 0 else 0
        if offset > size:
            raise gap_refused(offset, size)
        skip = size - offset
        if skip < len(data) or not pieces:
            await self.put_piece(key, size, data[skip:])
            size += max(0, len(data) - skip)
        return size

    async def delete_piece(self, name: str) -> None:
        """Delete the piece ``put_piece`` answered ``name`` for."""
        await self._delete_names([name])

    def _pieces_folder(self, key: str) -> str:
        return self._key(key) + PARTS_SUFFIX

    async def _pieces(self, key: str, *, after: int = -1, limit: int = 0) -> list[Piece]:
        """The pieces of ``key`` ending past ``after`` (all by default), by offset;
        ``limit`` > 0 stops listing after that many objects."""
        folder = self._pieces_folder(key)
        start = ending_after(folder, after) if after >= 0 else ""
        objects = await self._list(folder, start_after=start, limit=limit)
        return parse_pieces(folder, [(str(o["Key"]), int(o.get("Size", 0))) for o in objects])

    async def pieces_size(self, key: str) -> int:
        """Bytes the stored pieces of ``key`` make from offset 0 (0 when none)."""
        return layout(await self._pieces(key))[0]

    async def put_piece(self, key: str, offset: int, data: bytes) -> str:
        """Store ``data`` as the piece of ``key`` at ``offset`` (no check: the caller
        knows the pieces end there); answer its object name, for :meth:`delete_piece`."""
        name = piece_name(self._pieces_folder(key), offset, len(data))
        await self._run(lambda: self._client().put_object(Bucket=self._bucket, Key=name, Body=data))
        return name

    async def spooled(self, prefix: str) -> list[str]:
        """Keys of the spool files under the folder ``prefix`` (temporary files excluded)."""
        root = self._spool.joinpath(*key_parts(prefix.rstrip("/")))

        def walk() -> list[str]:
            found = []
            for top, _dirs, names in os.walk(root):
                for name in names:
                    if not name.startswith("."):
                        found.append(Path(top, name).relative_to(self._spool).as_posix())
            return found

        return await asyncio.to_thread(walk)

    # -- reads -------------------------------------------------------------------------
    async def exists(self, key: str) -> bool:
        """A spool file on this host, an object in the bucket, or pieces of it."""
        if self.spool_path(key).is_file() or await self._head(key) is not None:
            return True
        return bool(await self._pieces(key, limit=1))

    async def size(self, key: str) -> int | None:
        """Size of the spool file while it grows here, else of the object, else of the
        bytes its pieces make so far."""
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            return self.spool_path(key).stat().st_size
        head = await self._head(key)
        if head is not None:
            return int(head["ContentLength"])
        pieces = await self._pieces(key)
        return layout(pieces)[0] if pieces else None

    async def modified_at(self, key: str) -> float | None:
        """The object's LastModified (a touch rewrites it)."""
        head = await self._head(key)
        return None if head is None else float(head["LastModified"].timestamp())

    async def read_chunks(
        self, key: str, *, offset: int = 0, chunk_size: int = 65536
    ) -> AsyncIterator[bytes]:
        """From the spool file while the blob grows on this host, else a ranged GET of
        the object, else the pieces in order (a sealed blob's pieces are never read)."""
        path = self.spool_path(key)
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed in the finally below
        except (FileNotFoundError, NotADirectoryError):
            pass
        else:
            try:
                f.seek(offset)
                while chunk := f.read(chunk_size):
                    yield chunk
            finally:
                f.close()
            return
        head = await self._head(key)
        if head is None:
            # The pieces a reader at ``offset`` needs, and the one ending there (so that
            # "nothing new yet" is told from "no such blob").
            pieces = await self._pieces(key, after=offset - 1)
            if pieces:
                async for chunk in self._read_pieces(key, pieces, offset, chunk_size):
                    yield chunk
                return
            head = await self._head(key)  # sealed between the HEAD and the LIST
            if head is None:
                if offset > 0 and await self._pieces(key, limit=1):
                    return  # a reader past the end of a growing blob: nothing yet
                raise NotFound(f"blob {key!r} not found", {"key": key})
        async for chunk in self._read_object(
            self._key(key), offset, int(head["ContentLength"]), key=key, chunk_size=chunk_size
        ):
            yield chunk

    async def _read_pieces(
        self, key: str, pieces: list[Piece], offset: int, chunk_size: int
    ) -> AsyncIterator[bytes]:
        """The bytes the pieces make from ``offset``; when a piece vanished (the blob was
        sealed meanwhile) the rest comes from the object."""
        _size, segments, _gap = layout(pieces, offset)
        for seg in segments:
            try:
                async for chunk in self._read_object(
                    seg.piece.name, seg.skip, seg.piece.size, key=key, chunk_size=chunk_size
                ):
                    offset += len(chunk)
                    yield chunk
            except NotFound:
                head = await self._head(key)
                if head is None:
                    raise
                async for chunk in self._read_object(
                    self._key(key), offset, int(head["ContentLength"]), key=key,
                    chunk_size=chunk_size,
                ):  # fmt: skip
                    yield chunk
                return

    async def get_file(self, key: str, dest: Path) -> int:
        """Download the object into ``dest`` (``NotFound`` when absent; its folder is made)."""
        name = self._key(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        await self._run(
            lambda: not_found_to(
                lambda: self._client().download_file(self._bucket, name, str(dest)), raise_=key
            )
        )
        return dest.stat().st_size

    async def materialize(self, key: str, dest: Path) -> Path:
        """Download into ``dest`` and answer it."""
        await self.get_file(key, dest)
        return dest

    async def list_children(self, prefix: str) -> list[tuple[str, float]]:
        """Entries right under ``prefix``: a sub-folder's time is its newest object's."""
        base = self._prefix_of(prefix.rstrip("/") + "/") if prefix else self._prefix_of("")
        newest: dict[str, float] = {}
        for obj in await self._list(base):
            name = str(obj["Key"])[len(base) :].split("/", 1)[0]
            when = float(obj["LastModified"].timestamp())
            if name and when > newest.get(name, 0.0):
                newest[name] = when
        return list(newest.items())

    # -- deletes and retention ---------------------------------------------------------

    async def delete_prefix(self, prefix: str) -> None:
        """Delete every object whose key starts with ``prefix`` (string prefix)."""
        objects = await self._list(self._prefix_of(prefix))
        await self._delete_names([str(o["Key"]) for o in objects])

    async def touch(self, key: str) -> bool:
        """Copy the object onto itself with new metadata: LastModified becomes now."""
        name = self._key(key)
        if await self._head(key) is None:
            return False
        await self._run(
            lambda: self._client().copy_object(
                Bucket=self._bucket,
                Key=name,
                CopySource={"Bucket": self._bucket, "Key": name},
                Metadata={"touched": "1"},
                MetadataDirective="REPLACE",
            )
        )
        return True

    async def rename(self, src: str, dst: str) -> bool:
        """Copy then delete (S3 has no rename: not atomic, but each step is whole)."""
        try:
            await self.copy(src, dst)
        except NotFound:
            return False
        await self._delete_names([self._key(src)])
        return True

    async def delete_batch(
        self, keys: list[str], prefixes: list[str], *, dry_run: bool = False
    ) -> tuple[int, int]:
        """Delete objects by key and by ``prefix/``; ``(objects, bytes)`` removed."""
        names: list[str] = []
        size = 0
        for key in keys:
            head = await self._head(key)
            if head is not None:
                names.append(self._key(key))
                size += int(head["ContentLength"])
        for prefix in prefixes:
            for obj in await self._list(self._prefix_of(prefix.rstrip("/") + "/")):
                names.append(str(obj["Key"]))
                size += int(obj.get("Size", 0))
        if not dry_run:
            await self._delete_names(names)
        return len(names), size
