"""Files posted from console forms, held to the API's upload limits.

A console form that carries a file (a package, a payload) is multipart, like the API's
uploads, and is received the same way: the API's body limits and per-user concurrency
cap apply at the door (:mod:`jobyard.api.limits` lists the console's upload routes), and
:func:`jobyard.service.uploads.receive_upload` copies the file to a private temporary file
while holding it to ``upload_max_bytes``. What the door refuses is answered with a page
(:func:`refusal_page`), not the API's JSON.
"""

from __future__ import annotations

import hashlib

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request, cookie_parser
from starlette.responses import Response

from jobyard.core.errors import (
    DatabaseUnavailable,
    InvalidInput,
    JobyardError,
    TooLarge,
    UnsafePackage,
)
from jobyard.web import session as sessions
from jobyard.web.guard import PAGE_HEADERS
from jobyard.web.pages import STATUS_OF, view
from jobyard.web.render import ENV
from jobyard.web.session import COOKIE


def form_file(form: FormData, field: str) -> UploadFile | None:
    """The file posted in ``field``, or None when the user chose none.

    A browser sends an empty part with an empty file name for a file field left empty.
    A plain text value where a file belongs means the form was not posted as
    ``multipart/form-data``: refused (422) saying so.
    """
    value = form.get(field)
    if value is None or value == "":
        return None
    if not isinstance(value, UploadFile):
        raise InvalidInput(
            f"{field!r} must be a file posted as multipart/form-data", {"field": field}
        )
    if not value.filename:
        return None
    return value


def text_field(form: FormData, field: str) -> str:
    """A text field's value ('' when missing); a file where text belongs is refused."""
    value = form.get(field)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInput(f"{field!r} must be text, not a file", {"field": field})
    return value


def upload_owner(cookie_header: bytes | None) -> str:
    """Who an upload to the console counts against, for the per-user concurrency cap.

    The door runs before the console reads its session, so it counts per session
    cookie (a digest of it, never the cookie itself). A request without a session is
    refused by the console before it reads the body, so it cannot occupy a slot for long.
    """
    cookies = cookie_parser(cookie_header.decode("latin-1")) if cookie_header else {}
    value = cookies.get(COOKIE, "")
    return "console:" + hashlib.sha256(value.encode()).hexdigest()[:32]


def refusal_page(path: str, status: int, message: str) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The body and headers of a page answering an upload the door refused (413, 429)."""
    html = ENV.get_template("error.html").render(
        request_path=path, status=status, message=message, user=None, csrf_token=None
    )
    headers = [(k.lower().encode(), v.encode()) for k, v in PAGE_HEADERS.items()]
    return html.encode(), [(b"content-type", b"text/html; charset=utf-8"), *headers]


def error_status(exc: JobyardError) -> int:
    """The status the API answers for ``exc`` on an upload: an unsafe or unreadable
    archive 400, a file over the limit 413, the rest as every console page."""
    if isinstance(exc, UnsafePackage):
        return 400
    if isinstance(exc, TooLarge):
        return 413
    return next((status for cls, status in STATUS_OF if isinstance(exc, cls)), 400)


def human_size(size: int) -> str:
    """Bytes for people: ``812 B``, ``3.4 KiB``, ``512.0 MiB``."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def upload_error_page(request: Request, resolved: sessions.Resolved, exc: JobyardError) -> Response:
    """The error page of a form that carried a file, with the API's status for it."""
    status = error_status(exc)
    response = view(
        request, resolved, "error.html", {"status": status, "message": exc.message}, status=status
    )
    if isinstance(exc, DatabaseUnavailable):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response
