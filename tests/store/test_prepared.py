"""Prepared statements answer exactly what SQLAlchemy's own execution answers (both engines)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, bindparam, insert, select, update
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.exc import DBAPIError, IntegrityError

from jobyard.store.schema import UtcDateTime, api_tokens, audit, jobconfigs, jobs, macros, users
from jobyard.store.sql.prepared import (
    _KEPT,
    BulkInsert,
    Prepared,
    _utc_from_sqlite,
    _utc_to_sqlite,
)

from .conftest import make_jobconfig, new_job

_MACROS_OF = (
    select(macros.c.scope, macros.c.scope_id, macros.c.name, macros.c.secure, macros.c.updated_at)
    .where(
        macros.c.scope == "jobconfig",
        macros.c.scope_id.in_(bindparam("ids", expanding=True)),
        macros.c.name.in_(bindparam("names", expanding=True)),
    )
    .order_by(macros.c.scope_id, macros.c.name)
)


async def test_rows_match_sqlalchemy_for_every_column_type(store, db: Engine) -> None:
    jc = await make_jobconfig(store, "prep")
    job = await store.job_insert(new_job(jc.id), actor="t", reason=None)
    whole_job = select(jobs).where(jobs.c.id == bindparam("id"))
    whole_jc = select(jobconfigs).where(jobconfigs.c.id == bindparam("id"))
    with db.begin() as conn:
        for stmt, params in ((whole_job, {"id": job.id}), (whole_jc, {"id": jc.id})):
            expected = [tuple(row) for row in conn.execute(stmt, params)]
            assert expected, "the arrangement has rows to compare"
            assert Prepared(stmt).fetch(conn, params) == expected
        # JSON, datetimes and booleans came back decoded, as SQLAlchemy decodes them.
        row = Prepared(whole_job).first(conn, {"id": job.id})
        assert row is not None
        assert row[list(jobs.c.keys()).index("macros")] == {"A": "1"}
        assert isinstance(row[list(jobs.c.keys()).index("created_at")], datetime)


async def test_list_parameters_of_any_length_and_defaults(store, db: Engine) -> None:
    jcs = [await make_jobconfig(store, f"p{i}") for i in range(3)]
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    with db.begin() as conn:
        for jc in jcs:
            for name, secure in (("A", False), ("B", True)):
                conn.execute(
                    insert(macros).values(
                        scope="jobconfig",
                        scope_id=jc.id,
                        name=name,
                        value="v",
                        secure=secure,
                        updated_at=at,
                        updated_by="t",
                    )
                )
    prepared = Prepared(_MACROS_OF)
    with db.begin() as conn:
        for ids, names in (
            ([], ["A"]),
            ([jcs[0].id], ["A", "B"]),
            ([j.id for j in jcs], ["B"]),
            ([jcs[2].id, jcs[0].id], []),
            ([jcs[1].id], ["A", "B"]),  # a length seen before: the cached compilation
        ):
            params = {"ids": ids, "names": names}
            expected = [tuple(row) for row in conn.execute(_MACROS_OF, params)]
            assert prepared.fetch(conn, params) == expected
        got = prepared.fetch(conn, {"ids": [jcs[1].id], "names": ["B"]})
        assert got == [("jobconfig", jcs[1].id, "B", True, at)]


async def test_writes_returning_and_many(store, db: Engine) -> None:
    a = await store.job_insert(new_job(None), actor="t", reason=None)
    b = await store.job_insert(new_job(None), actor="t", reason=None)
    set_pid = Prepared(
        update(jobs)
        .where(jobs.c.id == bindparam("job_id"), jobs.c.status == "QUEUED")
        .values(pid=bindparam("v_pid"), lease_expires_at=bindparam("v_until"))
        .returning(jobs.c.id, jobs.c.pid, jobs.c.lease_expires_at)
    )
    until = datetime.now(UTC) + timedelta(minutes=5)
    with db.begin() as conn:
        assert set_pid.fetch(conn, {"job_id": a.id, "v_pid": 7, "v_until": until}) == [
            (a.id, 7, until)
        ]
        assert set_pid.first(conn, {"job_id": 10**9, "v_pid": 7, "v_until": until}) is None
        columns = ("name", "token_hash", "role", "created_at", "revoked", "kind", "job_id")
        tokens = Prepared(
            insert(api_tokens).values(
                {c: bindparam(c, type_=api_tokens.c[c].type) for c in columns}
            )
        )
        rows = [
            {
                "name": f"session of job {job_id}",
                "token_hash": f"hash-{job_id}",
                "role": "user",
                "created_at": until,
                "revoked": False,
                "kind": "session",
                "job_id": job_id,
            }
            for job_id in (a.id, b.id)
        ]
        tokens.many(conn, rows)
        stored = conn.execute(
            select(api_tokens.c.token_hash, api_tokens.c.revoked, api_tokens.c.created_at)
            .where(api_tokens.c.kind == "session")
            .order_by(api_tokens.c.job_id)
        ).all()
        assert [tuple(r) for r in stored] == [
            (f"hash-{a.id}", False, until),
            (f"hash-{b.id}", False, until),
        ]


async def test_bulk_insert_keeps_order_values_and_column_limits(store, db: Engine) -> None:
    """One statement for many rows (PostgreSQL: arrays) stores what separate INSERTs
    would: ids in the order of the rows, JSON and NULLs as such, timestamps exact, and a
    value too long for its column refused (SQLite does not enforce lengths)."""
    at = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
    other_zone = at.astimezone(timezone(timedelta(hours=-8)))
    columns = ("at", "actor", "action", "object_type", "object_id", "details", "remote_addr")
    bulk = BulkInsert(audit, columns)
    rows = [
        {
            "at": at if n % 2 else other_zone,
            "actor": f"user:u{n}",
            "action": "bulk.test",
            "object_type": "job",
            "object_id": None if n == 3 else str(n),
            "details": None if n == 1 else {"n": n, "nested": [n, "x"]},
            "remote_addr": None,
        }
        for n in range(7)
    ]
    with db.begin() as conn:
        bulk.run(conn, rows)
        bulk.run(conn, [])  # nothing to write: nothing is run
        bulk.run(conn, rows[:1])
        stored = conn.execute(
            select(audit.c.actor, audit.c.object_id, audit.c.details, audit.c.at)
            .where(audit.c.action == "bulk.test")
            .order_by(audit.c.id)
        ).all()
    assert [tuple(r) for r in stored] == [
        (r["actor"], r["object_id"], r["details"], at) for r in [*rows, rows[0]]
    ]
    if db.dialect.name == "postgresql":
        too_long = [dict(rows[0], actor="x" * 201), rows[1]]
        with pytest.raises(DBAPIError), db.begin() as conn:
            bulk.run(conn, too_long)


_AWKWARD = [
    "",
    "NULL",
    "null",
    'say "hi"',
    "back\\slash",
    "{a,b}",
    "comma, here",
    "tab\there",
    "line\nbreak",
    "é ☃ 🙂",
    " spaced ",
    "'quote'",
]


async def test_bulk_insert_sends_awkward_text_and_json_unchanged(store, db: Engine) -> None:
    """The array parameters go to PostgreSQL in binary: text an array literal would have
    to quote or escape (quotes, backslashes, braces, commas, the word NULL, the empty
    string, non-ASCII) and JSON holding it are stored exactly as given."""
    at = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
    columns = ("at", "actor", "action", "object_type", "object_id", "details", "remote_addr")
    bulk = BulkInsert(audit, columns)
    rows = [
        {
            "at": at,
            "actor": text,
            "action": "bulk.awkward",
            "object_type": "job",
            "object_id": text,
            "details": {"text": text, "list": [text, None, 2**40]},
            "remote_addr": None,
        }
        for text in _AWKWARD
    ]
    with db.begin() as conn:
        bulk.run(conn, rows)
        stored = conn.execute(
            select(audit.c.actor, audit.c.object_id, audit.c.details, audit.c.remote_addr)
            .where(audit.c.action == "bulk.awkward")
            .order_by(audit.c.id)
        ).all()
    assert [tuple(r) for r in stored] == [
        (r["actor"], r["object_id"], r["details"], None) for r in rows
    ]


async def test_driver_errors_are_sqlalchemy_errors(store, db: Engine) -> None:
    await store.users_bootstrap(None)
    columns = ("name", "password_hash", "role", "active", "created_at", "updated_at")
    add_user = Prepared(
        insert(users).values({c: bindparam(c, type_=users.c[c].type) for c in columns})
    )
    now = datetime.now(UTC)
    row = {
        "name": "dup",
        "password_hash": None,
        "role": "user",
        "active": True,
        "created_at": now,
        "updated_at": now,
    }
    with db.connect() as conn:
        with conn.begin():
            add_user.many(conn, [row])
        with pytest.raises(IntegrityError), conn.begin():
            add_user.fetch(conn, row)  # the unique name, through the driver: SQLAlchemy's error
        # The connection is still usable afterwards.
        with conn.begin():
            assert conn.execute(select(users.c.name).where(users.c.name == "dup")).scalar() == "dup"


_ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8)), None]
)


@settings(max_examples=300, deadline=None)
@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=_ZONES)
)
def test_fused_sqlite_timestamp_processors_match_sqlalchemy(value: datetime) -> None:
    dialect = sqlite_dialect.dialect()
    slow_bind = UtcDateTime().dialect_impl(dialect).bind_processor(dialect)
    slow_result = UtcDateTime().dialect_impl(dialect).result_processor(dialect, None)
    assert slow_bind is not None and slow_result is not None
    if value.tzinfo is None:  # naive: refused alike
        with pytest.raises(ValueError, match="naive"):
            slow_bind(value)
        with pytest.raises(ValueError, match="naive"):
            _utc_to_sqlite(value)
        return
    text = _utc_to_sqlite(value)
    assert text == slow_bind(value)
    assert text is not None and len(text) == 26  # fixed width: text order is time order
    assert _utc_from_sqlite(text) == slow_result(text) == value
    assert _utc_from_sqlite(text).tzinfo is UTC
    assert _utc_to_sqlite(None) is None


async def test_statements_keep_one_cursor_each_per_postgresql_connection(store, db: Engine) -> None:
    jc = await make_jobconfig(store, "kept")
    ids = [(await store.job_insert(new_job(jc.id), actor="t", reason=None)).id for _ in range(70)]
    one = Prepared(select(jobs.c.id, jobs.c.status).where(jobs.c.id == bindparam("id")))
    few = Prepared(select(jobs.c.id).where(jobs.c.id.in_(bindparam("ids", expanding=True))))
    many = Prepared(select(jobs.c.id).order_by(jobs.c.id))
    pg = db.dialect.name == "postgresql"
    with db.connect() as conn:

        def kept() -> dict[str, object]:
            found = conn.connection.info.get(_KEPT)
            return {} if found is None else found[1]

        with conn.begin():
            assert one.fetch(conn, {"id": ids[0]})[0][0] == ids[0]
            assert few.fetch(conn, {"ids": ids[:2]}) == [(ids[0],), (ids[1],)]
            cursors = dict(kept())
            # Statements alternating on the same cursors answer their own rows.
            assert one.fetch(conn, {"id": ids[2]})[0][0] == ids[2]
            assert few.fetch(conn, {"ids": ids[1:3]}) == [(ids[1],), (ids[2],)]
        with conn.begin():  # and in the next transaction of the connection
            assert one.fetch(conn, {"id": ids[1]})[0][0] == ids[1]
        if not pg:
            assert kept() == {}  # SQLite: a driver cursor per statement, as before
            return
        assert len(cursors) == 2
        assert kept() == cursors
        assert all(kept()[sql] is cursor for sql, cursor in cursors.items())
        assert not any(cursor.closed for cursor in cursors.values())
        # A statement that fails loses its cursor; the next run gets a fresh one.
        bad = Prepared(select(jobs.c.id).where(jobs.c.id == bindparam("id")))
        with pytest.raises(DBAPIError), conn.begin():
            bad.fetch(conn, {"id": "not a number"})
        bad_sql = bad._compiled(conn.dialect, {}).sql
        assert bad_sql not in kept()
        with conn.begin():
            assert bad.fetch(conn, {"id": ids[0]}) == [(ids[0],)]
        assert bad_sql in kept()
        # A large answer is not kept (a kept cursor holds its last result).
        with conn.begin():
            assert len(many.fetch(conn, {})) > 64
        assert many._compiled(conn.dialect, {}).sql not in kept()
        # A new driver connection (the old one invalidated) gets cursors of its own.
        old = conn.connection.driver_connection
        conn.invalidate()
        with conn.begin():
            assert one.fetch(conn, {"id": ids[0]})[0][0] == ids[0]
        assert conn.connection.driver_connection is not old
        assert kept()
        assert all(c.connection is conn.connection.driver_connection for c in kept().values())
