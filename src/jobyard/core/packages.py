"""Packages: kind detection, member names, and the ``jobyard.toml`` manifest.

A package is an upload that is a zip archive, a tar archive (plain, gzip, bzip2 or
xz compressed) or a single file. The kind is decided by the content, never by the
name alone, because a name is whatever the uploader typed. Unpacking lives in
:mod:`jobyard.core.unpack`.

Pure: this module imports nothing of jobyard beyond :mod:`jobyard.core`.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import re
import tarfile
import tomllib
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import IO, Any, Literal

from jobyard.core.errors import InvalidInput, TooLarge, UnsafePackage

PackageKind = Literal["zip", "tar", "file"]

#: Name of the optional manifest at the root of an archive.
MANIFEST_NAME = "jobyard.toml"
#: Largest manifest accepted.
MANIFEST_MAX_BYTES = 256 * 1024

#: Read size when hashing or copying package bytes.
CHUNK_BYTES = 1024 * 1024
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ENTRYPOINT_KEYS = frozenset({"command", "env", "timeout"})
#: First bytes of a file that is run directly (script with a shebang, ELF binary).
EXEC_MAGIC = (b"#!", b"\x7fELF")
#: Most decompressed bytes read to recognise a tar archive (its first header, with any
#: extended header before it).
DETECT_MAX_BYTES = 1024 * 1024


# -- hashing and detection -----------------------------------------------------------


def sha256_file(path: Path, *, chunk_size: int = CHUNK_BYTES) -> str:
    """Hex sha256 of a file, read in chunks (packages may be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def detect_kind(path: Path) -> PackageKind:
    """Decide whether an upload is a zip archive, a tar archive or a single file.

    Zip needs the local-header magic at offset 0 *and* a readable central
    directory (so a script that merely contains ``PK`` is a file). Tar is recognised
    by a valid first header after transparent gzip/bzip2/xz decompression; a
    compressed non-tar (``data.csv.gz``) is therefore a single file.
    """
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        try:
            with zipfile.ZipFile(path) as zf:
                zf.infolist()
        except (zipfile.BadZipFile, OSError, ValueError):
            return "file"
        return "zip"
    try:
        with (
            TarStream(path, check=_detect_bound) as stream,
            tarfile.open(fileobj=stream, mode="r|") as tf,
        ):
            return "tar" if tf.next() is not None else "file"
    except (tarfile.TarError, OSError, EOFError, lzma.LZMAError, zlib.error, ValueError):
        return "file"


def _detect_bound(total: int) -> None:
    if total > DETECT_MAX_BYTES:
        raise TooLarge(
            f"the first header of this tar archive is larger than {DETECT_MAX_BYTES} bytes",
            {"limit": DETECT_MAX_BYTES},
        )


# -- tar streams -----------------------------------------------------------------------


_Source = IO[bytes] | gzip.GzipFile | bz2.BZ2File | lzma.LZMAFile


def _decompressing(raw: IO[bytes]) -> _Source:
    """``raw`` itself, or a decompressing reader when it starts like gzip, bzip2 or xz.

    The formats and magic numbers are those tarfile's ``r|*`` mode recognises.
    """
    head = raw.read(10)
    raw.seek(0)
    if head.startswith(b"\x1f\x8b\x08"):
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if head[:3] == b"BZh" and head[4:10] == b"1AY&SY":
        return bz2.BZ2File(raw)
    if head.startswith((b"\x5d\x00\x00\x80", b"\xfd7zXZ")):
        return lzma.LZMAFile(raw)
    return raw


class TarStream(io.RawIOBase):
    """The decompressed bytes of a tar file, for ``tarfile.open(fileobj=..., mode="r|")``.

    Why not tarfile's own ``r|*``: it decompresses each block of input in one call, and
    a block of xz holding zeros expands to hundreds of megabytes at once. The standard
    decompressing readers used here never return more than asked. ``check(total)`` is
    called after every read with the number of decompressed bytes so far, and raises to
    stop reading (a bound on expansion, enforced while decompressing). Decompression
    errors surface as :class:`tarfile.ReadError`.
    """

    def __init__(self, path: Path, *, check: Callable[[int], None] | None = None) -> None:
        super().__init__()
        self._raw: IO[bytes] = open(path, "rb")  # noqa: SIM115 (closed by close())
        try:
            self._source = _decompressing(self._raw)
        except BaseException:
            self._raw.close()
            raise
        self._check = check
        self.total = 0

    def readable(self) -> bool:
        """Always: this is a reader."""
        return True

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` with the next decompressed bytes; 0 at the end."""
        view = memoryview(buffer).cast("B")
        try:
            data = self._source.read(len(view))
        except (OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
            raise tarfile.ReadError(f"cannot decompress: {exc}") from exc
        view[: len(data)] = data
        self.total += len(data)
        if self._check is not None:
            self._check(self.total)
        return len(data)

    def close(self) -> None:
        """Close the decompressor and the file."""
        if not self.closed:
            try:
                self._source.close()
                self._raw.close()
            finally:
                super().close()

    def __enter__(self) -> TarStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# -- names -----------------------------------------------------------------------------


def normalize_member_name(name: str) -> str:
    """Return the normalised relative POSIX form of an archive entry name.

    ``./a//b/`` becomes ``a/b``; the root (``./``) becomes ``""``. Raises
    :class:`UnsafePackage` for absolute names, ``..`` components and NUL bytes.
    """
    if "\x00" in name:
        raise UnsafePackage(f"archive entry {name!r} has a NUL byte in its name", {"entry": name})
    if name.startswith("/"):
        raise UnsafePackage(
            f"archive entry {name!r} has an absolute path", {"entry": name, "problem": "absolute"}
        )
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafePackage(
            f"archive entry {name!r} would be written outside the workspace",
            {"entry": name, "problem": "parent_reference"},
        )
    return "/".join(parts)


def safe_filename(filename: str) -> str:
    """The last component of an uploaded file name, refusing empty and special names."""
    base = PurePosixPath(filename.replace("\\", "/")).name
    if base in ("", ".", "..") or "\x00" in base:
        raise InvalidInput(f"unusable file name {filename!r}", {"filename": filename})
    return base


# -- manifest --------------------------------------------------------------------------


def parse_manifest(data: bytes | str) -> dict[str, dict[str, Any]]:
    """Validate a ``jobyard.toml`` and return its entry points.

    Result: ``{name: {"command": [str, ...], "env": {str: str}, "timeout": int | None}}``
    (``timeout`` in minutes, 0 = none, None = not set by the package). Raises
    :class:`InvalidInput` naming the offending key.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{MANIFEST_NAME}: not UTF-8 text: {exc}") from exc
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"{MANIFEST_NAME}: not valid TOML: {exc}") from exc
    unknown = sorted(set(doc) - {"entrypoints"})
    if unknown:
        raise _manifest_error(unknown[0], "unknown key (only [entrypoints.NAME] tables)")
    entrypoints = doc.get("entrypoints", {})
    if not isinstance(entrypoints, dict):
        raise _manifest_error("entrypoints", "must be a table of [entrypoints.NAME] tables")
    result: dict[str, dict[str, Any]] = {}
    for name, spec in entrypoints.items():
        key = f"entrypoints.{name}"
        if not _NAME_RE.match(name):
            raise _manifest_error(
                key, "entry point names use ASCII letters, digits, '.', '_', '-' (at most 100)"
            )
        if not isinstance(spec, dict):
            raise _manifest_error(key, "must be a table")
        extra = sorted(set(spec) - _ENTRYPOINT_KEYS)
        if extra:
            raise _manifest_error(f"{key}.{extra[0]}", "unknown key (command, env, timeout)")
        result[name] = {
            "command": _manifest_command(key, spec.get("command")),
            "env": _manifest_env(key, spec.get("env", {})),
            "timeout": _manifest_timeout(key, spec.get("timeout")),
        }
    return result


def _manifest_error(key: str, problem: str) -> InvalidInput:
    return InvalidInput(
        f"{MANIFEST_NAME}: {key}: {problem}",
        {"file": MANIFEST_NAME, "key": key, "problem": problem},
    )


def _manifest_command(key: str, command: Any) -> list[str]:
    key = f"{key}.command"
    if command is None:
        raise _manifest_error(key, "is required")
    if not isinstance(command, list) or not command:
        raise _manifest_error(key, "must be a non-empty array of strings")
    for i, arg in enumerate(command):
        if not isinstance(arg, str):
            raise _manifest_error(f"{key}[{i}]", "must be a string")
        if "\x00" in arg:
            raise _manifest_error(f"{key}[{i}]", "must not contain a NUL character")
    if not command[0]:
        raise _manifest_error(f"{key}[0]", "the program must not be empty")
    return list(command)


def _manifest_env(key: str, env: Any) -> dict[str, str]:
    key = f"{key}.env"
    if not isinstance(env, dict):
        raise _manifest_error(key, "must be a table of strings")
    for name, value in env.items():
        if not _ENV_NAME_RE.match(name):
            raise _manifest_error(f"{key}.{name}", "is not a valid environment variable name")
        if not isinstance(value, str):
            raise _manifest_error(f"{key}.{name}", "must be a string")
        if "\x00" in value:
            raise _manifest_error(f"{key}.{name}", "must not contain a NUL character")
    return dict(env)


def _manifest_timeout(key: str, timeout: Any) -> int | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0:
        raise _manifest_error(f"{key}.timeout", "must be an integer number of minutes >= 0")
    return timeout


def read_manifest(path: Path, kind: PackageKind) -> dict[str, dict[str, Any]]:
    """Entry points declared by the package's root ``jobyard.toml``; ``{}`` when absent."""
    if kind == "file":
        return {}
    data: bytes | None = None
    try:
        if kind == "zip":
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    if not info.is_dir() and _root_manifest(info.filename):
                        with zf.open(info) as f:
                            data = _read_limited(f)
                        break
        else:
            with TarStream(path) as stream, tarfile.open(fileobj=stream, mode="r|") as tf:
                for member in tf:
                    if member.isreg() and _root_manifest(member.name):
                        member_file = tf.extractfile(member)
                        if member_file is not None:
                            data = _read_limited(member_file)
                        break
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, lzma.LZMAError, zlib.error) as exc:
        raise InvalidInput(f"corrupt {kind} archive: {exc}") from exc
    return {} if data is None else parse_manifest(data)


def _root_manifest(name: str) -> bool:
    return name in (MANIFEST_NAME, f"./{MANIFEST_NAME}")


def _read_limited(f: IO[bytes]) -> bytes:
    data = f.read(MANIFEST_MAX_BYTES + 1)
    if len(data) > MANIFEST_MAX_BYTES:
        raise TooLarge(f"{MANIFEST_NAME} is larger than {MANIFEST_MAX_BYTES} bytes")
    return data
