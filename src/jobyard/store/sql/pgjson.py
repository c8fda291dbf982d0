"""PostgreSQL's ``json`` and ``jsonb`` values through orjson, with ``json``'s results.

psycopg loads JSON text with ``json.loads`` (~2.4 µs for a small object, with its
encoding detection and decode) and dumps the values SQLAlchemy's JSON type hands it
with ``json.dumps`` (~3.4 µs); the job path handles about a dozen per job (the JSON
columns of ``RETURNING jobs.*`` at submit and at claim, the command, macros and labels
of each insert, a RUNNING report's resolved macros). orjson does both in C, in a third
of that. Where orjson's answer could differ from ``json``'s, the value goes through
``json`` as before, so every stored value loads to the same Python object and what
``json`` refused is refused with its error:

* loading: orjson reads integers beyond 64 bits as floats, where ``json`` keeps them
  exact: text holding 19 digits in a row goes to ``json``. What orjson refuses (lone
  surrogate escapes, numbers beyond the double range, nesting deeper than 1,024) goes to
  ``json`` too, which reads it or raises its own error.
* dumping: what orjson refuses (integers beyond 64 bits, keys that are not strings,
  lone surrogates) goes to ``json``; datetimes and dataclasses, which orjson would write
  and ``json`` refuses, are refused by ``json`` as before; orjson writes NaN and the
  infinities as ``null`` where ``json`` writes ``NaN`` / ``Infinity`` (which PostgreSQL
  refuses), so a dump holding ``null`` is made again by ``json``. The text differs in
  form only: compact, non-ASCII characters as UTF-8 instead of ``\\u`` escapes; the
  ``json`` columns keep it as written, and it loads back to the same values. (Enum
  members and UUIDs, which ``json`` refuses, orjson writes as their value and their text;
  the store writes neither into a JSON column.)
"""

from __future__ import annotations

import json
from typing import Any

import orjson

#: Digits mapped to "9", to find a run of 19 of them: integers of up to 18 digits fit
#: 64 bits, longer ones may not (orjson reads those as floats).
_DIGITS_AS_NINES = bytes.maketrans(b"0123456789", b"9" * 10)
_NINETEEN_DIGITS = b"9" * 19
_DUMP_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def loads(data: bytes | bytearray | memoryview) -> Any:
    """The value of JSON text, as ``json.loads`` reads it (see the module docstring)."""
    if not isinstance(data, bytes):
        data = bytes(data)
    if len(data) < 19 or _NINETEEN_DIGITS not in data.translate(_DIGITS_AS_NINES):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)


def dumps(value: Any) -> bytes | str:
    """JSON text of ``value`` that loads back as ``json.dumps``'s would, or ``json``'s
    error (see the module docstring)."""
    try:
        data = orjson.dumps(value, option=_DUMP_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError included
        return json.dumps(value)
    if b"null" in data:  # perhaps a NaN or an infinity: json writes them as it always did
        return json.dumps(value)
    return data


def use_orjson(dbapi_connection: Any, _record: Any = None) -> None:
    """Load and dump ``json`` and ``jsonb`` values of a new psycopg connection with
    :func:`loads` and :func:`dumps` (a listener of the engine's ``connect`` event)."""
    from psycopg.adapt import Loader  # PostgreSQL only: the SQLite install needs no driver
    from psycopg.types.json import set_json_dumps

    global _TextLoader
    if _TextLoader is None:

        class OrjsonLoader(Loader):
            """The text form of ``json`` and ``jsonb`` (the one the store's cursors read)."""

            load = staticmethod(loads)  # called as is: no method frame per value

        _TextLoader = OrjsonLoader
    for name in ("json", "jsonb"):
        dbapi_connection.adapters.register_loader(name, _TextLoader)
    set_json_dumps(dumps, dbapi_connection)


_TextLoader: type[Any] | None = None
