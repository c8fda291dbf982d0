"""Decompression bombs for tests, built in a fraction of a second.

:func:`xz_tar_of_zeros` writes a genuine single-stream ``.tar.xz`` (what ``tar cJf``
makes, readable by ``xz``, Python's ``lzma`` and ``tarfile``) holding large files of
zeros, without compressing gigabytes: the xz stream is assembled from independent
blocks, and the block holding 64 MiB of zeros is compressed once and repeated. Two
files of 1.875 GiB make a ~600 KB archive, like the attacker's 580 KB one.

xz format (https://tukaani.org/xz/xz-file-format.txt): stream header, blocks (header,
LZMA2 data, padding to 4 bytes, no check), index (one record per block), stream footer.
"""

from __future__ import annotations

import io
import lzma
import struct
import tarfile
import zlib
from pathlib import Path

#: Uncompressed size of the repeated block of zeros.
ZERO_BLOCK = 64 * 1024**2
_DICT_SIZE = 1024**2  # LZMA2 dictionary: 2**20 bytes, encoded as property byte 16
_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 0, "dict_size": _DICT_SIZE}]
_STREAM_FLAGS = b"\x00\x00"  # check type: none


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _crc32(data: bytes) -> bytes:
    return struct.pack("<I", zlib.crc32(data))


def _block(data: bytes) -> tuple[bytes, int, int]:
    """One xz block of ``data``: (bytes, unpadded size, uncompressed size)."""
    compressed = lzma.compress(data, format=lzma.FORMAT_RAW, filters=_FILTERS)
    # Block flags: one filter, no sizes; filter LZMA2 (0x21), 1 property byte (16).
    body = b"\x00" + b"\x21\x01\x10"
    size = 1 + len(body)  # with the size byte, without the CRC32
    padded = (size + 3) // 4 * 4
    header = bytes([(padded + 4) // 4 - 1]) + body + b"\x00" * (padded - size)
    header += _crc32(header)
    unpadded = len(header) + len(compressed)
    return header + compressed + b"\x00" * (-len(compressed) % 4), unpadded, len(data)


def xz_stream(blocks: list[tuple[bytes, int, int]]) -> bytes:
    """An xz stream made of already built blocks (see :func:`_block`)."""
    header = b"\xfd7zXZ\x00" + _STREAM_FLAGS + _crc32(_STREAM_FLAGS)
    index = b"\x00" + _varint(len(blocks))
    for _data, unpadded, uncompressed in blocks:
        index += _varint(unpadded) + _varint(uncompressed)
    index += b"\x00" * (-len(index) % 4)
    index += _crc32(index)
    backward = struct.pack("<I", len(index) // 4 - 1)
    footer = _crc32(backward + _STREAM_FLAGS) + backward + _STREAM_FLAGS + b"YZ"
    return header + b"".join(data for data, _, _ in blocks) + index + footer


def _tar_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    return info.tobuf(format=tarfile.GNU_FORMAT)


def xz_tar_of_zeros(path: Path, sizes: dict[str, int]) -> Path:
    """Write a ``.tar.xz`` of files of zeros (sizes: multiples of :data:`ZERO_BLOCK`)."""
    zeros = _block(bytes(ZERO_BLOCK))
    blocks = []
    for name, size in sizes.items():
        if size % ZERO_BLOCK:
            raise ValueError(f"{name}: size must be a multiple of {ZERO_BLOCK}")
        blocks.append(_block(_tar_header(name, size)))
        blocks.extend([zeros] * (size // ZERO_BLOCK))
    blocks.append(_block(bytes(2 * 512)))  # end of archive
    path.write_bytes(xz_stream(blocks))
    return path


def tar_xz_with_pax_header(path: Path, header_bytes: int) -> Path:
    """A ``.tar.xz`` whose first member carries an extended header of ``header_bytes``.

    tarfile reads such a header into memory whole: only a bound on the decompressed
    stream stops it.
    """
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo("a.txt")
        info.size = 2
        info.pax_headers = {"comment": "x" * header_bytes}
        tf.addfile(info, io.BytesIO(b"hi"))
    path.write_bytes(lzma.compress(buf.getvalue(), preset=0))
    return path
