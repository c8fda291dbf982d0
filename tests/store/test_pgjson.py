"""JSON values through orjson on PostgreSQL: the same values and errors as ``json``."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DataError

from jobyard.store.protocol import Store
from jobyard.store.sql.pgjson import dumps, loads
from tests.store.conftest import new_job

#: JSON text as PostgreSQL may hold it, with what orjson alone would get wrong or refuse.
TEXTS = [
    '{"A": "1", "b": [1, 2.5, null, true, "\\u00e9t\\u00e9 \\ud83d\\ude00"]}',
    "[]",
    '"plain"',
    "3",
    "null",
    '  {"spaced" : [ 1 ]}  ',
    '{"dup": 1, "dup": 2}',
    "123456789012345678901234567890",  # beyond 64 bits: an exact int, not a float
    "[-9223372036854775809, 18446744073709551616, 9223372036854775807]",
    '{"token": "1234567890123456789012", "n": 7}',  # 19 digits in a string: same value
    '"\\ud800 lone"',  # a lone surrogate escape (json columns keep it)
    "1e400",
    "0.1",
    "-0.0",
    "1E2",
]


@pytest.mark.parametrize("text_", TEXTS, ids=range(len(TEXTS)))
def test_loads_reads_what_json_reads(text_: str) -> None:
    expected = json.loads(text_)
    for data in (text_.encode(), memoryview(text_.encode()), bytearray(text_.encode())):
        got = loads(data)
        assert repr(got) == repr(expected)  # same types too: ints stay ints, -0.0 stays


@pytest.mark.parametrize("bad", [b"", b"[1] x", b"{", b"NaN x", b"\xff", b"[" * 1100 + b"]" * 1100])
def test_loads_refuses_what_json_refuses_with_its_error(bad: bytes) -> None:
    with pytest.raises((ValueError, RecursionError)) as expected:
        json.loads(bad)
    with pytest.raises(type(expected.value)) as got:
        loads(bad)
    assert str(got.value) == str(expected.value)


#: Values the store may be handed, with what orjson alone would refuse or write otherwise.
VALUES: list[Any] = [
    {"command": ["echo", "été 😀", "\x00\u2028"], "macros": {"A": "1"}},
    [0, 2**63 - 1, -(2**63), 2**64 - 1],
    [2**64, -(2**63) - 1, 10**30],  # beyond 64 bits
    {1: "int key", None: "none key", 2.5: "float key", False: "bool key"},
    "\ud800 lone surrogate",
    (1, "tuple"),
    {"nested": [{"x": None}], "f": 1e300, "g": -0.0},
]


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_dumps_loads_back_as_json_dumps_does(value: Any) -> None:
    data = dumps(value)
    stored = data.decode() if isinstance(data, bytes) else data
    assert repr(loads(stored.encode())) == repr(json.loads(json.dumps(value)))


@dataclass
class _Point:
    x: int


@pytest.mark.parametrize(
    "value",
    [datetime(2026, 1, 1, tzinfo=UTC), {"at": datetime(2026, 1, 1)}, _Point(1), {1, 2}, object()],
    ids=["datetime", "nested datetime", "dataclass", "set", "object"],
)
def test_dumps_refuses_what_json_refuses_with_its_error(value: Any) -> None:
    with pytest.raises(TypeError) as expected:
        json.dumps(value)
    with pytest.raises(TypeError) as got:
        dumps(value)
    assert str(got.value) == str(expected.value)


@pytest.mark.parametrize("value", [math.nan, [math.inf], {"x": -math.inf}])
def test_dumps_writes_nan_and_infinities_as_json_does(value: Any) -> None:
    """orjson would write them as null; json writes NaN / Infinity, which PostgreSQL
    refuses, as it always did."""
    assert dumps(value) == json.dumps(value)


def _pg_only(db: Engine) -> None:
    if db.dialect.name != "postgresql":
        pytest.skip("psycopg's JSON adapters: PostgreSQL only")


@pytest.mark.parametrize("kind", ["json", "jsonb"])
def test_the_store_loads_json_and_jsonb_as_psycopgs_own_loader(db: Engine, kind: str) -> None:
    import psycopg

    _pg_only(db)
    texts = [t for t in TEXTS if kind == "json" or "\\ud800" not in t]
    query = f"SELECT v::{kind} FROM unnest(%s::text[]) AS v"
    with db.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        ours = raw.execute(query, (texts,)).fetchall()
        loader = raw.adapters.get_loader(raw.adapters.types[kind].oid, 0)
        assert loader is not None and loader.__name__ == "OrjsonLoader"
        conn.rollback()
    with psycopg.connect(db.url.set(drivername="postgresql").render_as_string(False)) as own:
        stock = own.execute(query, (texts,)).fetchall()
    assert repr(ours) == repr(stock)


async def test_a_jobs_json_columns_keep_their_values(store: Store, db: Engine) -> None:
    """Written and read back by the store (orjson on PostgreSQL, json on SQLite)."""
    job = replace(
        new_job(command=["echo", "été 😀", "\ud800", "1234567890123456789012"]),
        macros={"A": "1", "É": "\u2028"},
        success_exit_codes=[0, 2**70, -(2**63) - 1],
        labels={"gpu": "yes"},
    )

    stored = await store.job_insert(job, actor="t", reason=None)
    read = await store.job_get(stored.id)

    for got in (stored, read):
        assert got.command == ["echo", "été 😀", "\ud800", "1234567890123456789012"]
        assert got.macros == {"A": "1", "É": "\u2028"}
        assert got.success_exit_codes == [0, 2**70, -(2**63) - 1]
        assert all(type(code) is int for code in got.success_exit_codes)
        assert got.labels == {"gpu": "yes"}


async def test_a_nan_in_a_json_column_is_refused_as_before(store: Store, db: Engine) -> None:
    """json writes NaN, which PostgreSQL's json type refuses; orjson would have stored null."""
    _pg_only(db)
    with pytest.raises(DataError, match="invalid input syntax for type json"):
        await store.job_insert(
            replace(new_job(), success_exit_codes=[math.nan]),  # type: ignore[list-item]
            actor="t",
            reason=None,
        )
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM jobs")).scalar_one() == 0
