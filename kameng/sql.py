"""The executor of the hand-written SQL of hot paths: statements built by pure builders run as
one batch (``statements_run``), prepared on PostgreSQL (``sql_execute``), with the row-lock
clause (``lock_clause``) and id lists (``sql_in``) of the database in use. Where PostgreSQL
and SQLite differ in running SQL, they differ here only (``_executor``)."""

from __future__ import annotations

import functools
import re
import weakref
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from types import MappingProxyType
from typing import Any, NamedTuple, TypeVar, cast

from django.db import DEFAULT_DB_ALIAS, InterfaceError, OperationalError, connection, connections, transaction
from django.db.models import Field, Model

T = TypeVar("T")


class Statement(NamedTuple):
    """One SQL statement of a batch, built by a pure builder (``shop/transitions.py``,
    ``payments/confirmation.py``, ``delivery/messages.py``) and run by ``statements_run``.

    ``params`` are named (``%(name)s``): builders share one name for one value (``at``, the
    time of the whole batch), so it is sent once. ``name``: later statements of the batch may
    read the rows this one returns (``RETURNING …``, or a SELECT) as the table ``name``.
    ``materialized``: evaluate it once, before the rest (the row locks of a guarded batch).
    """

    sql: str
    params: Mapping[str, object] = MappingProxyType({})
    name: str = ""
    materialized: bool = False


def statements_run(statements: Sequence[Statement]) -> list[tuple]:
    """Run a batch of statements, all or nothing, and return the rows of the last one.

    PostgreSQL: one statement, each but the last as a CTE (a data-modifying one always runs,
    read or not), prepared: one round trip. The statements share one snapshot, so they must not
    write the same row twice, and a later one sees what an earlier one wrote only through its
    name. SQLite: one by one in a transaction; a named statement's rows are kept in a temporary
    table of that name, so later statements read them the same way.
    """
    if not statements:
        return []
    return _executor().batch_run(statements, _params_merged(statements))


def sql_execute(cursor, sql: str, params: list | Mapping[str, object]) -> None:
    """``cursor.execute(sql, params)``, prepared on PostgreSQL. Placeholders are ``%s`` with a
    list, or ``%(name)s`` with a mapping: a name used several times is one parameter of the
    prepared statement, sent once (each parameter sent costs the client its adaptation)."""
    _executor().execute(cursor, sql, params)


def sql_in(name: str, values: Sequence[object]) -> tuple[str, dict[str, Any]]:
    """``IN`` over ``values`` as (SQL after the column, named params): on PostgreSQL one array
    parameter ``= ANY(%(name)s)``, so every list length is one prepared statement."""
    return _executor().in_list(name, values)


def _params_merged(statements: Sequence[Statement]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for st in statements:
        for key, value in st.params.items():
            if key in merged and merged[key] != value:
                raise ValueError(f"two values for the batch parameter {key!r}")
            merged[key] = value
    return merged


class _Sequential:
    """SQLite (and any database without data-modifying CTEs): statements one by one."""

    def batch_run(self, statements: Sequence[Statement], params: dict[str, Any]) -> list[tuple]:
        # The backend's own text form for times: SQLite stores what it is given.
        adapt = connection.ops.adapt_datetimefield_value
        params = {key: adapt(value) if isinstance(value, datetime) else value for key, value in params.items()}
        rows: list[tuple] = []
        with transaction.atomic(), connection.cursor() as cursor:
            for st in statements:
                cursor.execute(st.sql, {key: params[key] for key in _NAMED_PLACEHOLDER.findall(st.sql)})
                rows = cursor.fetchall() if cursor.description else []
                if st.name:
                    self._rows_keep(cursor, st.name, [column[0] for column in cursor.description or ()], rows)
        return rows

    @staticmethod
    def _rows_keep(cursor, name: str, columns: list[str], rows: list[tuple]) -> None:
        # A named statement's rows go to a temporary table that the rest of the batch reads
        # under the same name (it shadows nothing: the project's tables are prefixed).
        quote = connection.ops.quote_name
        cursor.execute(f"DROP TABLE IF EXISTS temp.{quote(name)}")
        cursor.execute(f"CREATE TEMP TABLE {quote(name)} ({', '.join(quote(column) for column in columns)})")
        if rows:
            cursor.executemany(f"INSERT INTO temp.{quote(name)} VALUES ({', '.join(['%s'] * len(columns))})", rows)

    def execute(self, cursor, sql: str, params) -> None:
        cursor.execute(sql, params)

    def in_list(self, name: str, values: Sequence[object]) -> tuple[str, dict[str, Any]]:
        names = [f"{name}{n}" for n in range(len(values))]
        return "IN (" + ", ".join(f"%({n})s" for n in names) + ")", dict(zip(names, values, strict=True))


class _Postgres(_Sequential):
    """PostgreSQL: a batch is one prepared statement of data-modifying CTEs."""

    def batch_run(self, statements: Sequence[Statement], params: dict[str, Any]) -> list[tuple]:
        *writes, last = statements
        heads = [
            f"{st.name or f's{n}'} AS {'MATERIALIZED ' if st.materialized else ''}({st.sql})"
            for n, st in enumerate(writes)
        ]
        with connection.cursor() as cursor:
            self.execute(cursor, f"WITH {', '.join(heads)} {last.sql}" if heads else last.sql, params)
            return cursor.fetchall() if cursor.description else []

    def execute(self, cursor, sql: str, params) -> None:
        raw = cursor.db.connection
        names = _prepared.setdefault(raw, {})
        found = names.get(sql)
        if found is None:
            body, order = _numbered(sql, named=isinstance(params, Mapping))
            found = (f"kameng_{len(names) + 1}", order)
            cursor.execute(f"PREPARE {found[0]} AS {body}")
            names[sql] = found
        name, order = found
        if order is not None:
            params = [params[key] for key in order]
        cursor.execute(f"EXECUTE {name} ({', '.join(['%s'] * len(params))})" if params else f"EXECUTE {name}", params)

    def in_list(self, name: str, values: Sequence[object]) -> tuple[str, dict[str, Any]]:
        return f"= ANY(%({name})s)", {name: list(values)}


_SEQUENTIAL, _POSTGRES = _Sequential(), _Postgres()


def _executor() -> _Sequential:
    # The one place where running SQL differs between the databases.
    return _POSTGRES if connection.vendor == "postgresql" else _SEQUENTIAL


def lock_clause(*, of: str = "", skip_locked: bool = False) -> str:
    """The row-lock clause of a SELECT on this database: ``FOR UPDATE [OF …] [SKIP LOCKED]``,
    or "" where there are no row locks (SQLite locks the whole database for a write)."""
    if not row_locks():
        return ""
    return "FOR UPDATE" + (f" OF {of}" if of else "") + (" SKIP LOCKED" if skip_locked else "")


def row_locks() -> bool:
    """Whether this database locks rows (SELECT … FOR UPDATE, with OF and SKIP LOCKED)."""
    return connection.features.has_select_for_update_skip_locked and connection.features.has_select_for_update_of


def row_source(name: str, **columns: int) -> Statement:
    """A one-row statement named ``name`` holding the given integer ids (``target`` with
    ``order_id``…), for builders whose statements read their ids from a named row: the same
    statements then run on ids the caller locked or on the rows a guarded lock returns."""
    return Statement(
        "SELECT " + ", ".join(f"CAST(%({name}_{column})s AS bigint) AS {column}" for column in columns),
        {f"{name}_{column}": value for column, value in columns.items()},
        name=name,
    )


def first_statement(run: Callable[[], T]) -> T:
    """``run()``: one statement that is harmless to run twice, run as the first use of the
    database in a request, in place of Django's health check of a persistent connection
    (CONN_HEALTH_CHECKS), which costs a round trip of its own (``SELECT 1``). If the
    connection turns out to be dead, it is closed and ``run`` runs once more on a new one: what
    the health check would have done, without its round trip on every request."""
    db = connection
    # health_check_done and health_check_enabled are Django 4.1+ attributes the stubs lack.
    if db.connection is None or db.health_check_done or not db.health_check_enabled or db.in_atomic_block:  # type: ignore[attr-defined]
        return run()
    db.health_check_done = True  # type: ignore[attr-defined]
    try:
        return run()
    except (InterfaceError, OperationalError):
        if db.is_usable():
            raise  # the connection is fine: the statement itself failed
        db.close()
        return run()


# Hot statements are prepared once per PostgreSQL session and then run with EXECUTE: parsing and
# planning cost the server more than running them (bench/deliver.py). Keyed by the raw psycopg2
# connection, so a new connection prepares again. Only for statements whose parameter types
# PostgreSQL can infer. Prepared statements do not survive a transaction-pooling proxy
# (pgbouncer in transaction mode); Kameng talks to PostgreSQL directly.
_prepared: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


_NAMED_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def _numbered(sql: str, *, named: bool) -> tuple[str, tuple[str, ...] | None]:
    """``sql`` with its placeholders as PostgreSQL's ``$1``, ``$2``, …; with named placeholders,
    also the names in parameter order (a repeated name keeps its first number)."""
    if not named:
        parts = sql.split("%s")
        return parts[0] + "".join(f"${n}{part}" for n, part in enumerate(parts[1:], start=1)), None
    order: dict[str, int] = {}
    body = _NAMED_PLACEHOLDER.sub(lambda match: f"${order.setdefault(match.group(1), len(order) + 1)}", sql)
    return body, tuple(order)


@functools.lru_cache(maxsize=256)
def sql_literal(value: str) -> str:
    """A constant of our own (a status, an event type) written into a statement's text as a SQL
    string literal, so that it is not a parameter adapted and sent on every run. Never for input."""
    if not isinstance(value, str) or "\\" in value or "\x00" in value:
        raise ValueError(f"not a plain string constant: {value!r}")
    return "'" + str(value).replace("'", "''") + "'"


def model_columns(model, alias: str = "", prefix: str = "") -> str:
    """The model's columns, listed: prepared statements select these instead of ``*``, so a column
    added by a migration while a process runs does not change a prepared statement's result
    ("cached plan must not change result type"). With ``prefix`` each is selected AS prefix+column,
    so two models can share one row (``models_from_sql``)."""
    return _columns_listed(model, alias, prefix, connection.vendor)


@functools.lru_cache(maxsize=64)
def _columns_listed(model, alias: str, prefix: str, _vendor: str) -> str:
    quote = connection.ops.quote_name
    head = f"{alias}." if alias else ""
    return ", ".join(
        head + quote(field.column) + (f" AS {quote(prefix + field.column)}" if prefix else "")
        for field in model._meta.concrete_fields
    )


def models_from_sql(sql: str, params: list, *models: tuple[type[Model], str]) -> tuple | None:
    """Instances of several models from one row of a hand-written SELECT, or None. ``models``
    holds (model, prefix) pairs: each model's columns are selected as prefix+column
    (``model_columns(model, alias, prefix)``); columns no model claims are set as attributes on
    the first instance."""
    db = connections[DEFAULT_DB_ALIAS]
    with db.cursor() as cursor:
        sql_execute(cursor, sql, params)
        row = cursor.fetchone()
        if row is None:
            return None
        columns = tuple(column[0] for column in cursor.description)
    plans, extras = _row_plan(models, columns, db.vendor)
    values = list(row)
    instances = []
    for model, (order, converters) in zip((model for model, _prefix in models), plans, strict=True):
        for index, functions in converters:
            for function, expression in functions:
                values[index] = function(values[index], expression, db)
        # field_names=None: the values are every concrete field, in model order (as Django's own raw() passes).
        instances.append(model.from_db(db.alias, None, [values[index] for index in order]))  # type: ignore[arg-type]
    for index in extras:
        setattr(instances[0], columns[index], values[index])
    return tuple(instances)


def values_from_sql(model: type[Model], fields: tuple[str, ...], sql: str, params: list) -> list[tuple]:
    """The rows of a hand-written SELECT of ``fields`` of ``model`` (in that order), each value
    converted as the ORM would (SQLite returns times as text): ``values_list`` without its
    query building, and prepared on PostgreSQL."""
    db = connections[DEFAULT_DB_ALIAS]
    with db.cursor() as cursor:
        sql_execute(cursor, sql, params)
        rows = cursor.fetchall()
    converters = _field_converters(model, fields, db.vendor)
    if not any(converters):
        return rows
    return [
        tuple(_converted(value, functions, db) for value, functions in zip(row, converters, strict=True))
        for row in rows
    ]


def _converted(value, functions, db):
    for function, expression in functions:
        value = function(value, expression, db)
    return value


@functools.lru_cache(maxsize=64)
def _field_converters(model: type[Model], fields: tuple[str, ...], _vendor: str) -> tuple:
    converters = []
    for name in fields:
        expression = cast(Field, model._meta.get_field(name)).get_col(model._meta.db_table)
        converters.append(
            tuple(
                (f, expression)
                for f in connection.ops.get_db_converters(expression) + expression.get_db_converters(connection)
            )
        )
    return tuple(converters)


@functools.lru_cache(maxsize=64)
def _row_plan(models: tuple[tuple[type[Model], str], ...], columns: tuple[str, ...], vendor: str):
    """For a result shape: per model, the column index of each concrete field in model order and
    the converters each column needs on this database; and the indexes of extra columns."""
    position = {column: index for index, column in enumerate(columns)}
    plans, claimed = [], set()
    for model, prefix in models:
        fields = model._meta.concrete_fields
        missing = [field.column for field in fields if prefix + field.column not in position]
        if missing:
            raise ValueError(f"{model.__name__}: the query does not select {', '.join(missing)}")
        order = [position[prefix + field.column] for field in fields]
        claimed.update(order)
        converters = []
        for field in fields:
            expression = field.get_col(model._meta.db_table)
            functions = connection.ops.get_db_converters(expression) + expression.get_db_converters(connection)
            if functions:
                converters.append((position[prefix + field.column], [(function, expression) for function in functions]))
        plans.append((order, converters))
    extras = [index for index in range(len(columns)) if index not in claimed]
    return plans, extras
