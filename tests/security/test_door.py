"""Hostile input at the door, tried as an attacker would against a real ``jobyard up``.

* Bodies are limited before they are read: 200 MB to the open login route, with a
  length or chunked, is refused at once and the server's peak memory does not move
  (nor for a 200 MB header line or URL);
  JSON bodies stop at 1 MiB, uploads at their own limit counted as bytes arrive, and a
  user gets at most 2 uploads in flight (429 with Retry-After, before the body).
* A crafted cursor answers 422 ``invalid_cursor`` on every listing that takes one, and
  the keep-alive connection survives.
* The attacker's 580 KB ``.tar.xz`` of 2 x 1.9 GiB of zeros is refused in well under a
  second of the server's CPU and leaves nothing under the home.
* No answer names or numbers an object the caller cannot see: a template import that
  meets another user's template or jobconfig by name, a jobconfig naming a template
  the caller may not view, the deletion of a template another user's jobconfig uses.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest

from jobyard.api.app import create_app
from jobyard.runtime import Runtime
from jobyard.settings import Settings
from tests.support.bombs import ZERO_BLOCK, xz_tar_of_zeros
from tests.support.rawhttp import (
    MULTIPART_TAIL,
    MULTIPART_TYPE,
    RawRequest,
    chunk,
    chunked_zeros,
    head,
    multipart,
    multipart_head,
    wait_until,
    zeros,
)
from tests.support.server import RunningServer, server_fixture

API = "/api/v1"
MB = 1024 * 1024
UPLOAD_LIMIT = 8 * MB
PASSWORD = "correct horse battery"

server = server_fixture(
    workers=1,
    env={"JOBYARD_UPLOAD_MAX_BYTES": str(UPLOAD_LIMIT), "JOBYARD_WORKER_PROCESSES": "0"},
)


@pytest.fixture(scope="module")
def admin(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.token}"}, timeout=60
    ) as client:
        yield client


def _user_token(server: RunningServer, admin: httpx.Client, name: str) -> str:
    r = admin.post(f"{API}/users", json={"name": name, "password": PASSWORD, "role": "user"})
    assert r.status_code == 201, r.text
    r = httpx.post(f"{server.url}{API}/login", json={"name": name, "password": PASSWORD})
    assert r.status_code == 200, r.text
    token: str = r.json()["access_token"]
    return token


@pytest.fixture(scope="module")
def mallory(server: RunningServer, admin: httpx.Client) -> str:
    """The attacker: an ordinary user with no policy."""
    return _user_token(server, admin, "mallory")


@pytest.fixture(scope="module")
def as_mallory(server: RunningServer, mallory: str) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {mallory}"}, timeout=60
    ) as client:
        yield client


def _proc_status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {key} in /proc/{pid}/status")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _files_under(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def _tmp_files(server: RunningServer) -> list[str]:
    tmp = server.home / "tmp"
    return sorted(str(p) for p in tmp.rglob("*")) if tmp.exists() else []


# -- bodies are limited before they are read ------------------------------------------


def _blast(url: str, request_head: bytes, pieces: Iterator[bytes]) -> int:
    """Send as fast as possible, ignoring the answer, as the attacker did; bytes sent."""
    with RawRequest(url) as raw:
        if raw.send(request_head):
            raw.stream(pieces)
        return raw.sent


def test_login_refuses_200_mb_without_the_memory(server: RunningServer) -> None:
    """Finding 5: three 200 MB bodies to the open login route took 449 -> 1,343 MB."""
    size = 200 * MB
    peak_before = _proc_status(server.process.pid, "VmHWM")
    attacks = [
        (head("POST", f"{API}/login", length=size), lambda: zeros(size)),
        (head("POST", f"{API}/login", chunked=True), lambda: chunked_zeros(size)),
    ] * 3
    sent: list[int] = []
    threads = [
        threading.Thread(target=lambda h=h, p=p: sent.append(_blast(server.url, h, p())))
        for h, p in attacks
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(sent) == len(attacks)
    grown = _proc_status(server.process.pid, "VmHWM") - peak_before
    assert grown < 64 * MB, f"peak RSS grew by {grown / MB:.0f} MB"
    assert httpx.get(f"{server.url}/healthz").status_code == 200


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_login_body_limit_is_answered_with_413(server: RunningServer, chunked: bool) -> None:
    with RawRequest(server.url) as raw:
        if chunked:  # 2 MB, looking for an answer before each 4 KB
            raw.send(head("POST", f"{API}/login", chunked=True))
            finished = raw.stream(chunked_zeros(2 * MB, 4096), wait=0.01)
        else:
            raw.send(head("POST", f"{API}/login", length=200 * MB))  # and not a byte more
            finished = False
        answer = raw.answer()
    assert not finished
    assert raw.sent < 256 * 1024, f"the server read {raw.sent} bytes before refusing"
    assert answer.status == 413, answer
    assert answer.error["code"] == "too_large"
    assert "16384 bytes" in answer.error["message"]
    assert answer.error["details"] == {"limit": 16384}
    assert answer.headers["connection"] == "close"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_json_bodies_stop_at_one_mib(server: RunningServer, mallory: str, chunked: bool) -> None:
    """A body is cut off at its route's limit: a 300 MB one is never parsed whole."""
    path = f"{API}/jobconfigs"
    with RawRequest(server.url) as raw:
        if chunked:
            raw.send(head("POST", path, token=mallory, chunked=True))
            raw.stream(chunked_zeros(8 * MB), wait=0.01)
        else:
            raw.send(head("POST", path, token=mallory, length=300 * MB))
        answer = raw.answer()
    assert raw.sent < 3 * MB
    assert answer.status == 413, answer
    assert answer.error["code"] == "too_large"
    assert "1048576 bytes (JOBYARD_MAX_JSON_BYTES)" in answer.error["message"]


def test_a_body_within_the_limit_still_works(as_mallory: httpx.Client) -> None:
    body = {"name": "big-description", "command": ["true"], "description": "x" * 9000}
    assert as_mallory.post(f"{API}/jobconfigs", json=body).status_code == 201
    r = httpx.post(
        f"{as_mallory.base_url}{API}/login", json={"name": "mallory", "password": "x" * 1024}
    )
    assert r.status_code == 401  # checked, not refused for its size


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_uploads_are_counted_as_bytes_arrive(
    server: RunningServer, mallory: str, chunked: bool
) -> None:
    size = 50 * MB
    path = f"{API}/packages"
    with RawRequest(server.url) as raw:
        if chunked:
            raw.send(head("POST", path, token=mallory, chunked=True, content_type=MULTIPART_TYPE))
            raw.send(chunk(multipart_head()))
            raw.stream(chunked_zeros(size), wait=0.01)
        else:
            length = len(multipart_head()) + size + len(MULTIPART_TAIL)
            raw.send(head("POST", path, token=mallory, length=length, content_type=MULTIPART_TYPE))
            raw.send(multipart_head())
        answer = raw.answer()
    assert raw.sent < UPLOAD_LIMIT + 4 * MB, f"sent {raw.sent} bytes before the answer"
    assert answer.status == 413, answer
    assert answer.error["code"] == "too_large"
    assert f"{UPLOAD_LIMIT} bytes (JOBYARD_UPLOAD_MAX_BYTES)" in answer.error["message"]
    assert answer.error["details"]["limit"] == UPLOAD_LIMIT
    wait_until(lambda: not _tmp_files(server), 10, "the upload's temporary files to go")


def test_an_upload_within_the_limit_still_works(as_mallory: httpx.Client) -> None:
    data = b"#!/bin/sh\necho hi\n" + b"#" * (UPLOAD_LIMIT - 100)
    r = as_mallory.post(f"{API}/packages", files={"file": ("run.sh", data)})
    assert r.status_code == 201, r.text


def test_at_most_two_uploads_in_flight_per_user(
    server: RunningServer, mallory: str, admin: httpx.Client
) -> None:
    """A third concurrent upload of one user is refused before its body is read."""
    length = len(multipart(bytes(4 * MB)))
    request_head = head(
        "POST", f"{API}/packages", token=mallory, length=length, content_type=MULTIPART_TYPE
    )
    stalled = [RawRequest(server.url), RawRequest(server.url)]
    try:
        for raw in stalled:  # each sends its head and 1 KB, then stalls
            raw.send(request_head + multipart_head() + bytes(1024))

        def third() -> Any:
            # On a loaded host the stalled two may not be counted yet: then this one
            # is let in and waits for a body that never comes. A short wait, a close
            # (which frees its count) and another try.
            with RawRequest(server.url) as raw:
                raw.send(request_head)  # no body at all
                answer = raw.answer(timeout=2.0)
            return answer if answer.status == 429 else None

        answer = wait_until(third, 30, "a 429 for the third upload")
        assert answer.headers["retry-after"] == "5"
        assert answer.error["code"] == "too_many_requests"
        assert "2 upload(s) in progress" in answer.error["message"]
        # Another user is not held back.
        r = admin.post(f"{API}/packages", files={"file": ("other.sh", b"#!/bin/sh\n")})
        assert r.status_code == 201, r.text
        # Once one of the stalled uploads is gone, mallory may upload again.
        stalled.pop().close()

        def upload() -> bool:
            r = httpx.post(
                f"{server.url}{API}/packages",
                headers={"Authorization": f"Bearer {mallory}"},
                files={"file": ("again.sh", b"#!/bin/sh\necho again\n")},
            )
            assert r.status_code in (201, 429), r.text
            return r.status_code == 201

        wait_until(upload, 10, "an upload slot to free")
    finally:
        for raw in stalled:
            raw.close()


# -- request heads -----------------------------------------------------------------------


@pytest.mark.parametrize("where", ["header", "url"])
def test_endless_request_heads_are_cut_off(server: RunningServer, where: str) -> None:
    """A header line (or URL) of 200 MB was held in memory before any middleware ran."""
    peak_before = _proc_status(server.process.pid, "VmHWM")
    start = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " if where == "header" else b"GET /"
    with RawRequest(server.url) as raw:
        raw.send(start)
        finished = raw.stream((b"a" * MB for _ in range(200)), wait=0.01)
        answer = raw.answer()
    assert not finished and raw.sent < 16 * MB, f"sent {raw.sent} bytes"
    assert answer.status in (431, 0), answer  # 0: reset while we were still writing
    if answer.status:
        assert answer.error["code"] == "too_large"
        assert answer.error["details"] == {"limit": 65536}
    grown = _proc_status(server.process.pid, "VmHWM") - peak_before
    assert grown < 64 * MB, f"peak RSS grew by {grown / MB:.0f} MB"


def test_ordinary_heads_on_a_long_keep_alive_connection_pass(server: RunningServer) -> None:
    """The bound is per request: 50 requests of 4 KB of headers on one connection."""
    parts = urlsplit(server.url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        for i in range(50):
            conn.request("GET", "/healthz", headers={"X-Filler": "f" * 4096, "X-N": str(i)})
            response = conn.getresponse()
            assert response.read() and response.status == 200
    finally:
        conn.close()


# -- cursors -------------------------------------------------------------------------------

BAD_CURSORS = {
    "attacker": "aWQ6OTIyMzM3MjAzNjg1NDc3NTgwOA",  # id:9223372036854775808
    "negative": "aWQ6LTE",  # id:-1
    "not-base64": "not a cursor!",
    "not-utf8": "aWQ6__4",  # id:\xff\xfe
    "wrong-prefix": "aXg6NQ",  # ix:5
    "huge": "QUFB" * 5000,
}


def _listings() -> list[str]:
    """Every GET route of the API that takes a ``cursor`` (from the OpenAPI document)."""
    document = create_app(Runtime(Settings(workers=0))).openapi()
    found = []
    for path, operations in document["paths"].items():
        get = operations.get("get", {})
        if any(p["name"] == "cursor" for p in get.get("parameters", [])):
            assert "{" not in path, f"fill the path parameters of {path}"
            found.append(path)
    return sorted(found)


LISTINGS = _listings()


def test_every_listing_with_a_cursor_is_covered() -> None:
    assert set(LISTINGS) >= {
        f"{API}/jobs",
        f"{API}/jobconfigs",
        f"{API}/templates",
        f"{API}/packages",
        f"{API}/users",
        f"{API}/audit",
    }


@pytest.mark.parametrize("path", LISTINGS)
def test_bad_cursors_answer_422_and_keep_the_connection(server: RunningServer, path: str) -> None:
    parts = urlsplit(server.url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    auth = {"Authorization": f"Bearer {server.token}"}
    try:
        conn.request("GET", "/healthz")
        assert conn.getresponse().read() and conn.sock is not None
        sock = conn.sock
        for name, cursor in BAD_CURSORS.items():
            conn.request("GET", f"{path}?cursor={quote(cursor)}", headers=auth)
            response = conn.getresponse()
            body = json.loads(response.read())
            assert response.status == 422, (name, body)
            assert body["error"]["code"] == "invalid_cursor", (name, body)
            assert body["error"]["message"].startswith("invalid cursor: "), (name, body)
            assert response.getheader("connection") != "close"
            conn.request("GET", f"{path}?limit=1", headers=auth)
            again = conn.getresponse()
            assert again.read() and again.status == 200
            assert conn.sock is sock, f"{name}: the connection was dropped"
    finally:
        conn.close()


@pytest.mark.parametrize(
    "path", [f"{API}/users", f"{API}/jobconfigs?name=x", f"{API}/templates?name=x"]
)
def test_bad_cursors_are_refused_where_they_would_be_ignored(
    as_mallory: httpx.Client, path: str
) -> None:
    sep = "&" if "?" in path else "?"
    r = as_mallory.get(f"{path}{sep}cursor={BAD_CURSORS['attacker']}")
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_cursor"


# -- archive bombs -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The attacker's archive: 2 x 1.875 GiB of zeros in ~590 KB of .tar.xz."""
    path = tmp_path_factory.mktemp("bombs") / "zeros.tar.xz"
    return xz_tar_of_zeros(path, {"a.bin": 30 * ZERO_BLOCK, "b.bin": 30 * ZERO_BLOCK})


def test_decompression_bomb_is_refused_at_once_leaving_nothing(
    server: RunningServer, mallory: str, admin: httpx.Client, bomb: Path
) -> None:
    """Finding 10: 26.5 s of CPU and 2 GiB written before the 413; in parallel too."""
    home_before = _files_under(server.home)
    cpu_before = _cpu_seconds(server.process.pid)
    data = bomb.read_bytes()
    answers: list[httpx.Response] = []

    def upload(token: str) -> None:
        answers.append(
            httpx.post(
                f"{server.url}{API}/packages",
                headers={"Authorization": f"Bearer {token}"},
                files={"file": ("zeros.tar.xz", data)},
                timeout=120,
            )
        )

    started = time.monotonic()
    threads = [threading.Thread(target=upload, args=(t,)) for t in (mallory, mallory, server.token)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    elapsed = time.monotonic() - started
    cpu = _cpu_seconds(server.process.pid) - cpu_before

    assert [r.status_code for r in answers] == [413] * 3, [r.text for r in answers]
    error = answers[0].json()["error"]
    assert error["code"] == "too_large"
    assert "200 times the archive's" in error["message"]
    assert cpu < 1.5, f"the server spent {cpu:.1f} s of CPU"
    assert elapsed < 10
    wait_until(lambda: not _tmp_files(server), 10, "the temporary files to go")
    grown = {
        name: size
        for name, size in _files_under(server.home).items()
        if size - home_before.get(name, 0) > MB
    }
    assert grown == {}, f"files grew under the home: {grown}"
    packages = admin.get(f"{API}/packages", params={"limit": 500}).json()["items"]
    assert "zeros.tar.xz" not in [p["filename"] for p in packages]


# -- no answer names or numbers what the caller cannot see --------------------------------


def _bundle(template: str, jobconfig: str | None = None) -> dict[str, Any]:
    jobconfigs = [] if jobconfig is None else [{"name": jobconfig, "command": ["true"]}]
    return {
        "format": "jobyard.template/1",
        "template": {"name": template, "command": ["true"]},
        "jobconfigs": jobconfigs,
    }


def test_template_import_never_names_a_hidden_template(
    admin: httpx.Client, as_mallory: httpx.Client
) -> None:
    """Finding 12: 'template 1 does not exist' named the id of a template she cannot see."""
    hidden = admin.post(f"{API}/templates", json={"name": "payroll", "command": ["true"]}).json()
    r = as_mallory.post(f"{API}/templates/import", json=_bundle("payroll"))
    create = as_mallory.post(f"{API}/templates", json={"name": "payroll", "command": ["true"]})
    assert r.status_code == 409, r.text
    assert r.content == create.content  # what creating a template of that name answers
    assert str(hidden["id"]) not in r.json()["error"]["message"]
    assert "id" not in json.dumps(r.json()["error"]["details"])


def test_template_import_never_names_a_hidden_jobconfig(
    admin: httpx.Client, as_mallory: httpx.Client
) -> None:
    hidden = admin.post(f"{API}/jobconfigs", json={"name": "ledger", "command": ["true"]}).json()
    r = as_mallory.post(f"{API}/templates/import", json=_bundle("mallorys", "ledger"))
    create = as_mallory.post(f"{API}/jobconfigs", json={"name": "ledger", "command": ["true"]})
    assert r.status_code == 409, r.text
    assert r.content == create.content
    assert f"jobconfig {hidden['id']}" not in r.text


def test_naming_a_hidden_template_answers_like_a_missing_one(
    admin: httpx.Client, as_mallory: httpx.Client
) -> None:
    hidden = admin.post(f"{API}/templates", json={"name": "hidden-t", "command": ["true"]}).json()
    missing_id = 9_000_000_000

    def answer(template_id: int) -> httpx.Response:
        body = {"name": "probe", "template_id": template_id}
        return as_mallory.post(f"{API}/jobconfigs", json=body)

    hidden_answer, missing_answer = answer(hidden["id"]), answer(missing_id)
    assert hidden_answer.status_code == missing_answer.status_code == 422
    expected = missing_answer.content.replace(str(missing_id).encode(), str(hidden["id"]).encode())
    assert hidden_answer.content == expected
    # The same through PATCH of a jobconfig of her own.
    own = as_mallory.post(f"{API}/jobconfigs", json={"name": "own", "command": ["true"]}).json()
    patched = as_mallory.patch(f"{API}/jobconfigs/{own['id']}", json={"template_id": hidden["id"]})
    assert patched.content == expected


def test_deleting_a_used_template_does_not_name_hidden_jobconfigs(
    admin: httpx.Client, as_mallory: httpx.Client
) -> None:
    mine = as_mallory.post(f"{API}/templates", json={"name": "mine", "command": ["true"]}).json()
    theirs = admin.post(
        f"{API}/jobconfigs", json={"name": "theirs", "template_id": mine["id"]}
    ).json()
    assert as_mallory.get(f"{API}/jobconfigs/{theirs['id']}").status_code == 404
    r = as_mallory.delete(f"{API}/templates/{mine['id']}")
    assert r.status_code == 409, r.text
    error = r.json()["error"]
    assert f"jobconfig {theirs['id']}" not in error["message"]
    assert error["details"] == {"template_id": mine["id"], "jobconfigs": 1}
