"""Growing blobs kept as pieces in a bucket: one object per appended piece.

A bucket cannot append to an object, so a blob that grows from several hosts (a remote
worker's log, posted through whichever replica the load balancer picks) is stored as
one object per piece, ``<key>.parts/<end:016d>-<start:016d>``. Every replica lists the
same pieces, so every replica serves the live blob; sealing writes the final object
from them, and from then on readers look at the final object only.

Names sort by the offset a piece *ends* at, so a LIST that starts after a given offset
(``StartAfter``) answers exactly the pieces a reader at that offset still needs, and the
piece an appender at that offset continues: a follower or a worker sending its pieces
lists a handful of objects per call, not every piece of an hour-long log.

A piece may overlap the one before it (two replicas storing the same retried piece at
once), never leave a gap: :meth:`~jobyard.blobs.protocol.BlobStore.append` writes a
piece only where the pieces end. This module computes which bytes of which pieces make
the blob.
"""

from __future__ import annotations

from dataclasses import dataclass

#: What follows a key's object name to make the folder of its pieces.
PARTS_SUFFIX = ".parts/"
#: Digits of each offset in a piece's name: zero-padded, names sort as offsets do.
OFFSET_DIGITS = 16


@dataclass(frozen=True, slots=True)
class Piece:
    """One stored piece: its object name, the blob offset it starts at, its size."""

    name: str
    offset: int
    size: int

    @property
    def end(self) -> int:
        """The blob offset right after the piece."""
        return self.offset + self.size


@dataclass(frozen=True, slots=True)
class Segment:
    """Bytes of the blob taken from a piece: ``skip`` bytes into it, ``length`` long,
    landing at ``start`` in the blob."""

    piece: Piece
    skip: int
    length: int
    start: int


def piece_name(folder: str, offset: int, size: int) -> str:
    """Object name of a piece of ``size`` bytes at ``offset`` in the pieces ``folder``."""
    return f"{folder}{offset + size:0{OFFSET_DIGITS}d}-{offset:0{OFFSET_DIGITS}d}"


def ending_after(folder: str, offset: int) -> str:
    """A ``StartAfter`` for a LIST of ``folder`` answering the pieces that end past
    ``offset`` (``-`` sorts before ``.``: a piece ending at ``offset`` is left out)."""
    return f"{folder}{offset:0{OFFSET_DIGITS}d}."


def parse_pieces(folder: str, objects: list[tuple[str, int]]) -> list[Piece]:
    """The pieces among ``(name, size)`` objects listed under ``folder``, by offset."""
    found = []
    for name, size in objects:
        end, sep, start = name[len(folder) :].partition("-")
        if (
            sep
            and len(end) == len(start) == OFFSET_DIGITS
            and end.isdigit()
            and start.isdigit()
            and int(end) - int(start) == size
        ):
            found.append(Piece(name, int(start), size))
    found.sort(key=lambda p: (p.offset, -p.size))  # the longest of pieces alike first
    return found


def layout(pieces: list[Piece], base: int = 0) -> tuple[int, list[Segment], int | None]:
    """``(size, segments, gap)`` from ``base``: where the pieces end with no gap after
    ``base``, the segments that make the bytes from ``base`` in order, and where a gap
    begins (None if none). ``pieces`` need hold only those ending past ``base``."""
    end = base
    segments: list[Segment] = []
    for piece in pieces:
        if piece.offset > end:
            return end, segments, end
        if piece.end > end:
            skip = end - piece.offset
            segments.append(Segment(piece, skip, piece.size - skip, end))
            end = piece.end
    return end, segments, None
