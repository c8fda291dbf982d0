"""Page cursors: opaque to callers, decoded strictly by us.

A cursor is the URL-safe base64 (without padding) of ``id:<n>``, meaning "the page
after the row with id ``n``". Whatever arrives as a cursor is hostile input: anything
that is not exactly what :func:`encode_cursor` writes for an id the databases can hold
(0 .. 2**63 - 1) is refused with :class:`~jobyard.core.errors.InvalidCursor` (422),
never passed on to SQL, where an out-of-range integer would fail the query.

Pure: imports nothing of jobyard beyond :mod:`jobyard.core`.
"""

from __future__ import annotations

import base64
import binascii
import re

from jobyard.core.errors import InvalidCursor

#: Largest id a cursor may name: ids are signed 64-bit integers on both engines.
MAX_CURSOR_ID = 2**63 - 1
#: Longest cursor we ever write (``id:`` and 19 digits, in base64).
MAX_CURSOR_CHARS = len(base64.urlsafe_b64encode(f"id:{MAX_CURSOR_ID}".encode()).rstrip(b"="))
_PAYLOAD = re.compile(r"id:(0|[1-9][0-9]{0,18})")


def encode_cursor(last_id: int) -> str:
    """An opaque cursor for "after this id" (URL-safe base64 of ``id:<n>``)."""
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    """The id a cursor points after (None: no cursor, the first page).

    Raises :class:`InvalidCursor` ("invalid cursor: ...") for anything else than what
    :func:`encode_cursor` writes: too long, not base64, not ``id:<n>`` in ASCII, an id
    out of range, or a non-canonical spelling (padding, leading zeros, stray characters
    that a lenient base64 decoder would skip).
    """
    if cursor is None:
        return None
    if not cursor or len(cursor) > MAX_CURSOR_CHARS:
        raise _invalid(cursor, "not a cursor this server wrote; start without one")
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, ValueError):  # ValueError: non-ASCII input or output
        raise _invalid(cursor, "not URL-safe base64 of a position") from None
    match = _PAYLOAD.fullmatch(text)
    if match is None:
        raise _invalid(cursor, "it does not name a position")
    value = int(match[1])
    if value > MAX_CURSOR_ID:
        raise _invalid(cursor, "its position is out of range")
    if encode_cursor(value) != cursor:
        raise _invalid(cursor, "not spelled the way this server writes cursors")
    return value


def _invalid(cursor: str, why: str) -> InvalidCursor:
    shown = cursor if len(cursor) <= MAX_CURSOR_CHARS else cursor[:MAX_CURSOR_CHARS] + "..."
    return InvalidCursor(
        f"invalid cursor: {why} (use the next_cursor of a previous page)", {"cursor": shown}
    )
