"""How the pieces of a growing blob in a bucket make its bytes (``blobs/pieces.py``)."""

from __future__ import annotations

from jobyard.blobs.pieces import Piece, ending_after, layout, parse_pieces, piece_name

FOLDER = "p/logs/0/1.log.parts/"


def _pieces(*spans: tuple[int, int]) -> list[Piece]:
    names = [(piece_name(FOLDER, start, end - start), end - start) for start, end in spans]
    return parse_pieces(FOLDER, names)


def test_names_sort_by_end_and_a_list_after_an_offset_starts_at_the_piece_reaching_it() -> None:
    names = sorted(piece_name(FOLDER, s, n) for s, n in [(0, 10), (10, 5), (15, 0), (15, 100)])
    assert [n[len(FOLDER) :][:16].lstrip("0") for n in names] == ["10", "15", "15", "115"]
    # A LIST with StartAfter=ending_after(14) answers the pieces ending at 15 or later.
    assert [n for n in names if n > ending_after(FOLDER, 14)] == names[1:]
    assert [n for n in names if n > ending_after(FOLDER, 15)] == names[3:]


def test_layout_joins_overlapping_pieces_and_stops_at_a_gap() -> None:
    size, segments, gap = layout(_pieces((0, 7), (7, 14), (7, 10), (10, 21)))
    assert (size, gap) == (21, None)
    assert [(s.start, s.skip, s.length) for s in segments] == [(0, 0, 7), (7, 0, 7), (14, 4, 7)]
    size, segments, gap = layout(_pieces((0, 3), (9, 12)))
    assert (size, gap) == (3, 3)


def test_layout_from_an_offset_reads_only_what_is_past_it() -> None:
    pieces = _pieces((7, 14), (14, 21))  # what a LIST after offset 9 answers
    size, segments, gap = layout(pieces, 9)
    assert (size, gap) == (21, None)
    assert [(s.start, s.skip, s.length) for s in segments] == [(9, 2, 5), (14, 0, 7)]
    assert layout(_pieces((0, 9)), 9) == (9, [], None)  # nothing new at the end


def test_foreign_objects_in_the_folder_are_not_pieces() -> None:
    objects = [(FOLDER + "junk", 3), (FOLDER + "0000000000000005-0000000000000000", 4)]
    assert parse_pieces(FOLDER, objects) == []  # a size that does not match its name
