"""A :class:`~jobyard.blobs.protocol.BlobStore` on an S3-compatible bucket (``boto3``).

Every blob is one object at ``<prefix>/<key>``. boto3 is synchronous, so each call runs
in a thread of the store's own pool (:data:`CALL_THREADS`), not the event loop's default
one: that has a handful of threads on a small host, shared with every other blocking
call, and a slow bucket would queue a job's log piece behind other calls for seconds.
boto3 is imported only when a bucket is configured (the ``s3`` extra), so the local
folder needs none of it.

A running job's log is not an object yet. A local slot appends to a spool file on its
own host (:meth:`S3BlobStore.spool_path`): readers on that host follow the spool file,
:mod:`jobyard.blobs.ship` uploads its new bytes as pieces every few seconds so the
other replicas follow it too, and :meth:`S3BlobStore.seal` uploads it whole when the job
ends. A remote worker's log arrives in pieces through any replica
(:meth:`S3BlobStore.append`): each is an object of its own (:mod:`jobyard.blobs.pieces`)
that every replica reads, and ``seal`` from any replica joins them into the final object.

Failures of the bucket become :class:`~jobyard.core.errors.BlobsUnavailable` (a 503):
with ``retry_after`` when they may pass (endpoint down, throttling, 5xx), without when
an operator must act (no such bucket, access denied, no credentials).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import tempfile
import threading
from collections.abc import AsyncIterable, AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

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
from jobyard.core.errors import BlobsUnavailable, Conflict, InvalidInput, NotFound

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

T = TypeVar("T")

log = logging.getLogger("jobyard.blobs")

#: Seconds a caller should wait before retrying after a transient bucket failure.
RETRY_AFTER_SECONDS = 2
_DELETE_BATCH = 1000  # the most keys one DeleteObjects request takes
_SEAL_FETCHES = 8  # pieces fetched at once when sealing
#: Bucket calls one server makes at once (each waits on the network, not the CPU).
CALL_THREADS = 32
#: Connections boto3 keeps to the bucket: one per calling thread plus the transfer
#: manager's own threads (10). boto3's default (10) is below that, and past it every
#: extra connection is opened and thrown away ("Connection pool is full").
POOL_CONNECTIONS = CALL_THREADS + 10
_MISSING = ("404", "NoSuchKey", "NotFound")
_TRANSIENT = (
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "ServiceUnavailable",
    "InternalError",
)


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix")`` (prefix may be empty)."""
    if not url.startswith("s3://"):
        raise ValueError(f"not an s3:// URL: {url!r}")
    bucket, _, prefix = url[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"{url!r} names no bucket: write s3://BUCKET[/PREFIX]")
    return bucket, prefix.strip("/")


class S3BlobStore:
    """Blobs as objects of ``bucket`` under ``prefix``; growing logs spool under ``spool``."""

    def __init__(
        self,
        bucket: str,
        prefix: str,
        *,
        spool: Path,
        endpoint_url: str | None = None,
        client: S3Client | None = None,
    ) -> None:
        self._bucket = bucket
        self._prefix = prefix.strip("/")
        self._spool = spool
        self._endpoint = endpoint_url
        self._client_obj = client
        self._client_lock = threading.Lock()  # calls run in threads: build one client
        self._threads: ThreadPoolExecutor | None = None
        #: The bucket answered once: from then on a 404 means a missing object, not a
        #: missing bucket (HEAD answers a bare 404 for both).
        self._bucket_seen = False

    @property
    def where(self) -> str:
        """The bucket and prefix, for messages."""
        return f"s3://{self._bucket}/{self._prefix}".rstrip("/")

    def _client(self) -> S3Client:
        with self._client_lock:
            if self._client_obj is None:
                try:
                    import boto3
                except ImportError as exc:
                    raise BlobsUnavailable(
                        "JOBYARD_BLOBS_URL names an S3 bucket but boto3 is not installed: "
                        "install jobyard[s3]"
                    ) from exc
                from botocore.config import Config

                # endpoint_url None lets boto3 read AWS_ENDPOINT_URL and its own config.
                session = boto3.session.Session()
                self._client_obj = session.client(
                    "s3",
                    endpoint_url=self._endpoint,
                    config=Config(max_pool_connections=POOL_CONNECTIONS),
                )
            return self._client_obj

    def _check_bucket(self) -> None:
        """One HEAD of the bucket before the first call, so that a missing bucket is
        reported as such rather than as missing blobs."""
        from botocore.exceptions import ClientError

        try:
            self._client().head_bucket(Bucket=self._bucket)
        except ClientError as exc:
            meta = exc.response.get("ResponseMetadata", {})
            if int(meta.get("HTTPStatusCode", 0) or 0) == 404:
                exc.response.setdefault("Error", {})["Code"] = "NoSuchBucket"
            raise
        self._bucket_seen = True

    def _key(self, key: str) -> str:
        key_parts(key)
        return f"{self._prefix}/{key}" if self._prefix else key

    def _prefix_of(self, prefix: str) -> str:
        """Object-name prefix of a key prefix (``""`` is the whole store)."""
        if not prefix:
            return f"{self._prefix}/" if self._prefix else ""
        key_parts(prefix.rstrip("/"))
        return self._key(prefix.rstrip("/")) + ("/" if prefix.endswith("/") else "")

    # -- calling the bucket ------------------------------------------------------------
    async def _run(self, fn: Callable[[], T]) -> T:
        if self._threads is None:
            self._threads = ThreadPoolExecutor(CALL_THREADS, thread_name_prefix="jobyard-s3")
        return await asyncio.get_running_loop().run_in_executor(
            self._threads, functools.partial(self._guard, fn)
        )

    def _guard(self, fn: Callable[[], T]) -> T:
        """Call ``fn`` translating the bucket's failures into domain errors."""
        from boto3.exceptions import S3TransferFailedError, S3UploadFailedError
        from botocore import exceptions as bx

        try:
            if not self._bucket_seen:
                self._check_bucket()
            return fn()
        except bx.ClientError as exc:
            raise self._client_error(exc) from exc
        except (S3UploadFailedError, S3TransferFailedError) as exc:
            # The transfer manager wraps the bucket's answer: judge by what it wrapped.
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, bx.ClientError):
                raise self._client_error(cause) from exc
            log.warning("transfer with blob store %s failed: %s", self.where, exc)
            raise BlobsUnavailable(
                f"a transfer with the blob store {self.where} failed; retry shortly",
                {"blobs": self.where},
                retry_after=RETRY_AFTER_SECONDS,
            ) from exc
        except (bx.NoCredentialsError, bx.PartialCredentialsError) as exc:
            raise BlobsUnavailable(
                f"no AWS credentials for the blob store {self.where}: set AWS_ACCESS_KEY_ID "
                "and AWS_SECRET_ACCESS_KEY (or a profile) for the server and workers",
                {"blobs": self.where},
            ) from exc
        except (bx.EndpointConnectionError, bx.ConnectionError, bx.HTTPClientError) as exc:
            # The endpoint's address goes to the server log, not to the caller.
            log.warning("blob store %s unreachable: %s", self.where, exc)
            raise BlobsUnavailable(
                f"the blob store {self.where} does not answer; retry shortly",
                {"blobs": self.where},
                retry_after=RETRY_AFTER_SECONDS,
            ) from exc

    def _client_error(self, exc: Any) -> Exception:
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        details = {"blobs": self.where, "s3_code": code}
        if code in _MISSING:
            return NotFound("blob not found", details)
        if code == "NoSuchBucket":
            return BlobsUnavailable(
                f"the bucket of the blob store {self.where} does not exist: create it or fix "
                "JOBYARD_BLOBS_URL",
                details,
            )
        if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch") or status == 403:
            return BlobsUnavailable(
                f"the blob store {self.where} refused access ({code or status}): check the AWS "
                "credentials and the bucket policy",
                details,
            )
        if code in _TRANSIENT or status >= 500 or status == 429:
            return BlobsUnavailable(
                f"the blob store {self.where} failed ({code or status}); retry shortly",
                details,
                retry_after=RETRY_AFTER_SECONDS,
            )
        return BlobsUnavailable(f"the blob store {self.where} answered {code or status}", details)

    async def _head(self, key: str) -> dict[str, Any] | None:
        name = self._key(key)

        def head() -> dict[str, Any] | None:
            return dict(self._client().head_object(Bucket=self._bucket, Key=name))

        return await self._run(lambda: _not_found_to(head))

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

    async def _read_object(
        self, name: str, offset: int, size: int, *, key: str, chunk_size: int = 65536
    ) -> AsyncIterator[bytes]:
        """A ranged GET of the object ``name`` (``size`` bytes) from ``offset``."""
        if offset >= size:
            return
        body = await self._run(
            lambda: _not_found_to(
                lambda: self._client().get_object(
                    Bucket=self._bucket, Key=name, Range=f"bytes={offset}-"
                )["Body"],
                raise_=key,
            )
        )
        try:
            while chunk := await self._run(lambda: body.read(chunk_size)):
                yield chunk
        finally:
            body.close()

    async def get_file(self, key: str, dest: Path) -> int:
        """Download the object into ``dest`` (``NotFound`` when absent; its folder is made)."""
        name = self._key(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        await self._run(
            lambda: _not_found_to(
                lambda: self._client().download_file(self._bucket, name, str(dest)), raise_=key
            )
        )
        return dest.stat().st_size

    async def materialize(self, key: str, dest: Path) -> Path:
        """Download into ``dest`` and answer it."""
        await self.get_file(key, dest)
        return dest

    async def _list(
        self, prefix: str, *, start_after: str = "", limit: int = 0
    ) -> list[dict[str, Any]]:
        """Every object whose name starts with ``prefix`` (an object-name prefix), or
        those named after ``start_after``; ``limit`` > 0: that many at most."""

        def walk() -> list[dict[str, Any]]:
            pages = self._client().get_paginator("list_objects_v2")
            found: list[dict[str, Any]] = []
            args: dict[str, Any] = {"Bucket": self._bucket, "Prefix": prefix}
            if start_after:
                args["StartAfter"] = start_after
            if limit:
                args["PaginationConfig"] = {"MaxItems": limit}
            for page in pages.paginate(**args):
                found.extend(dict(o) for o in page.get("Contents", []))
            return found

        return await self._run(walk)

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
    async def _delete_names(self, names: list[str]) -> None:
        for start in range(0, len(names), _DELETE_BATCH):
            await self._run(
                functools.partial(self._delete_some, names[start : start + _DELETE_BATCH])
            )

    def _delete_some(self, names: list[str]) -> None:
        objects: list[Any] = [{"Key": n} for n in names]
        self._client().delete_objects(
            Bucket=self._bucket, Delete={"Objects": objects, "Quiet": True}
        )

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


def _not_found_to(fn: Callable[[], T], raise_: str | None = None) -> T:
    """Run ``fn``; a 404 of the bucket is ``NotFound`` (or None when ``raise_`` is unset)."""
    from botocore import exceptions as bx

    try:
        return fn()
    except bx.ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code not in _MISSING:
            raise
        if raise_ is not None:
            raise NotFound(f"blob {raise_!r} not found", {"key": raise_}) from exc
        return None  # type: ignore[return-value]
