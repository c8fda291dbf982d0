"""The blob store protocol, behaviour by behaviour, on both adapters.

Every test runs on the local folder and on an S3 bucket of a real local S3 server
(moto's server mode), so callers can rely on the protocol alone. The last tests check
that a bucket's failures become ``BlobsUnavailable`` errors that say what to fix.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from jobyard.blobs.local import LocalBlobStore
from jobyard.blobs.protocol import BlobStore
from jobyard.blobs.s3 import S3BlobStore, parse_s3_url
from jobyard.blobs.ship import LogShipper
from jobyard.core.errors import BlobsUnavailable, Conflict, NotFound
from tests.support.s3 import AWS_ENV, S3Server


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # a refused endpoint fails at once


@pytest.fixture(params=["local", "s3"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path, aws_env: None) -> BlobStore:
    if request.param == "local":
        return LocalBlobStore(tmp_path / "blobs")
    server: S3Server = request.getfixturevalue("s3_server")
    return S3BlobStore(
        server.new_bucket(), "some/prefix", spool=tmp_path / "spool", endpoint_url=server.endpoint
    )


@pytest.fixture
def replicas(
    request: pytest.FixtureRequest, blobs: BlobStore, tmp_path: Path
) -> tuple[BlobStore, BlobStore]:
    """``blobs`` and the same store as another replica sees it (its own spool folder)."""
    if isinstance(blobs, LocalBlobStore):
        return blobs, LocalBlobStore(blobs.root)
    server: S3Server = request.getfixturevalue("s3_server")
    if not isinstance(blobs, S3BlobStore):
        raise TypeError("a bucket store was expected")
    bucket, prefix = parse_s3_url(blobs.where)  # the same bucket, as a second server opens it
    other = S3BlobStore(
        bucket,
        prefix,
        spool=tmp_path / "spool-b",
        endpoint_url=server.endpoint,
    )
    return blobs, other


async def read_all(blobs: BlobStore, key: str, offset: int = 0) -> bytes:
    return b"".join([c async for c in blobs.read_chunks(key, offset=offset, chunk_size=3)])


async def test_put_and_read(blobs: BlobStore, tmp_path: Path) -> None:
    assert await blobs.put_bytes("a/b/one", b"hello world") == 11
    assert await blobs.exists("a/b/one")
    assert await blobs.size("a/b/one") == 11
    assert await read_all(blobs, "a/b/one") == b"hello world"
    assert await read_all(blobs, "a/b/one", offset=6) == b"world"
    assert await read_all(blobs, "a/b/one", offset=11) == b""
    dest = tmp_path / "got"
    assert await blobs.get_file("a/b/one", dest) == 11
    assert dest.read_bytes() == b"hello world"
    seen = await blobs.materialize("a/b/one", tmp_path / "mat")
    assert seen.read_bytes() == b"hello world"


async def test_put_file_and_stream(blobs: BlobStore, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_bytes(b"x" * 100_000)
    assert await blobs.put_file("f/kept", src) == 100_000
    assert src.exists()
    assert await blobs.put_file("f/moved", src, move=True) == 100_000
    assert not src.exists()
    assert await read_all(blobs, "f/moved") == b"x" * 100_000

    async def gen() -> AsyncIterator[bytes]:
        for part in (b"ab", b"", b"cd"):
            yield part

    assert await blobs.put_stream("f/streamed", gen()) == 4
    assert await read_all(blobs, "f/streamed") == b"abcd"


async def test_missing_blobs(blobs: BlobStore, tmp_path: Path) -> None:
    assert not await blobs.exists("nope/x")
    assert await blobs.size("nope/x") is None
    assert await blobs.modified_at("nope/x") is None
    assert not await blobs.touch("nope/x")
    assert not await blobs.rename("nope/x", "nope/y")
    with pytest.raises(NotFound):
        await read_all(blobs, "nope/x")
    with pytest.raises(NotFound):
        await blobs.get_file("nope/x", tmp_path / "d")
    with pytest.raises(NotFound):
        await blobs.materialize("nope/x", tmp_path / "d")
    with pytest.raises(NotFound):
        await blobs.copy("nope/x", "nope/y")
    assert await blobs.list_children("nope") == []


async def test_copy_rename_touch(blobs: BlobStore) -> None:
    await blobs.put_bytes("p/1/a", b"payload")
    assert await blobs.copy("p/1/a", "p/2/a") == 7
    assert await read_all(blobs, "p/2/a") == b"payload"
    assert await blobs.exists("p/1/a")
    assert await blobs.rename("p/2/a", "p/3/a")
    assert not await blobs.exists("p/2/a")
    assert await read_all(blobs, "p/3/a") == b"payload"
    before = await blobs.modified_at("p/3/a")
    assert before is not None and abs(before - time.time()) < 60
    assert await blobs.touch("p/3/a")
    after = await blobs.modified_at("p/3/a")
    assert after is not None and after >= before
    assert await read_all(blobs, "p/3/a") == b"payload"


async def test_list_children(blobs: BlobStore) -> None:
    await blobs.put_bytes("outputs/12/x", b"1")
    await blobs.put_bytes("outputs/12/sub/y", b"22")
    await blobs.put_bytes("outputs/7/z", b"333")
    await blobs.put_bytes("outputsx/9/z", b"4")
    names = sorted(name for name, _ in await blobs.list_children("outputs"))
    assert names == ["12", "7"]
    assert sorted(name for name, _ in await blobs.list_children("outputs/12")) == ["sub", "x"]
    for _, mtime in await blobs.list_children("outputs"):
        assert abs(mtime - time.time()) < 60


async def test_deletes(blobs: BlobStore) -> None:
    await blobs.put_bytes("outputs/12/a", b"aa")
    await blobs.put_bytes("outputs/123/b", b"bbb")
    await blobs.put_bytes("outputs/4/c", b"c")
    await blobs.put_bytes("logs/0/4.log", b"log!")
    assert await blobs.delete_batch(
        ["logs/0/4.log", "logs/0/5.log"], ["outputs/4/"], dry_run=True
    ) == (2, 5)
    assert await blobs.exists("logs/0/4.log")
    assert await blobs.delete_batch(["logs/0/4.log"], ["outputs/4/"]) == (2, 5)
    assert not await blobs.exists("logs/0/4.log")
    assert not await blobs.exists("outputs/4/c")
    await blobs.delete_prefix("outputs/12/")
    assert not await blobs.exists("outputs/12/a")
    assert await blobs.exists("outputs/123/b")
    await blobs.delete_prefix("outputs/12")  # a string prefix: 123 goes too
    assert not await blobs.exists("outputs/123/b")


async def test_spool_then_seal(blobs: BlobStore) -> None:
    """A growing blob is readable while written on this host, and after it is sealed."""
    path = blobs.spool_path("logs/0/9.log")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as f:
        f.write(b"line 1\n")
        f.flush()
        assert await blobs.exists("logs/0/9.log")
        assert await read_all(blobs, "logs/0/9.log") == b"line 1\n"
        f.write(b"line 2\n")
        f.flush()
        assert await read_all(blobs, "logs/0/9.log", offset=7) == b"line 2\n"
    await blobs.seal("logs/0/9.log")
    assert await blobs.size("logs/0/9.log") == 14
    assert await read_all(blobs, "logs/0/9.log") == b"line 1\nline 2\n"
    await blobs.seal("logs/0/10.log")  # nothing written: nothing to do
    assert not await blobs.exists("logs/0/10.log")


async def test_bad_keys_refused(blobs: BlobStore) -> None:
    for key in ("../x", "/abs", "a//b", "a/./b"):
        with pytest.raises(Exception, match="invalid blob key"):
            await blobs.put_bytes(key, b"x")


async def test_sealed_log_lives_in_the_bucket(
    s3_server: S3Server, tmp_path: Path, aws_env: None
) -> None:
    """On a bucket the spool file goes away once sealed: the object is the log."""
    bucket = s3_server.new_bucket()
    blobs = S3BlobStore(bucket, "pre", spool=tmp_path / "spool", endpoint_url=s3_server.endpoint)
    path = blobs.spool_path("logs/0/1.log")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"done\n")
    assert s3_server.keys(bucket) == []
    await blobs.seal("logs/0/1.log")
    assert not path.exists()
    assert s3_server.keys(bucket) == ["pre/logs/0/1.log"]


async def test_no_such_bucket(s3_server: S3Server, tmp_path: Path, aws_env: None) -> None:
    """Said as such on writes and on reads (a HEAD alone answers a bare 404 for both), and
    the store works once the bucket exists."""
    name = f"missing-{uuid.uuid4().hex[:8]}"
    blobs = S3BlobStore(name, "", spool=tmp_path, endpoint_url=s3_server.endpoint)
    with pytest.raises(BlobsUnavailable, match="does not exist"):
        await blobs.exists("a")
    with pytest.raises(BlobsUnavailable, match="does not exist") as caught:
        await blobs.put_bytes("a", b"x")
    assert caught.value.retry_after is None  # an operator must act: retrying won't help
    assert name in caught.value.message
    src = tmp_path / "f"
    src.write_bytes(b"data")
    with pytest.raises(BlobsUnavailable, match="does not exist"):  # the transfer manager's way
        await blobs.put_file("a", src)
    s3_server.client().create_bucket(Bucket=name)
    assert not await blobs.exists("a")
    assert await blobs.put_file("a", src) == 4
    assert await blobs.exists("a")


async def test_endpoint_down_is_transient(tmp_path: Path, aws_env: None) -> None:
    from tests.support.server import free_port

    down = f"http://127.0.0.1:{free_port()}"
    blobs = S3BlobStore("bucket", "", spool=tmp_path, endpoint_url=down)
    with pytest.raises(BlobsUnavailable, match="does not answer") as caught:
        await blobs.put_bytes("a", b"x")
    assert caught.value.retry_after is not None
    with pytest.raises(BlobsUnavailable):
        await blobs.exists("a")


async def test_access_denied(s3_server: S3Server, tmp_path: Path, aws_env: None) -> None:
    """A bucket policy that denies every action: the error says to check credentials."""
    import json

    bucket = s3_server.new_bucket()
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": f"arn:aws:s3:::{bucket}/*",
            }
        ],
    }
    s3_server.client().put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    blobs = S3BlobStore(bucket, "", spool=tmp_path, endpoint_url=s3_server.endpoint)
    try:
        await blobs.put_bytes("a", b"x")
    except BlobsUnavailable as exc:
        assert "refused access" in exc.message
    else:
        pytest.skip("this moto version does not enforce bucket policies")


async def test_append_pieces_from_any_replica(replicas: tuple[BlobStore, BlobStore]) -> None:
    """Pieces appended through two replicas make one blob both serve live; a retried
    piece changes nothing, a gap is refused with the size to resend from; either
    replica seals it, and the sealed blob reads the same everywhere."""
    a, b = replicas
    key = "logs/0/7.log"
    assert await a.append(key, 0, b"") == 0  # an empty first piece: an empty log
    assert await b.exists(key) and await b.size(key) == 0
    assert await read_all(b, key) == b""
    assert await a.append(key, 0, b"line 1\n") == 7
    assert await b.append(key, 0, b"line 1\n") == 7  # retried through the other replica
    assert await b.append(key, 7, b"line 2\n") == 14
    assert await a.append(key, 10, b"e 2\nline 3\n") == 21  # overlaps: only the new bytes
    with pytest.raises(Conflict) as caught:
        await a.append(key, 30, b"lost")
    assert caught.value.details["size"] == 21
    whole = b"line 1\nline 2\nline 3\n"
    for store in (a, b):
        assert await store.size(key) == 21
        for offset in range(23):  # a follower at any offset, even past the end
            assert await read_all(store, key, offset=offset) == whole[offset:]
    await b.seal(key)
    await a.seal(key)  # sealed twice (two replicas): nothing changes
    for store in (a, b):
        assert await store.size(key) == 21
        assert await read_all(store, key, offset=7) == b"line 2\nline 3\n"
    assert [name for name, _ in await a.list_children("logs/0")] == ["7.log"]
    assert await a.append(key, 0, b"line 1\n") == 21  # a late retry of a sealed piece
    assert await a.delete_batch([key], []) == (1, 21)
    assert not await b.exists(key)


async def test_a_held_logs_first_piece_is_stored_at_once(blobs: BlobStore) -> None:
    """``unsealed`` (the writer holds the blob and sends in order): a first piece and its
    retry store the same bytes and answer their end; later pieces and the seal follow as
    usual, and the blob reads whole before and after the seal."""
    key = "logs/0/11.log"
    assert await blobs.append(key, 0, b"abc", unsealed=True) == 3
    assert await blobs.append(key, 0, b"abc", unsealed=True) == 3  # a retry
    assert await read_all(blobs, key) == b"abc"
    assert await blobs.append(key, 3, b"def\n", unsealed=True) == 7
    assert await blobs.size(key) == 7
    await blobs.seal(key)
    assert await read_all(blobs, key) == b"abcdef\n"
    assert await read_all(blobs, key, offset=3) == b"def\n"


async def test_seal_without_pieces_does_nothing(blobs: BlobStore) -> None:
    await blobs.seal("logs/0/8.log")
    assert not await blobs.exists("logs/0/8.log")
    with pytest.raises(NotFound):
        await read_all(blobs, "logs/0/8.log")


async def test_pieces_are_objects_until_sealed(
    s3_server: S3Server, tmp_path: Path, aws_env: None
) -> None:
    """On a bucket each piece is an object ``<key>.parts/<offset>``; sealing joins them
    into the key's object and deletes them; a sealed blob is read without its pieces."""
    bucket = s3_server.new_bucket()
    blobs = S3BlobStore(bucket, "pre", spool=tmp_path / "spool", endpoint_url=s3_server.endpoint)
    await blobs.append("logs/0/3.log", 0, b"abc")
    await blobs.append("logs/0/3.log", 3, b"def")
    assert s3_server.keys(bucket) == [  # named by where they end, then where they start
        "pre/logs/0/3.log.parts/0000000000000003-0000000000000000",
        "pre/logs/0/3.log.parts/0000000000000006-0000000000000003",
    ]
    assert not (tmp_path / "spool").exists()  # nothing on this host's disk
    await blobs.seal("logs/0/3.log")
    assert s3_server.keys(bucket) == ["pre/logs/0/3.log"]
    s3_server.client().put_object(
        Bucket=bucket, Key="pre/logs/0/3.log.parts/0000000000000011-0000000000000006", Body=b"stray"
    )
    assert await read_all(blobs, "logs/0/3.log") == b"abcdef"
    assert await blobs.size("logs/0/3.log") == 6


async def test_a_one_piece_log_is_sealed_by_a_copy_in_the_bucket(
    s3_server: S3Server, tmp_path: Path, aws_env: None
) -> None:
    """A short job's log is one piece: another replica seals it by a copy within the
    bucket (no bytes through the server, nothing on its disk); both read it after."""
    bucket = s3_server.new_bucket()
    blobs = S3BlobStore(bucket, "pre", spool=tmp_path / "spool", endpoint_url=s3_server.endpoint)
    other = S3BlobStore(bucket, "pre", spool=tmp_path / "other", endpoint_url=s3_server.endpoint)
    await blobs.append("logs/0/6.log", 0, b"job 6\n")
    await other.seal("logs/0/6.log")
    assert s3_server.keys(bucket) == ["pre/logs/0/6.log"]
    assert not (tmp_path / "spool").exists() and not (tmp_path / "other").exists()
    for store in (blobs, other):
        assert await read_all(store, "logs/0/6.log") == b"job 6\n"
        assert await store.size("logs/0/6.log") == 6


async def test_a_gap_in_the_pieces_is_not_sealed(
    s3_server: S3Server, tmp_path: Path, aws_env: None
) -> None:
    bucket = s3_server.new_bucket()
    blobs = S3BlobStore(bucket, "", spool=tmp_path / "spool", endpoint_url=s3_server.endpoint)
    await blobs.append("logs/0/4.log", 0, b"abc")
    s3_server.client().put_object(
        Bucket=bucket, Key="logs/0/4.log.parts/0000000000000012-0000000000000009", Body=b"far"
    )
    assert await read_all(blobs, "logs/0/4.log") == b"abc"  # what is whole so far
    with pytest.raises(Conflict, match="gap at offset 3"):
        await blobs.seal("logs/0/4.log")
    assert "logs/0/4.log" not in s3_server.keys(bucket)


async def test_running_logs_are_shipped_as_pieces(
    s3_server: S3Server, tmp_path: Path, aws_env: None
) -> None:
    """A spool file on the host of a local slot reaches another replica as pieces while
    it grows; sealing it uploads it whole and deletes the pieces."""
    bucket = s3_server.new_bucket()
    here = S3BlobStore(bucket, "p", spool=tmp_path / "a", endpoint_url=s3_server.endpoint)
    there = S3BlobStore(bucket, "p", spool=tmp_path / "b", endpoint_url=s3_server.endpoint)
    shipper = LogShipper(here)
    key = "logs/0/5.log"
    path = here.spool_path(key)
    path.parent.mkdir(parents=True)
    assert await shipper.ship() == 0
    with open(path, "ab") as f:
        f.write(b"one\n")
        f.flush()
        assert not await there.exists(key)
        assert await shipper.ship() == 1
        assert await read_all(there, key) == b"one\n"
        assert await shipper.ship() == 0  # nothing new: nothing sent
        f.write(b"two\n")
        f.flush()
        assert await LogShipper(here).ship() == 1  # a restarted server resumes, no resend
        assert await read_all(there, key) == b"one\ntwo\n"
    assert here.shipped_marker(key).exists()
    await here.seal(key)
    assert not path.exists() and not here.shipped_marker(key).exists()
    assert s3_server.keys(bucket) == ["p/logs/0/5.log"]
    assert await read_all(there, key) == b"one\ntwo\n"
    assert await shipper.ship() == 0


async def test_a_reader_racing_the_seal_reads_on_from_the_object(
    s3_server: S3Server, tmp_path: Path, aws_env: None
) -> None:
    """A reader that listed the pieces just before another replica sealed the blob (and
    deleted them) reads the rest from the sealed object, from where it was."""
    bucket = s3_server.new_bucket()
    reader = S3BlobStore(bucket, "", spool=tmp_path / "a", endpoint_url=s3_server.endpoint)
    sealer = S3BlobStore(bucket, "", spool=tmp_path / "b", endpoint_url=s3_server.endpoint)
    key = "logs/0/6.log"
    for offset, piece in ((0, b"one\n"), (4, b"two\n"), (8, b"three\n")):
        await reader.append(key, offset, piece)
    listed = await reader._pieces(key)  # what the reader listed before the seal
    await sealer.seal(key)
    assert [k for k in s3_server.keys(bucket) if ".parts/" in k] == []
    got = [c async for c in reader._read_pieces(key, listed, 2, 3)]
    assert b"".join(got) == b"e\ntwo\nthree\n"
