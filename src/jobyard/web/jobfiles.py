"""A job's output files, downloaded from the console (``GET /jobs/{id}/outputs/NAME``)."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import Request
from starlette.responses import Response, StreamingResponse

from jobyard.core.errors import JobyardError
from jobyard.service import jobs
from jobyard.web.pages import ctx_of, error_page, finish, new_router, path_id, signed_in, to_login
from jobyard.web.routes import DOWNLOAD_HEADERS

router = new_router()


@router.get("/jobs/{job_id}/outputs/{name:path}")
async def output_file(request: Request, job_id: str, name: str) -> Response:
    """One output file of a job the user may view, as an attachment (the API's use case)."""
    resolved = await signed_in(request)
    if resolved is None:
        return to_login(request)
    try:
        number = path_id(job_id, "no such job")
        record, chunks = await jobs.output(ctx_of(request), resolved.principal, number, name)
    except JobyardError as exc:
        return error_page(request, resolved, exc)
    base = record.name.rsplit("/", 1)[-1]
    ascii_name = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in base)
    disposition = f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(base)}"
    response = StreamingResponse(
        chunks,
        media_type="application/octet-stream",
        headers={
            **DOWNLOAD_HEADERS,
            "Content-Disposition": disposition,
            "Content-Length": str(record.size),
        },
    )
    return finish(request, resolved, response)
