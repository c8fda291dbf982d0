"""LocalBlobStore: atomic writes, key validation, streaming reads, prefix deletes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jobyard.blobs.keys import log_key, output_key, package_key
from jobyard.blobs.local import LocalBlobStore
from jobyard.blobs.protocol import BlobStore
from jobyard.core.errors import InvalidInput, NotFound


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


async def read_all(store: BlobStore, key: str, **kw: int) -> bytes:
    return b"".join([chunk async for chunk in store.read_chunks(key, **kw)])


def leftovers(root: Path) -> list[str]:
    return [p.name for p in root.rglob("*.tmp")]


async def test_put_bytes_and_read(store: LocalBlobStore) -> None:
    key = package_key("ab" * 32)
    assert not await store.exists(key)
    assert await store.size(key) is None
    assert await store.put_bytes(key, b"hello world") == 11
    assert await store.exists(key)
    assert await store.size(key) == 11
    assert await read_all(store, key) == b"hello world"
    assert await read_all(store, key, offset=6) == b"world"
    assert await read_all(store, key, offset=100) == b""
    assert [c async for c in store.read_chunks(key, chunk_size=4)] == [b"hell", b"o wo", b"rld"]
    assert store.local_path(key) == store.root / "packages" / "ab" / ("ab" * 32)
    assert leftovers(store.root) == []


async def test_large_and_fsync_writes(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "b", fsync=True)
    data = os.urandom(1024 * 1024 + 3)
    assert await store.put_bytes("big", data) == len(data)
    assert await read_all(store, "big") == data
    src = tmp_path / "src"
    src.write_bytes(data)
    assert await store.put_file("moved", src, move=True) == len(data)
    assert not src.exists()
    assert leftovers(store.root) == []


async def test_put_file_copy_and_move(store: LocalBlobStore, tmp_path: Path) -> None:
    src = tmp_path / "upload"
    src.write_bytes(b"payload")
    assert await store.put_file(output_key(1, "a/b.txt"), src) == 7
    assert src.exists(), "a copy leaves the source"
    assert await store.put_file(output_key(1, "c.txt"), src, move=True) == 7
    assert not src.exists(), "a move consumes the source"
    assert await read_all(store, output_key(1, "a/b.txt")) == b"payload"
    assert await read_all(store, output_key(1, "c.txt")) == b"payload"


async def test_overwrite_is_atomic_replace(store: LocalBlobStore) -> None:
    await store.put_bytes("k", b"old")
    path = store.local_path("k")
    with open(path, "rb") as reader:  # a reader holding the old file keeps old content
        await store.put_bytes("k", b"new content")
        assert reader.read() == b"old"
    assert path.read_bytes() == b"new content"


async def test_read_follows_a_growing_blob(store: LocalBlobStore) -> None:
    key = log_key(7)
    await store.put_bytes(key, b"line 1\n")
    with open(store.local_path(key), "ab") as f:
        f.write(b"line 2\n")
    assert await read_all(store, key, offset=7) == b"line 2\n"


async def test_missing_blob(store: LocalBlobStore) -> None:
    with pytest.raises(NotFound):
        await read_all(store, "nope/nothing")


@pytest.mark.parametrize(
    "key", ["", "/etc/passwd", "../x", "a/../../x", "a//b", "a/./b", "a/", "a\\b", "a\x00b"]
)
async def test_bad_keys_refused(store: LocalBlobStore, key: str) -> None:
    with pytest.raises(InvalidInput):
        store.local_path(key)
    with pytest.raises(InvalidInput):
        await store.put_bytes(key, b"x")
    with pytest.raises(InvalidInput):
        await read_all(store, key)


async def test_delete_prefix(store: LocalBlobStore) -> None:
    for key in ("outputs/12/a", "outputs/12/sub/b", "outputs/123/c", "outputs/2/d"):
        await store.put_bytes(key, b"x")
    await store.delete_prefix("outputs/12/")
    assert not await store.exists("outputs/12/a")
    assert not await store.exists("outputs/12/sub/b")
    assert await store.exists("outputs/123/c")
    await store.delete_prefix("outputs/1")  # a string prefix, like S3
    assert not await store.exists("outputs/123/c")
    assert await store.exists("outputs/2/d")
    await store.delete_prefix("nothing/here/")  # absent: fine
    with pytest.raises(InvalidInput):
        await store.delete_prefix("")
    with pytest.raises(InvalidInput):
        await store.delete_prefix("../")
