"""Small helpers for the hand-written SQL of hot paths."""

from __future__ import annotations

import functools
import weakref

from django.db import connection, transaction


def statements_run(statements: list[tuple[str, list]]) -> None:
    """Run independent data-modifying statements (INSERT/UPDATE, no RETURNING) together; the
    last may also be a SELECT run for its side effect (pg_notify).

    On PostgreSQL they go as one statement, each but the last in a data-modifying CTE: one round
    trip instead of several, all or nothing. They share one snapshot and must not touch the same
    row twice. Elsewhere (SQLite) they run one by one inside a transaction.
    """
    if connection.vendor == "postgresql":
        heads = ", ".join(f"s{n} AS ({sql})" for n, (sql, _params) in enumerate(statements[:-1]))
        sql = f"WITH {heads} {statements[-1][0]}" if heads else statements[-1][0]
        params = [param for _sql, statement_params in statements for param in statement_params]
        with connection.cursor() as cursor:
            sql_execute(cursor, sql, params)
        return
    with transaction.atomic(), connection.cursor() as cursor:
        for sql, params in statements:
            cursor.execute(sql, params)


# Hot statements are prepared once per PostgreSQL session and then run with EXECUTE: parsing and
# planning cost the server more than running them (bench/deliver.py). Keyed by the raw psycopg2
# connection, so a new connection prepares again. Only for statements whose parameter types
# PostgreSQL can infer. Prepared statements do not survive a transaction-pooling proxy
# (pgbouncer in transaction mode); Kameng talks to PostgreSQL directly.
_prepared: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def sql_execute(cursor, sql: str, params: list) -> None:
    """``cursor.execute(sql, params)``, prepared on PostgreSQL (``%s`` placeholders only)."""
    if connection.vendor != "postgresql":
        cursor.execute(sql, params)
        return
    raw = cursor.db.connection
    names = _prepared.setdefault(raw, {})
    name = names.get(sql)
    if name is None:
        name = f"kameng_{len(names) + 1}"
        parts = sql.split("%s")
        body = parts[0] + "".join(f"${n}{part}" for n, part in enumerate(parts[1:], start=1))
        cursor.execute(f"PREPARE {name} AS {body}")
        names[sql] = name
    cursor.execute(f"EXECUTE {name} ({', '.join(['%s'] * len(params))})" if params else f"EXECUTE {name}", params)


def model_columns(model, alias: str = "") -> str:
    """The model's columns, listed: prepared statements select these instead of ``*``, so a column
    added by a migration while a process runs does not change a prepared statement's result
    ("cached plan must not change result type")."""
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + connection.ops.quote_name(field.column) for field in model._meta.concrete_fields)


def model_from_sql(model, sql: str, params: list):
    """One ``model`` instance from a hand-written SELECT (all its columns, in any order, plus any
    extra ones set as attributes), or None: ``Model.objects.raw`` without its per-call column
    mapping, and prepared on PostgreSQL."""
    with connection.cursor() as cursor:
        sql_execute(cursor, sql, params)
        row = cursor.fetchone()
        if row is None:
            return None
        columns = tuple(column[0] for column in cursor.description)
    order, extras, converters = _row_plan(model, columns, connection.vendor)
    values = list(row)
    for index, functions in converters:
        for function, expression in functions:
            values[index] = function(values[index], expression, connection)
    instance = model.from_db(connection.alias, None, [values[index] for index in order])
    for index in extras:
        setattr(instance, columns[index], values[index])
    return instance


@functools.lru_cache(maxsize=64)
def _row_plan(model, columns: tuple[str, ...], vendor: str):
    """For a result shape: the column index of each concrete field in model order, the indexes
    of extra columns, and the converters each column needs on this database."""
    fields = model._meta.concrete_fields
    position = {column: index for index, column in enumerate(columns)}
    missing = [field.column for field in fields if field.column not in position]
    if missing:
        raise ValueError(f"{model.__name__}: the query does not select {', '.join(missing)}")
    order = [position[field.column] for field in fields]
    extras = [index for index in range(len(columns)) if index not in set(order)]
    converters = []
    for field in fields:
        expression = field.get_col(model._meta.db_table)
        functions = connection.ops.get_db_converters(expression) + expression.get_db_converters(connection)
        if functions:
            converters.append((position[field.column], [(function, expression) for function in functions]))
    return order, extras, converters
