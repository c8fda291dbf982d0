"""Domain errors. The API maps each to one HTTP status in one place."""

from __future__ import annotations

from typing import Any


class JobyardError(Exception):
    """Base of every error a caller is meant to see; carries a stable code and details."""

    code = "error"

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}


class NotFound(JobyardError):
    """The object does not exist (or the caller may not know it does)."""

    code = "not_found"


class Conflict(JobyardError):
    """The request is valid but the object's current state does not allow it."""

    code = "conflict"


class InvalidInput(JobyardError):
    """The request is malformed or names something unusable (HTTP 400/422)."""

    code = "invalid_input"


class InvalidCursor(InvalidInput):
    """A page cursor that does not decode to a position this server could have written."""

    code = "invalid_cursor"


class UnsafePackage(InvalidInput):
    """An archive entry would escape the workspace or break a limit."""

    code = "unsafe_package"


class TooLarge(JobyardError):
    """An upload or archive exceeds a configured size limit."""

    code = "too_large"


class Unauthorized(JobyardError):
    """No credentials, or credentials that are not valid."""

    code = "unauthorized"


class Forbidden(JobyardError):
    """Valid credentials without the right to do this."""

    code = "forbidden"


class DatabaseUnavailable(JobyardError):
    """The database cannot be reached (or stays locked) right now: try again shortly.

    Not a failure of the request itself, so callers answer 503 and workers retry.
    ``committed`` tells whether a write may have taken effect: ``False`` when it failed
    before its commit was sent (nothing happened), ``None`` when the connection broke
    while the commit was in flight (it may or may not have happened, so only an
    idempotent write may simply be repeated).
    """

    code = "database_unavailable"

    def __init__(
        self,
        message: str,
        details: dict[str, Any] | None = None,
        *,
        committed: bool | None = False,
        retry_after: int = 2,
    ) -> None:
        super().__init__(message, details)
        self.committed = committed
        self.retry_after = retry_after


class BlobsUnavailable(JobyardError):
    """The blob store (a bucket, an endpoint, a mounted folder) refused or did not answer.

    Answered as 503: the request was fine, storage was not. ``retry_after`` is set when
    the failure may pass by itself (endpoint down, throttling) and None when an operator
    must fix something first (no such bucket, access denied, missing credentials).
    """

    code = "blobs_unavailable"

    def __init__(
        self,
        message: str,
        details: dict[str, Any] | None = None,
        *,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message, details)
        self.retry_after = retry_after
