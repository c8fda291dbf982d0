"""Statements of the job path compiled once and run on the driver's cursor.

SQLAlchemy's execution pipeline (execution context, parameter processing, result
metadata, row objects) costs ~30 µs per statement on this class of machine, five times
what SQLite itself needs to run a guarded one-row ``UPDATE``; the job path runs several
statements per job. A :class:`Prepared` statement is compiled by SQLAlchemy once per
dialect: its SQL string, the order of its parameters and the type processors of its
parameters and result columns. Running it passes the processed parameters straight to
the DBAPI connection of the transaction (same connection, same transaction) and answers
plain tuples, processed exactly as SQLAlchemy would (``UtcDateTime``, JSON...).

Driver errors are wrapped into SQLAlchemy's ``DBAPIError`` classes, and a connection the
driver reports as lost is invalidated, as SQLAlchemy's own execution does, so outage
handling and constraint errors look the same to callers. Statements with parameters
rendered at execution time (``IN`` lists of expanding parameters) are compiled once per
length of each list; literal-rendered ones are refused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, String, Table, bindparam, insert
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.types import TypeEngine

from jobyard.store.schema import UtcDateTime

_Processor = Callable[[Any], Any]
#: Compilations kept per statement (dialects x lengths of its list parameters).
_MAX_SHAPES = 64


def _utc_to_sqlite(value: datetime | None) -> str | None:
    """``UtcDateTime`` then SQLite's ``DATETIME`` bind processing, in one call: naive UTC
    text with six fraction digits (``YYYY-MM-DD HH:MM:SS.ffffff``, fixed width)."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the store; use an aware UTC datetime")
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


def _utc_from_sqlite(value: str) -> datetime:
    """SQLite text of a ``UtcDateTime`` back to an aware UTC datetime."""
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def _bind_processor(type_: TypeEngine[Any], dialect: Dialect) -> _Processor | None:
    """The type's bind processor; a fused one for timestamps on SQLite (the commonest
    parameter of the job path: three nested calls and a %-format otherwise)."""
    if isinstance(type_, UtcDateTime) and dialect.name == "sqlite":
        return _utc_to_sqlite
    processor: _Processor | None = type_.dialect_impl(dialect).bind_processor(dialect)
    return processor


def _result_processor(type_: TypeEngine[Any], dialect: Dialect, coltype: Any) -> _Processor | None:
    if isinstance(type_, UtcDateTime) and dialect.name == "sqlite":
        return _utc_from_sqlite
    processor: _Processor | None = type_.dialect_impl(dialect).result_processor(dialect, coltype)
    return processor


class _Slot:
    """Stands for element ``index`` of the list parameter ``name`` while compiling."""

    __slots__ = ("index", "name")

    def __init__(self, name: str, index: int) -> None:
        self.name = name
        self.index = index


class _Compiled:
    """One statement compiled for one dialect (and one length of each list parameter).

    ``keys`` are the driver's parameter names (named styles) and ``sources`` where each
    driver parameter comes from, in order: a parameter name, or ``(name, index)`` for an
    element of a list parameter (the ``IN`` of an expanding bind parameter).
    """

    __slots__ = (
        "_columns",
        "_dialect",
        "answers",
        "binds",
        "defaults",
        "keys",
        "named",
        "resolved",
        "results",
        "sources",
        "sql",
    )

    def __init__(
        self, stmt: ClauseElement, dialect: Dialect, lengths: dict[str, int] | None = None
    ) -> None:
        compiled = stmt.compile(dialect=dialect)
        if not isinstance(compiled, SQLCompiler):
            raise TypeError(f"not a SQL statement: {type(stmt).__name__}")
        if compiled.literal_execute_params:
            raise TypeError("a prepared statement cannot hold literal-rendered parameters")
        self.named = not compiled.positional
        binds: dict[str, _Processor] = {}
        self.defaults: dict[str, Any] = {}
        for name, bind in compiled.binds.items():
            processor = _bind_processor(bind.type, dialect)
            if processor is not None:
                binds[name] = processor
            if not bind.required and not bind.expanding:
                self.defaults[name] = bind.effective_value
        self.binds = binds
        keys: list[str]
        sources: list[str | tuple[str, int]]
        if compiled.post_compile_params:
            expanding = {bind.key for bind in compiled.post_compile_params}
            if lengths is None or set(lengths) != expanding:
                raise TypeError(f"the lengths of {sorted(expanding)} are needed to compile")
            sample = {n: [_Slot(n, i) for i in range(lengths[n])] for n in expanding}
            placeholders = dict.fromkeys(compiled.binds)  # values do not matter here
            state = compiled.construct_expanded_state({**placeholders, **self.defaults, **sample})
            self.sql: str = state.statement
            keys = list(state.parameters) if self.named else list(state.positiontup or ())
            sources = []
            for key in keys:
                value = state.parameters[key]
                sources.append((value.name, value.index) if isinstance(value, _Slot) else key)
        else:
            self.sql = compiled.string
            keys = list(compiled.binds) if self.named else list(compiled.positiontup or ())
            sources = list(keys)
        self.keys: tuple[str, ...] = tuple(keys)
        self.sources: tuple[str | tuple[str, int], ...] = tuple(sources)
        columns = getattr(stmt, "selected_columns", None)
        returning = getattr(compiled, "returning", None) or ()
        self._columns = list(returning) if returning else list(columns or ())
        #: Whether the statement answers rows (a SELECT, or a write with RETURNING).
        self.answers = bool(self._columns)
        self._dialect = dialect
        #: Result processors, made at the first execution: some need the driver's type
        #: codes of the columns (PostgreSQL numerics).
        self.results: tuple[_Processor | None, ...] | None = None
        self.resolved = False

    def _result_processors(
        self, description: Sequence[Any]
    ) -> tuple[_Processor | None, ...] | None:
        dialect = self._dialect
        processors = [
            _result_processor(col.type, dialect, desc[1])
            for col, desc in zip(self._columns, description, strict=True)
        ]
        return tuple(processors) if any(p is not None for p in processors) else None

    def parameters(self, params: dict[str, Any]) -> Any:
        """The driver's parameters (a tuple or a dict) for ``params``."""
        values = {**self.defaults, **params} if self.defaults else params
        binds = self.binds
        out = []
        for source in self.sources:
            if isinstance(source, tuple):
                name, index = source
                value = values[name][index]
            else:
                name = source
                value = values[name]
            out.append(binds[name](value) if name in binds else value)
        return dict(zip(self.keys, out, strict=True)) if self.named else tuple(out)

    def rows(
        self, raw: Sequence[Sequence[Any]], description: Sequence[Any] | None
    ) -> list[tuple[Any, ...]]:
        """Rows with their result processors applied (``description``: the cursor's,
        needed until the processors are made)."""
        if not self.resolved:
            if description is None:
                raise RuntimeError("the first rows of a statement need its description")
            self.results = self._result_processors(description)
            self.resolved = True
        results = self.results
        if results is None:
            return [tuple(row) for row in raw]
        return [
            tuple(
                value if proc is None or value is None else proc(value)
                for proc, value in zip(results, row, strict=True)
            )
            for row in raw
        ]


class Prepared:
    """A statement of the job path; see the module's docstring."""

    __slots__ = ("_by_dialect", "_lists", "_stmt")

    def __init__(self, stmt: ClauseElement) -> None:
        self._stmt = stmt
        #: The expanding (list) parameters, found at the first compilation: the statement
        #: is compiled once per dialect and length of each.
        self._lists: tuple[str, ...] | None = None
        self._by_dialect: dict[tuple[int, tuple[int, ...]], _Compiled] = {}

    def _compiled(self, dialect: Dialect, params: dict[str, Any]) -> _Compiled:
        lists = self._lists
        if lists is None:
            found = getattr(self._stmt.compile(dialect=dialect), "post_compile_params", ())
            lists = self._lists = tuple(sorted(bind.key for bind in found))
        lengths = tuple(len(params[name]) for name in lists)
        key = (id(dialect), lengths)
        compiled = self._by_dialect.get(key)
        if compiled is None:
            if len(self._by_dialect) >= _MAX_SHAPES:
                self._by_dialect.clear()  # many list lengths: keep memory bounded
            by_name = dict(zip(lists, lengths, strict=True)) if lists else None
            compiled = self._by_dialect[key] = _Compiled(self._stmt, dialect, by_name)
        return compiled

    def fetch(self, conn: Connection, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Run once with ``params``; the rows it answers (none for a plain write)."""
        compiled = self._compiled(conn.dialect, params)
        args = compiled.parameters(params)
        cursor = _run(conn, compiled.sql, args, many=False)
        try:
            if not compiled.answers:
                return []
            # The driver builds the description anew at each reading (an object per
            # column): it is read once, to make the result processors.
            description = None if compiled.resolved else cursor.description
            raw = cursor.fetchall()
            if len(raw) > _MAX_KEPT_ROWS:
                _forget(conn, compiled.sql)
            return compiled.rows(raw, description)
        finally:
            cursor.close()

    def first(self, conn: Connection, params: dict[str, Any]) -> tuple[Any, ...] | None:
        """The first row :meth:`fetch` answers, or None."""
        rows = self.fetch(conn, params)
        return rows[0] if rows else None

    def many(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Run once per parameter set (``executemany``); for writes answering no rows."""
        compiled = self._compiled(conn.dialect, rows[0] if rows else {})
        if self._lists:
            raise TypeError("executemany of a statement with list parameters")
        if len(rows) == 1:  # psycopg's executemany enters and leaves a pipeline
            cursor = _run(conn, compiled.sql, compiled.parameters(rows[0]), many=False)
        else:
            cursor = _run(conn, compiled.sql, [compiled.parameters(r) for r in rows], many=True)
        cursor.close()


class BulkInsert:
    """Rows of one table written in one statement, in the order given.

    On PostgreSQL, one ``INSERT ... SELECT FROM unnest(arrays) WITH ORDINALITY ORDER BY``
    with one array parameter per column: a single statement to parse, bind and run
    whatever the number of rows (``executemany`` sends and runs one per row), and the
    ids of a serial key follow the order of the rows. Each value goes through its
    column type's bind processing first, as :class:`Prepared` does; the arrays are cast
    to unbounded types, so a value too long for its column fails as a plain INSERT
    would. On SQLite (no array type; ``executemany`` runs in the driver's C loop) the
    rows go through a :class:`Prepared` ``executemany``.
    """

    __slots__ = ("_columns", "_pg", "_pg_sql", "_plain", "_table")

    def __init__(self, table: Table, columns: Sequence[str]) -> None:
        self._table = table
        self._columns = tuple(columns)
        self._plain = Prepared(
            insert(table).values({c: bindparam(c, type_=table.c[c].type) for c in columns})
        )
        #: Per PostgreSQL dialect: the SQL and each column's bind processor.
        self._pg: tuple[int, tuple[_Processor | None, ...]] | None = None
        self._pg_sql = ""

    def _pg_form(self, dialect: Dialect) -> tuple[str, tuple[_Processor | None, ...]]:
        found = self._pg
        if found is not None and found[0] == id(dialect):
            return self._pg_sql, found[1]
        casts = []
        processors = []
        for name in self._columns:
            type_ = self._table.c[name].type
            casts.append(array_param(type_, dialect))
            processors.append(_bind_processor(type_, dialect))
        quote = dialect.identifier_preparer
        names = ", ".join(quote.quote(name) for name in self._columns)
        aliases = ", ".join(f"c{i}" for i in range(len(self._columns)))
        self._pg_sql = (
            f"INSERT INTO {quote.format_table(self._table)} ({names}) SELECT {aliases} "
            f"FROM unnest({', '.join(casts)}) WITH ORDINALITY AS u({aliases}, n) ORDER BY n"
        )
        self._pg = (id(dialect), tuple(processors))
        return self._pg_sql, self._pg[1]

    def run(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Insert ``rows`` (a value for every column each; none: nothing is run)."""
        if not rows:
            return
        dialect = conn.dialect
        if dialect.name != "postgresql" or len(rows) == 1:
            self._plain.many(conn, rows)
            return
        sql, processors = self._pg_form(dialect)
        arrays = []
        for name, processor in zip(self._columns, processors, strict=True):
            values = [row[name] for row in rows]
            if processor is not None:
                values = [None if v is None else processor(v) for v in values]
            arrays.append(values)
        _run(conn, sql, tuple(arrays), many=False).close()


class RowReader:
    """Rows of driver SQL returning ``columns``, processed as :class:`Prepared` does
    (the processors made at the first reading, from the cursor's description)."""

    __slots__ = ("_columns", "_processors")

    def __init__(self, columns: Sequence[Any]) -> None:
        self._columns = list(columns)
        self._processors: dict[int, tuple[_Processor | None, ...]] = {}

    def rows(self, conn: Connection, cursor: Any) -> list[tuple[Any, ...]]:
        """Every row of ``cursor`` (which answered ``columns``), processed."""
        dialect = conn.dialect
        processors = self._processors.get(id(dialect))
        if processors is None:
            description = cursor.description
            processors = tuple(
                _result_processor(col.type, dialect, desc[1])
                for col, desc in zip(self._columns, description, strict=True)
            )
            self._processors[id(dialect)] = processors
        return [
            tuple(
                value if proc is None or value is None else proc(value)
                for proc, value in zip(processors, row, strict=True)
            )
            for row in cursor.fetchall()
        ]


def array_cast(type_: TypeEngine[Any], dialect: Dialect) -> str:
    """The SQL type of an array parameter holding values of a column of ``type_``
    (strings unbounded: a value too long fails as it would in a plain statement)."""
    return "TEXT" if isinstance(type_, String) else str(type_.compile(dialect=dialect))


def array_param(type_: TypeEngine[Any], dialect: Dialect) -> str:
    """The placeholder of an array parameter holding values of a column of ``type_``:
    ``%b::TYPE[]``, sent in binary.

    psycopg dumps a list for the text format element by element in Python, quoting and
    escaping each value (``ListDumper._dump_list``: ~0.1 ms for the five 8-value arrays
    of a batch of events, and one tenth of the API process's CPU under a burst of
    remote jobs); the binary form of the same arrays costs half as much (no quoting).
    """
    return f"%b::{array_cast(type_, dialect)}[]"


def bind_processor(type_: TypeEngine[Any], dialect: Dialect) -> _Processor | None:
    """The bind processing of a column type (None: values pass as they are)."""
    return _bind_processor(type_, dialect)


def run_raw(conn: Connection, sql: str, args: Sequence[Any]) -> Any:
    """Run driver SQL (positional parameters) in the transaction of ``conn``; the open
    cursor (the caller reads it, then closes it). Driver errors come as SQLAlchemy's, as
    for :class:`Prepared`.

    On PostgreSQL the cursor is the one kept for ``sql`` on this connection (see
    :class:`_KeptCursor`): read its rows before ``sql`` runs again on the connection."""
    return _run(conn, sql, args, many=False)


#: Cursors kept per PostgreSQL connection (one per statement): past this many, all go.
_MAX_KEPT = 256
#: A statement answering more rows than this gets a fresh cursor next time: a kept
#: cursor holds its last result until it runs again.
_MAX_KEPT_ROWS = 64
#: Key of the kept cursors in the pool's info dictionary of a driver connection.
_KEPT = "jobyard_kept_cursors"


def _kept_cursor_class() -> type[Any]:
    import psycopg  # PostgreSQL only: the SQLite install needs no driver

    class KeptCursor(psycopg.Cursor[Any]):
        """A cursor that stays open across the transactions of its connection, kept for
        one statement: see :func:`_cursor`. ``close()`` leaves it open (its last result
        is dropped at its next execution); :meth:`discard` closes it."""

        def close(self) -> None:
            """Keep the cursor for the next execution of its statement."""

        def discard(self) -> None:
            """Close the cursor for good."""
            super().close()

    return KeptCursor


_KeptCursor: type[Any] | None = None


def _cursor(conn: Connection, raw: Any, sql: str) -> Any:
    """A cursor of ``raw`` (the driver connection of ``conn``) to run ``sql`` on.

    On PostgreSQL, the same cursor every time for the same statement on the same
    connection: psycopg builds per cursor its adapters map and, per statement run on
    it, a transformer (the dumpers of the parameters, found and built by type: Python
    code per array parameter); a cursor kept for one statement keeps both, which saves
    ~30 % of the driver's CPU of a statement (an array insert and a small select: ~93
    against ~66 µs). On SQLite a cursor as before (the driver's cursors are C, cheap).
    """
    if conn.dialect.name != "postgresql":
        return raw.cursor()
    info = conn.connection.info
    kept: tuple[Any, dict[str, Any]] | None = info.get(_KEPT)
    if kept is None or kept[0] is not raw:  # first statement, or a new driver connection
        kept = info[_KEPT] = (raw, {})
    cursors = kept[1]
    cursor = cursors.get(sql)
    if cursor is None or cursor.closed:
        if len(cursors) >= _MAX_KEPT:
            _discard_all(cursors)
        global _KeptCursor
        if _KeptCursor is None:
            _KeptCursor = _kept_cursor_class()
        cursor = cursors[sql] = _KeptCursor(raw)
    return cursor


def _discard_all(cursors: dict[str, Any]) -> None:
    for cursor in cursors.values():
        cursor.discard()
    cursors.clear()


def _forget(conn: Connection, sql: str) -> None:
    """Close and drop the cursor kept for ``sql`` (after an error, or a large result)."""
    kept = conn.connection.info.get(_KEPT) if conn.dialect.name == "postgresql" else None
    if kept is not None:
        cursor = kept[1].pop(sql, None)
        if cursor is not None:
            cursor.discard()


def _run(conn: Connection, sql: str, args: Any, *, many: bool) -> Any:
    """Execute on the transaction's driver connection; driver errors wrapped as SQLAlchemy's."""
    raw = conn.connection.driver_connection
    dialect = conn.dialect
    if raw is None:
        raise RuntimeError("the connection has no driver connection")
    cursor = _cursor(conn, raw, sql)
    try:
        if many:
            cursor.executemany(sql, args)
        else:
            cursor.execute(sql, args)
    except dialect.loaded_dbapi.Error as exc:
        lost = dialect.is_disconnect(exc, raw, cursor)
        if dialect.name == "postgresql":
            _forget(conn, sql)
        else:
            cursor.close()
        if lost:
            conn.invalidate(exc)
        raise DBAPIError.instance(
            sql,
            args,
            exc,
            dialect.loaded_dbapi.Error,
            connection_invalidated=lost,
            dialect=dialect,
            ismulti=many,
        ) from exc
    return cursor
