"""The page-cursor decoder, fuzzed: it answers a position we could have written, or 422.

A crafted cursor (``id:9223372036854775808`` in base64) used to reach SQL and fail every
listing with a 500; anything that is not exactly a cursor of ours must now be refused
with :class:`InvalidCursor` ("invalid cursor: ..."), and nothing else may escape.
"""

from __future__ import annotations

import base64

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from jobyard.core.cursors import MAX_CURSOR_CHARS, MAX_CURSOR_ID, decode_cursor, encode_cursor
from jobyard.core.errors import InvalidCursor, InvalidInput

FUZZ = settings(
    max_examples=2000,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def check(cursor: str) -> None:
    """The property every input must satisfy."""
    try:
        value = decode_cursor(cursor)
    except InvalidCursor as exc:
        assert exc.code == "invalid_cursor"
        assert isinstance(exc, InvalidInput)  # a 422
        assert exc.message.startswith("invalid cursor: ")
        assert len(str(exc.details.get("cursor", ""))) <= MAX_CURSOR_CHARS + 3
        return
    assert value is not None and 0 <= value <= MAX_CURSOR_ID
    assert encode_cursor(value) == cursor


@pytest.mark.parametrize(
    "cursor",
    [
        b64(b"id:9223372036854775808"),  # the attacker's: one past the largest id
        b64(b"id:99999999999999999999999999"),
        b64(b"id:-1"),
        b64(b"id:+5"),
        b64(b"id: 5"),
        b64(b"id:5 "),
        b64(b"id:05"),
        b64(b"id:\xd9\xa1"),  # ARABIC-INDIC DIGIT ONE: int() would accept it
        b64(b"id:\xff\xfe"),  # not UTF-8
        b64(b"ix:5"),
        b64(b"5"),
        b64(b""),
        "",
        "not base64!",
        "aWQ6NQ==",  # padding: we never write it
        "aWQ6NQ!!",  # stray characters a lenient decoder would skip
        "aWQ6NQ\n",
        "aWQ6N\u00e9",
        "a" * 10_000,
        b64(b"id:1") * 100,
    ],
)
def test_known_bad_cursors_are_invalid(cursor: str) -> None:
    with pytest.raises(InvalidCursor, match=r"^invalid cursor: "):
        decode_cursor(cursor)


@pytest.mark.parametrize("value", [0, 1, 42, 2**31, 2**53 + 1, MAX_CURSOR_ID])
def test_round_trip(value: int) -> None:
    assert decode_cursor(encode_cursor(value)) == value


def test_no_cursor_is_the_first_page() -> None:
    assert decode_cursor(None) is None


@FUZZ
@given(st.integers(min_value=0, max_value=MAX_CURSOR_ID))
def test_every_position_round_trips(value: int) -> None:
    assert decode_cursor(encode_cursor(value)) == value


@FUZZ
@given(st.text())
@example("\x00")
@example("\udcff")
def test_any_text(cursor: str) -> None:
    check(cursor)


@FUZZ
@given(st.binary(max_size=64))
def test_base64_of_any_bytes(raw: bytes) -> None:
    check(b64(raw))
    check(base64.urlsafe_b64encode(raw).decode())  # with padding
    check(base64.b64encode(raw).decode())  # standard alphabet (+ and /)


@FUZZ
@given(st.integers(), st.sampled_from(["id:", "ID:", "id", "id::", ":", "", "id:-", "id:0"]))
def test_base64_of_any_number_and_prefix(number: int, prefix: str) -> None:
    check(b64(f"{prefix}{number}".encode()))


@FUZZ
@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/"))
def test_any_base64_alphabet_string(cursor: str) -> None:
    check(cursor)


def test_huge_strings_are_refused_without_decoding() -> None:
    for cursor in ("A" * 1_000_000, encode_cursor(1) + "A" * 1_000_000):
        with pytest.raises(InvalidCursor, match="not a cursor this server wrote") as info:
            decode_cursor(cursor)
        assert len(info.value.details["cursor"]) <= MAX_CURSOR_CHARS + 3
