"""Archive expansion bounded by ratio as well as size, refused early, on real archives.

The attacker's archive (finding: a 580 KB ``.tar.xz`` holding 2 x 1.9 GiB of zeros cost
26.5 s of CPU and 2 GiB written before its 413) is rebuilt by
:func:`tests.support.bombs.xz_tar_of_zeros` and must now be refused in milliseconds,
having written nothing.
"""

from __future__ import annotations

import asyncio
import io
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from jobyard.core.errors import InvalidInput, TooLarge
from jobyard.core.packages import detect_kind, read_manifest, sha256_file
from jobyard.core.unpack import (
    DEFAULT_MAX_RATIO,
    RATIO_FLOOR_BYTES,
    ExpansionLimit,
    safe_unpack,
    unpack_package,
)
from jobyard.worker.workspace import Workspace
from tests.support.bombs import ZERO_BLOCK, tar_xz_with_pax_header, xz_tar_of_zeros

MB = 1024 * 1024
GIB = 1024 * MB
#: The settings' defaults: 2 GiB, 100 000 entries (the ratio's default is the module's).
DEFAULTS = {"max_bytes": 2 * GIB, "max_entries": 100_000}
ATTACKER_FILE = 30 * ZERO_BLOCK  # 1.875 GiB


@pytest.fixture(scope="module")
def attacker_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 x 1.875 GiB of zeros in a ~600 KB .tar.xz."""
    path = tmp_path_factory.mktemp("bombs") / "zeros.tar.xz"
    return xz_tar_of_zeros(path, {"a.bin": ATTACKER_FILE, "b.bin": ATTACKER_FILE})


def _zip_of_zeros(path: Path, size: int) -> Path:
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf,
        zf.open("zeros", "w", force_zip64=True) as f,
    ):
        for _ in range(size // MB):
            f.write(bytes(MB))
    return path


def _tgz_of_zeros(path: Path, size: int) -> Path:
    with tarfile.open(path, "w:gz", compresslevel=9) as tf:
        info = tarfile.TarInfo("zeros")
        info.size = size
        tf.addfile(info, io.BytesIO(bytes(size)))
    return path


def test_expansion_limit_arithmetic() -> None:
    assert DEFAULT_MAX_RATIO == 200
    # The ratio binds: 200 x 1 MB.
    assert ExpansionLimit(GIB, 200, MB).bytes == 200 * MB
    # Never below the floor, never above max_bytes, and no ratio at all when None.
    assert ExpansionLimit(GIB, 200, 10).bytes == RATIO_FLOOR_BYTES
    assert ExpansionLimit(5 * MB, 200, 10).bytes == 5 * MB
    assert ExpansionLimit(GIB, None, 10).bytes == GIB
    assert "200 times the archive's 1048576 bytes" in ExpansionLimit(GIB, 200, MB).describe()
    assert ExpansionLimit(GIB, 200, 10 * MB).describe() == f"{GIB} bytes"


def test_attacker_tar_xz_refused_at_once_writing_nothing(
    attacker_archive: Path, tmp_path: Path
) -> None:
    assert attacker_archive.stat().st_size < 700_000
    assert detect_kind(attacker_archive) == "tar"
    started = time.process_time()
    with pytest.raises(TooLarge, match=r"entry 'a.bin' .* \(200 times the archive's") as info:
        safe_unpack(attacker_archive, tmp_path / "dest", "tar", **DEFAULTS)
    cpu = time.process_time() - started
    assert cpu < 0.5, f"refusing took {cpu:.2f} s of CPU"
    assert info.value.details["limit"] == 200 * attacker_archive.stat().st_size
    assert not (tmp_path / "dest").exists()
    assert list(tmp_path.iterdir()) == []


def test_worker_unpack_is_bounded_by_ratio_too(attacker_archive: Path, tmp_path: Path) -> None:
    """A worker re-checks what it unpacks (the package store is not trusted blindly)."""
    workspace = Workspace(tmp_path / "work")
    sha = sha256_file(attacker_archive)

    async def fetch() -> Path:
        return attacker_archive

    started = time.process_time()
    with pytest.raises(TooLarge, match="200 times"):
        asyncio.run(workspace.obtain_package(sha, "tar", fetch))
    assert time.process_time() - started < 0.5
    leftovers = [p for p in (tmp_path / "work").rglob("*") if p.is_file()]
    assert leftovers == []


def test_ratio_refuses_zip_by_declared_size_before_decompressing(tmp_path: Path) -> None:
    z = _zip_of_zeros(tmp_path / "z.zip", 64 * MB)  # ~64 KB: ratio ~1000
    started = time.process_time()
    with pytest.raises(TooLarge, match=r"declares 67108864 bytes .* times the archive's"):
        safe_unpack(z, tmp_path / "dest", "zip", **DEFAULTS)
    assert time.process_time() - started < 0.2
    assert not (tmp_path / "dest").exists()
    # The same archive passes when the ratio is raised, or not applied.
    stats = safe_unpack(z, tmp_path / "ok", "zip", max_ratio=None, **DEFAULTS)
    assert stats.bytes == 64 * MB


def test_ratio_counts_written_bytes_when_headers_are_small(tmp_path: Path) -> None:
    """Many members each under the bound, together over it: stopped while writing."""
    path = tmp_path / "many.tgz"
    with tarfile.open(path, "w:gz", compresslevel=9) as tf:
        for i in range(40):
            info = tarfile.TarInfo(f"f{i}")
            info.size = MB
            tf.addfile(info, io.BytesIO(bytes(MB)))
    compressed = path.stat().st_size  # ~40 KB: 200 x that is far below 40 MB
    limit = ExpansionLimit(GIB, 200, compressed).bytes
    assert limit == RATIO_FLOOR_BYTES < 40 * MB
    with pytest.raises(TooLarge, match=r"entry 'f16' makes the unpacked size exceed"):
        safe_unpack(path, tmp_path / "dest", "tar", **DEFAULTS)
    assert not (tmp_path / "dest").exists()


def test_small_archives_that_compress_well_still_unpack(tmp_path: Path) -> None:
    t = _tgz_of_zeros(tmp_path / "small.tgz", 8 * MB)  # ratio ~1000, under the floor
    assert 8 * MB / t.stat().st_size > DEFAULT_MAX_RATIO
    stats = unpack_package(t, tmp_path / "dest", "tar", filename="small.tgz", **DEFAULTS)
    assert stats.bytes == 8 * MB


def test_huge_extended_header_stops_decompression_early(tmp_path: Path) -> None:
    """tarfile reads an extended header into memory whole: the stream bound stops it."""
    path = tar_xz_with_pax_header(tmp_path / "pax.tar.xz", 64 * MB)
    assert path.stat().st_size < 100_000
    with pytest.raises(TooLarge, match="first header of this tar archive is larger"):
        detect_kind(path)
    with pytest.raises(TooLarge, match=r"its tar stream passed \d+ bytes after 0 entries"):
        safe_unpack(path, tmp_path / "dest", "tar", **DEFAULTS)
    assert not (tmp_path / "dest").exists()


def test_corrupt_compressed_streams_are_invalid_not_errors(tmp_path: Path) -> None:
    """A broken gzip/xz stream is 'not a tar' for detection, never an unexpected error."""
    t = _tgz_of_zeros(tmp_path / "z.tgz", MB)
    data = bytearray(t.read_bytes())
    data[20:40] = b"\xff" * 20
    t.write_bytes(bytes(data))
    assert detect_kind(t) == "file"
    broken = tmp_path / "x.tar.xz"
    broken.write_bytes(b"\xfd7zXZ\x00" + b"\x00" * 100)
    assert detect_kind(broken) == "file"
    with pytest.raises(InvalidInput, match="corrupt tar archive"):
        read_manifest(broken, "tar")
