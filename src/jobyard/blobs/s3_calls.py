"""Calling an S3-compatible bucket with ``boto3``: the client, the threads the calls run
in, and the translation of the bucket's failures into domain errors.

boto3 is synchronous, so each call runs in a thread of the store's own pool
(:data:`CALL_THREADS`), not the event loop's default one: that has a handful of threads
on a small host, shared with every other blocking call, and a slow bucket would queue a
job's log piece behind other calls for seconds. boto3 is imported only when a bucket is
configured (the ``s3`` extra), so the local folder needs none of it.

Failures of the bucket become :class:`~jobyard.core.errors.BlobsUnavailable` (a 503):
with ``retry_after`` when they may pass (endpoint down, throttling, 5xx), without when
an operator must act (no such bucket, access denied, no credentials).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from jobyard.blobs.local import key_parts
from jobyard.core.errors import BlobsUnavailable, NotFound

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

T = TypeVar("T")

log = logging.getLogger("jobyard.blobs")

#: Seconds a caller should wait before retrying after a transient bucket failure.
RETRY_AFTER_SECONDS = 2
_DELETE_BATCH = 1000  # the most keys one DeleteObjects request takes
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


class S3Calls:
    """The calls :class:`~jobyard.blobs.s3.S3BlobStore` makes to its bucket."""

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

        return await self._run(lambda: not_found_to(head))

    async def _read_object(
        self, name: str, offset: int, size: int, *, key: str, chunk_size: int = 65536
    ) -> AsyncIterator[bytes]:
        """A ranged GET of the object ``name`` (``size`` bytes) from ``offset``."""
        if offset >= size:
            return
        body = await self._run(
            lambda: not_found_to(
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


def not_found_to(fn: Callable[[], T], raise_: str | None = None) -> T:
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
