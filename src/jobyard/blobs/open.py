"""Choose the blob store adapter from its URL (``JOBYARD_BLOBS_URL``)."""

from __future__ import annotations

from pathlib import Path

from jobyard.blobs.local import LocalBlobStore
from jobyard.blobs.protocol import BlobStore


def open_blob_store(url: str, *, folder: Path, endpoint_url: str = "") -> BlobStore:
    """The local ``folder`` (a ``file://`` URL or none) or an S3-compatible bucket (``s3://``).

    ``folder`` is the settings' ``effective_blobs_dir``: the blob folder itself, or for a
    bucket the home of its local spool (growing logs, downloads), which the job sandbox
    hides from jobs like the blob folder. ``endpoint_url`` empty lets boto3 choose
    (``AWS_ENDPOINT_URL``, its config files, AWS itself).
    """
    if url.startswith("s3://"):
        from jobyard.blobs.s3 import S3BlobStore, parse_s3_url  # boto3 only when used

        bucket, prefix = parse_s3_url(url)
        return S3BlobStore(
            bucket, prefix, spool=folder / "spool", endpoint_url=endpoint_url or None
        )
    return LocalBlobStore(folder)
