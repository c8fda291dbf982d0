"""Growing blobs kept as pieces in a bucket: one object per appended piece.

A bucket cannot append to an object, so a blob that grows from several hosts (a remote
worker's log, posted through whichever replica the load balancer picks) is stored as
one object per piece, ``<key>.parts/<offset:016d>``. Every replica lists the same
pieces, so every replica serves the live blob; sealing writes the final object from
them, and from then on readers look at the final object only.

A piece may overlap the one before it (two replicas storing the same retried piece at
once), never leave a gap: :meth:`~jobyard.blobs.protocol.BlobStore.append` refuses
gaps. This module computes which bytes of which pieces make the blob.
"""

from __future__ import annotations

from dataclasses import dataclass

#: What follows a key's object name to make the folder of its pieces.
PARTS_SUFFIX = ".parts/"
#: Digits of a piece's offset in its name: zero-padded, names sort as offsets do.
OFFSET_DIGITS = 16


@dataclass(frozen=True, slots=True)
class Piece:
    """One stored piece: its object name, the blob offset it starts at, its size."""

    name: str
    offset: int
    size: int


@dataclass(frozen=True, slots=True)
class Segment:
    """Bytes of the blob taken from a piece: ``skip`` bytes into it, ``length`` long,
    landing at ``start`` in the blob."""

    piece: Piece
    skip: int
    length: int
    start: int


def piece_name(folder: str, offset: int) -> str:
    """Object name of the piece at ``offset`` in the pieces folder ``folder``."""
    return f"{folder}{offset:0{OFFSET_DIGITS}d}"


def parse_pieces(folder: str, objects: list[tuple[str, int]]) -> list[Piece]:
    """The pieces among ``(name, size)`` objects listed under ``folder``, by offset."""
    found = []
    for name, size in objects:
        tail = name[len(folder) :]
        if len(tail) == OFFSET_DIGITS and tail.isdigit():
            found.append(Piece(name, int(tail), size))
    found.sort(key=lambda p: (p.offset, p.size))
    return found


def layout(pieces: list[Piece]) -> tuple[int, list[Segment], int | None]:
    """``(size, segments, gap)``: the size of the blob the pieces make from offset 0 with
    no gap, the segments that make it in order, and where a gap begins (None if none)."""
    end = 0
    segments: list[Segment] = []
    for piece in pieces:
        if piece.offset > end:
            return end, segments, end
        if piece.offset + piece.size > end:
            skip = end - piece.offset
            segments.append(Segment(piece, skip, piece.size - skip, end))
            end = piece.offset + piece.size
    return end, segments, None
