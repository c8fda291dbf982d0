"""An async client of the jobyard REST API (``/api/v1``), one method per endpoint.

The CLI is its first user, but nothing here knows about the terminal: methods return
the decoded JSON objects of the API and raise :class:`ApiError` (the server answered
with an error body) or :class:`ServerUnreachable` (no answer at all), so callers can
tell "the server said no" from "there is no server".
"""

from __future__ import annotations

import codecs
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from urllib.parse import quote

import httpx

from jobyard.client_admin import AdminCalls
from jobyard.client_types import API, JsonObject, Page
from jobyard.client_types import params as _params

__all__ = ["API", "ApiClient", "ApiError", "JsonObject", "Page", "ServerUnreachable"]

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
#: Long-lived streams (log follow, downloads) may stay quiet for as long as a job runs.
STREAM_TIMEOUT = httpx.Timeout(None, connect=10.0)


class ClientError(Exception):
    """Base of the errors the client raises: the server refused, or could not be reached."""


class ApiError(ClientError):
    """The server answered with an error: HTTP status plus the ``{"error": ...}`` body."""

    def __init__(
        self, status: int, code: str, message: str, details: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(f"{message} (HTTP {status} {code})")
        self.status = status
        self.code = code
        self.message = message
        self.details: dict[str, Any] = dict(details or {})


class ServerUnreachable(ClientError):
    """No HTTP answer: connection refused, DNS failure, timeout, dropped connection."""

    def __init__(self, url: str, cause: BaseException) -> None:
        super().__init__(f"cannot reach jobyard at {url}: {cause}")
        self.url = url
        self.cause = cause

    @property
    def refused(self) -> bool:
        """Whether nothing listens at the URL (the server is probably not started)."""
        return isinstance(self.cause, httpx.ConnectError)


@dataclass(frozen=True, slots=True)
class AbortResult:
    """The answer to an abort: the job, and whether it has already ended (200) or not (202)."""

    job: JsonObject
    ended: bool


@dataclass(frozen=True, slots=True)
class UploadFile:
    """A file to send as a multipart field: a path on disk, or an open binary stream."""

    filename: str
    source: Path | IO[bytes]
    content_type: str = "application/octet-stream"


def error_from_response(response: httpx.Response) -> ApiError:
    """Build an :class:`ApiError` from an error response, tolerating non-JSON bodies."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        details = err.get("details")
        return ApiError(
            status,
            str(err.get("code") or "error"),
            str(err.get("message") or response.reason_phrase),
            details if isinstance(details, dict) else ({"details": details} if details else {}),
        )
    if isinstance(body, dict) and "detail" in body:  # a framework default error body
        return ApiError(status, "http_error", str(body["detail"]))
    text = response.text.strip()
    return ApiError(status, "http_error", text[:300] or response.reason_phrase or "error")


class ApiClient(AdminCalls):
    """An authenticated session with one jobyard server; use it as an async context manager."""

    def __init__(
        self,
        server: str,
        token: str,
        *,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.server = server.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(
            base_url=self.server, headers=headers, timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the underlying connections."""
        await self._http.aclose()

    # -- plumbing ---------------------------------------------------------------------

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServerUnreachable(self.server, exc) from exc
        if response.is_error:
            raise error_from_response(response)
        return response

    async def _json(self, method: str, path: str, **kwargs: Any) -> JsonObject:
        response = await self._send(method, path, **kwargs)
        body = response.json()
        if not isinstance(body, dict):
            raise ApiError(response.status_code, "bad_response", "expected a JSON object")
        return body

    async def _page(self, path: str, params: httpx.QueryParams) -> Page:
        body = await self._json("GET", path, params=params)
        return Page(items=list(body.get("items") or []), next_cursor=body.get("next_cursor"))

    async def _upload(
        self, path: str, upload: UploadFile, data: Mapping[str, str] | None = None
    ) -> JsonObject:
        if isinstance(upload.source, Path):
            with upload.source.open("rb") as stream:
                return await self._post_file(path, upload, stream, data)
        return await self._post_file(path, upload, upload.source, data)

    async def _post_file(
        self,
        path: str,
        upload: UploadFile,
        stream: IO[bytes],
        data: Mapping[str, str] | None,
    ) -> JsonObject:
        files = {"file": (upload.filename, stream, upload.content_type)}
        return await self._json("POST", path, files=files, data=dict(data or {}))

    # -- health -----------------------------------------------------------------------

    async def health(self) -> JsonObject:
        """``GET /healthz`` (no authentication needed)."""
        response = await self._send("GET", "/healthz")
        try:
            body = response.json()
        except ValueError:
            return {"status": response.text.strip()}
        return body if isinstance(body, dict) else {"status": body}

    # -- workers ----------------------------------------------------------------------

    async def workers_list(
        self, *, cursor: str | None = None, limit: int | None = None
    ) -> JsonObject:
        """``GET /workers``: one page of workers, with the totals over all of them."""
        return await self._json("GET", f"{API}/workers", params=_params(cursor=cursor, limit=limit))

    async def worker_drain(self, worker_id: str) -> JsonObject:
        """``POST /workers/{id}/drain``: ask a worker to drain (admins)."""
        return await self._json("POST", f"{API}/workers/{quote(worker_id, safe='')}/drain")

    # -- packages ---------------------------------------------------------------------

    async def package_upload(self, upload: UploadFile) -> JsonObject:
        """``POST /packages``: store a package; the same bytes give the same package."""
        return await self._upload(f"{API}/packages", upload)

    async def packages_list(self, *, cursor: str | None = None, limit: int | None = None) -> Page:
        """``GET /packages``: one page of packages."""
        return await self._page(f"{API}/packages", _params(cursor=cursor, limit=limit))

    async def package_get(self, package_id: int) -> JsonObject:
        """``GET /packages/{id}``."""
        return await self._json("GET", f"{API}/packages/{package_id}")

    async def package_find(self, sha256: str) -> JsonObject | None:
        """``GET /packages?sha256=``: the package with these bytes, or None."""
        page = await self._page(f"{API}/packages", httpx.QueryParams(sha256=sha256))
        return page.items[0] if page.items else None

    # -- configuration as code --------------------------------------------------------

    async def apply_schema(self) -> JsonObject:
        """``GET /apply``: the JSON Schema of apply documents (404 on an older server)."""
        return await self._json("GET", f"{API}/apply")

    async def apply(self, document: Mapping[str, Any], *, dry_run: bool) -> JsonObject:
        """``POST /apply``: apply a document (JSON form), or answer its plan."""
        params = httpx.QueryParams(dry_run="true" if dry_run else "false")
        return await self._json("POST", f"{API}/apply", json=dict(document), params=params)

    async def export(self, names: Sequence[str]) -> str:
        """``GET /export``: the YAML document of the named jobconfigs (all when none)."""
        pairs: list[tuple[str, str | int | float | bool | None]] = [("name", n) for n in names]
        params = httpx.QueryParams([*pairs, ("format", "yaml")])
        response = await self._send("GET", f"{API}/export", params=params)
        return response.text

    # -- jobconfigs -------------------------------------------------------------------

    async def jobconfig_create(self, spec: Mapping[str, Any]) -> JsonObject:
        """``POST /jobconfigs``: create a jobconfig (201)."""
        return await self._json("POST", f"{API}/jobconfigs", json=dict(spec))

    async def jobconfigs_list(
        self, *, name: str | None = None, cursor: str | None = None, limit: int | None = None
    ) -> Page:
        """``GET /jobconfigs``: one page of jobconfigs, optionally only the one named ``name``."""
        return await self._page(f"{API}/jobconfigs", _params(name=name, cursor=cursor, limit=limit))

    async def jobconfig_get(self, jobconfig_id: int) -> JsonObject:
        """``GET /jobconfigs/{id}``."""
        return await self._json("GET", f"{API}/jobconfigs/{jobconfig_id}")

    async def jobconfig_find(self, name: str) -> JsonObject | None:
        """The jobconfig named ``name``, or ``None`` when there is none."""
        page = await self.jobconfigs_list(name=name)
        for item in page.items:
            if item.get("name") == name:
                return item
        return None

    async def jobconfig_replace(self, jobconfig_id: int, spec: Mapping[str, Any]) -> JsonObject:
        """``PUT /jobconfigs/{id}``: replace every writable field."""
        return await self._json("PUT", f"{API}/jobconfigs/{jobconfig_id}", json=dict(spec))

    async def jobconfig_patch(self, jobconfig_id: int, changes: Mapping[str, Any]) -> JsonObject:
        """``PATCH /jobconfigs/{id}``: change only the given fields."""
        return await self._json("PATCH", f"{API}/jobconfigs/{jobconfig_id}", json=dict(changes))

    async def jobconfig_delete(self, jobconfig_id: int) -> None:
        """``DELETE /jobconfigs/{id}`` (204)."""
        await self._send("DELETE", f"{API}/jobconfigs/{jobconfig_id}")

    async def jobconfig_run(
        self,
        jobconfig_id: int,
        *,
        macros: Mapping[str, str] | None = None,
        hold: bool = False,
    ) -> JsonObject:
        """``POST /jobconfigs/{id}/run``: submit a job of the jobconfig (201)."""
        body: JsonObject = {"macros": dict(macros or {})}
        if hold:
            body["hold"] = True
        return await self._json("POST", f"{API}/jobconfigs/{jobconfig_id}/run", json=body)

    # -- schedules ----------------------------------------------------------------------

    def _schedules(self, jobconfig_id: int, schedule_id: int | None = None) -> str:
        path = f"{API}/jobconfigs/{jobconfig_id}/schedules"
        return path if schedule_id is None else f"{path}/{schedule_id}"

    async def schedules_list(self, jobconfig_id: int) -> list[JsonObject]:
        """``GET /jobconfigs/{id}/schedules``: the jobconfig's schedules, with next fire times."""
        body = await self._json("GET", self._schedules(jobconfig_id))
        return list(body.get("items") or [])

    async def schedule_create(self, jobconfig_id: int, spec: Mapping[str, Any]) -> JsonObject:
        """``POST /jobconfigs/{id}/schedules``: add a cron or interval schedule (201)."""
        return await self._json("POST", self._schedules(jobconfig_id), json=dict(spec))

    async def schedule_get(self, jobconfig_id: int, schedule_id: int) -> JsonObject:
        """``GET /jobconfigs/{id}/schedules/{sid}``."""
        return await self._json("GET", self._schedules(jobconfig_id, schedule_id))

    async def schedule_replace(
        self, jobconfig_id: int, schedule_id: int, spec: Mapping[str, Any]
    ) -> JsonObject:
        """``PUT /jobconfigs/{id}/schedules/{sid}``: replace every writable field."""
        path = self._schedules(jobconfig_id, schedule_id)
        return await self._json("PUT", path, json=dict(spec))

    async def schedule_patch(
        self, jobconfig_id: int, schedule_id: int, changes: Mapping[str, Any]
    ) -> JsonObject:
        """``PATCH /jobconfigs/{id}/schedules/{sid}``: change only the given fields."""
        path = self._schedules(jobconfig_id, schedule_id)
        return await self._json("PATCH", path, json=dict(changes))

    async def schedule_delete(self, jobconfig_id: int, schedule_id: int) -> None:
        """``DELETE /jobconfigs/{id}/schedules/{sid}`` (204; the jobs it made stay)."""
        await self._send("DELETE", self._schedules(jobconfig_id, schedule_id))

    async def schedule_pause(self, jobconfig_id: int, schedule_id: int) -> JsonObject:
        """``POST /jobconfigs/{id}/schedules/{sid}/pause``: stop firing (idempotent)."""
        path = self._schedules(jobconfig_id, schedule_id)
        return await self._json("POST", f"{path}/pause")

    async def schedule_resume(self, jobconfig_id: int, schedule_id: int) -> JsonObject:
        """``POST /jobconfigs/{id}/schedules/{sid}/resume``: fire again from now on."""
        path = self._schedules(jobconfig_id, schedule_id)
        return await self._json("POST", f"{path}/resume")

    # -- jobs -------------------------------------------------------------------------

    async def job_submit(self, spec: Mapping[str, Any]) -> JsonObject:
        """``POST /jobs``: an ad-hoc job, without a jobconfig (201)."""
        return await self._json("POST", f"{API}/jobs", json=dict(spec))

    async def jobs_list(
        self,
        *,
        jobconfig_id: int | None = None,
        statuses: Sequence[str] = (),
        cursor: str | None = None,
        limit: int | None = None,
    ) -> Page:
        """``GET /jobs``: one page of jobs, newest first, filtered."""
        params = _params(
            jobconfig_id=jobconfig_id, status=list(statuses) or None, cursor=cursor, limit=limit
        )
        return await self._page(f"{API}/jobs", params)

    async def job_get(self, job_id: int) -> JsonObject:
        """``GET /jobs/{id}``."""
        return await self._json("GET", f"{API}/jobs/{job_id}")

    async def job_cancel(self, job_id: int) -> JsonObject:
        """``POST /jobs/{id}/cancel``: before a worker acquired it; 409 afterwards."""
        return await self._json("POST", f"{API}/jobs/{job_id}/cancel")

    async def job_abort(self, job_id: int) -> AbortResult:
        """``POST /jobs/{id}/abort``: stop a held job; 202 while it is still stopping."""
        response = await self._send("POST", f"{API}/jobs/{job_id}/abort")
        body = response.json() if response.content else {}
        return AbortResult(
            job=body if isinstance(body, dict) else {}, ended=response.status_code == 200
        )

    async def job_release(self, job_id: int) -> JsonObject:
        """``POST /jobs/{id}/release``: a WAITING job goes on to SEQUENCED."""
        return await self._json("POST", f"{API}/jobs/{job_id}/release")

    async def job_rerun(self, job_id: int) -> JsonObject:
        """``POST /jobs/{id}/rerun``: a new job repeating this one (201)."""
        return await self._json("POST", f"{API}/jobs/{job_id}/rerun")

    async def job_payload_upload(
        self, job_id: int, upload: UploadFile, *, name: str | None = None
    ) -> JsonObject:
        """``POST /jobs/{id}/payload``: attach an input file while the job is WAITING."""
        data = {"name": name} if name else None
        return await self._upload(f"{API}/jobs/{job_id}/payload", upload, data)

    async def job_events(self, job_id: int) -> list[JsonObject]:
        """``GET /jobs/{id}/events``: the recorded transitions, oldest first."""
        body = await self._json("GET", f"{API}/jobs/{job_id}/events")
        return list(body.get("items") or [])

    async def job_outputs(self, job_id: int) -> list[JsonObject]:
        """``GET /jobs/{id}/outputs``: the output files kept when the job ended."""
        body = await self._json("GET", f"{API}/jobs/{job_id}/outputs")
        return list(body.get("items") or [])

    async def job_log(self, job_id: int, *, offset: int = 0) -> bytes:
        """``GET /jobs/{id}/log``: the log as it is now, from byte ``offset``."""
        params = _params(offset=offset or None)
        response = await self._send("GET", f"{API}/jobs/{job_id}/log", params=params)
        return response.content

    async def job_log_follow(self, job_id: int, *, offset: int = 0) -> AsyncIterator[bytes]:
        """``GET /jobs/{id}/log?follow=true``: the log's bytes as they are written.

        The stream ends when the job has ended and its log has been sent in full.
        """
        params = _params(follow=True, offset=offset or None)
        async for chunk in self._stream(f"{API}/jobs/{job_id}/log", params):
            yield chunk

    async def job_output_download(
        self, job_id: int, name: str, sink: Callable[[bytes], object]
    ) -> int:
        """``GET /jobs/{id}/outputs/{name}``: hand the file's bytes to ``sink``; return the size."""
        size = 0
        path = f"{API}/jobs/{job_id}/outputs/{quote(name, safe='')}"
        async for chunk in self._stream(path, httpx.QueryParams()):
            result = sink(chunk)
            if inspect.isawaitable(result):
                await result
            size += len(chunk)
        return size

    async def _stream(self, path: str, params: httpx.QueryParams) -> AsyncIterator[bytes]:
        try:
            async with self._http.stream(
                "GET", path, params=params, timeout=STREAM_TIMEOUT
            ) as response:
                if response.is_error:
                    await response.aread()
                    raise error_from_response(response)
                async for chunk in response.aiter_bytes():
                    yield chunk
        except httpx.TransportError as exc:
            raise ServerUnreachable(self.server, exc) from exc


async def collect_all(
    fetch: Callable[[str | None], Awaitable[Page]], *, max_items: int | None = None
) -> list[JsonObject]:
    """Follow ``next_cursor`` from the first page to the last (or ``max_items``)."""
    items: list[JsonObject] = []
    cursor: str | None = None
    while True:
        page = await fetch(cursor)
        items.extend(page.items)
        if max_items is not None and len(items) >= max_items:
            return items[:max_items]
        if not page.next_cursor or not page.items:
            return items
        cursor = page.next_cursor


class Utf8Stream:
    """Decode a byte stream chunk by chunk without splitting a multi-byte character."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, chunk: bytes) -> str:
        """Decode the next chunk; an incomplete trailing character waits for the next one."""
        return self._decoder.decode(chunk)

    def flush(self) -> str:
        """Decode whatever is left at the end of the stream."""
        return self._decoder.decode(b"", final=True)
