"""Choose the blob store adapter from the settings (``JOBYARD_BLOBS_URL``)."""

from __future__ import annotations

from jobyard.blobs.local import LocalBlobStore
from jobyard.blobs.protocol import BlobStore
from jobyard.settings import Settings


def open_blob_store(settings: Settings) -> BlobStore:
    """The local folder (``file://`` or unset) or an S3-compatible bucket (``s3://``).

    A bucket's growing logs spool in the local blob folder (``effective_blobs_dir``),
    which the job sandbox already hides from jobs.
    """
    url = settings.blobs_url
    if url.startswith("s3://"):
        from jobyard.blobs.s3 import S3BlobStore, parse_s3_url

        bucket, prefix = parse_s3_url(url)
        return S3BlobStore(
            bucket,
            prefix,
            spool=settings.effective_blobs_dir / "spool",
            endpoint_url=settings.s3_endpoint_url or None,
        )
    return LocalBlobStore(settings.effective_blobs_dir)
