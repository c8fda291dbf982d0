"""The API client against a mock transport: requests sent, answers and errors decoded."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from jobyard.client import (
    ApiClient,
    ApiError,
    Page,
    ServerUnreachable,
    UploadFile,
    Utf8Stream,
    collect_all,
    error_from_response,
)

Handler = Callable[[httpx.Request], httpx.Response]


def client(handler: Handler, token: str = "tok") -> ApiClient:
    return ApiClient("http://api.test/", token, transport=httpx.MockTransport(handler))


async def test_bearer_token_and_base_url() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"id": 3})

    async with client(handler) as api:
        assert await api.job_get(3) == {"id": 3}
    async with client(handler, token="") as api:
        await api.job_get(3)
    assert str(seen[0].url) == "http://api.test/api/v1/jobs/3"
    assert seen[0].headers["authorization"] == "Bearer tok"
    assert "authorization" not in seen[1].headers


async def test_error_body_becomes_api_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = {"error": {"code": "conflict", "message": "job is RUNNING", "details": {"a": 1}}}
        return httpx.Response(409, json=body)

    async with client(handler) as api:
        with pytest.raises(ApiError) as info:
            await api.job_cancel(1)
    assert (info.value.status, info.value.code, info.value.message) == (
        409,
        "conflict",
        "job is RUNNING",
    )
    assert info.value.details == {"a": 1}
    assert str(info.value) == "job is RUNNING (HTTP 409 conflict)"


@pytest.mark.parametrize(
    ("response", "code", "message"),
    [
        (
            httpx.Response(502, text="Bad Gateway from proxy"),
            "http_error",
            "Bad Gateway from proxy",
        ),
        (httpx.Response(500), "http_error", "Internal Server Error"),
        (httpx.Response(422, json={"detail": "nope"}), "http_error", "nope"),
        (httpx.Response(404, json={"error": {"message": "gone"}}), "error", "gone"),
    ],
)
def test_odd_error_bodies(response: httpx.Response, code: str, message: str) -> None:
    error = error_from_response(response)
    assert (error.code, error.message) == (code, message)


async def test_connection_errors_are_unreachable() -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    async with client(refused) as api:
        with pytest.raises(ServerUnreachable) as info:
            await api.jobconfigs_list()
    assert info.value.refused and info.value.url == "http://api.test"
    async with client(slow) as api:
        with pytest.raises(ServerUnreachable) as info:
            await api.jobconfigs_list()
    assert not info.value.refused
    async with client(refused) as api:
        with pytest.raises(ServerUnreachable):
            async for _ in api.job_log_follow(1):
                pass


async def test_query_parameters() -> None:
    seen: list[httpx.URL] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        return httpx.Response(200, json={"items": [{"id": 1}], "next_cursor": "c2"})

    async with client(handler) as api:
        page = await api.jobs_list(jobconfig_id=4, statuses=["ERROR", "FAILED"], limit=10)
        await api.jobs_list()
        await api.jobconfigs_list(name="a b")
        await api.job_log(5, offset=7)
    assert page == Page([{"id": 1}], "c2")
    assert seen[0].params.multi_items() == [
        ("jobconfig_id", "4"),
        ("status", "ERROR"),
        ("status", "FAILED"),
        ("limit", "10"),
    ]
    assert seen[1].params.multi_items() == []
    assert seen[2].params["name"] == "a b"
    assert seen[3].params["offset"] == "7"


async def test_collect_all_follows_the_cursor() -> None:
    pages = {None: Page([{"id": 1}, {"id": 2}], "a"), "a": Page([{"id": 3}], None)}
    calls: list[str | None] = []

    async def fetch(cursor: str | None) -> Page:
        calls.append(cursor)
        return pages[cursor]

    assert [i["id"] for i in await collect_all(fetch)] == [1, 2, 3]
    assert calls == [None, "a"]
    assert [i["id"] for i in await collect_all(fetch, max_items=2)] == [1, 2]


async def test_abort_tells_ended_from_stopping() -> None:
    codes = iter([200, 202])

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(next(codes), json={"id": 1, "status": "RUNNING"})

    async with client(handler) as api:
        assert (await api.job_abort(1)).ended
        assert not (await api.job_abort(1)).ended


async def test_run_body_and_upload() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"id": 9})

    async with client(handler) as api:
        await api.jobconfig_run(2, macros={"A": "1"})
        await api.jobconfig_run(2, hold=True)
        import io

        await api.job_payload_upload(9, UploadFile("in.csv", io.BytesIO(b"a,b\n")), name="x.csv")
    assert json.loads(seen[0].content) == {"macros": {"A": "1"}}
    assert json.loads(seen[1].content) == {"macros": {}, "hold": True}
    body = seen[2].read()
    assert b'filename="in.csv"' in body and b"a,b\n" in body and b'name="name"' in body


async def test_log_stream_and_errors() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/1/log"):
            assert request.url.params["follow"] == "true"
            return httpx.Response(200, content=b"line 1\nline 2\n")
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "no log"}})

    async with client(handler) as api:
        chunks = [c async for c in api.job_log_follow(1)]
        assert b"".join(chunks) == b"line 1\nline 2\n"
        with pytest.raises(ApiError, match="no log"):
            async for _ in api.job_log_follow(2):
                pass


async def test_output_download_escapes_the_name() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b"x" * 10)

    got: list[bytes] = []
    async with client(handler) as api:
        assert await api.job_output_download(1, "a b?.txt", got.append) == 10
    assert seen[0].url.raw_path == b"/api/v1/jobs/1/outputs/a%20b%3F.txt"
    assert b"".join(got) == b"x" * 10


def test_utf8_stream_keeps_split_characters_whole() -> None:
    data = "héllo ✓\n".encode()
    stream = Utf8Stream()
    text = "".join(stream.feed(data[i : i + 1]) for i in range(len(data))) + stream.flush()
    assert text == "héllo ✓\n"
    assert Utf8Stream().feed(b"\xff") == "\ufffd"
