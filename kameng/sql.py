"""Small helpers for the hand-written SQL of hot paths."""

from __future__ import annotations

import functools
import re
import weakref
from collections.abc import Callable, Mapping
from typing import TypeVar

from django.db import DEFAULT_DB_ALIAS, InterfaceError, OperationalError, connection, connections, transaction

T = TypeVar("T")


def statements_run(statements: list[tuple[str, list]]) -> None:
    """Run independent data-modifying statements (INSERT/UPDATE, no RETURNING) together; the
    last may also be a SELECT run for its side effect (pg_notify).

    On PostgreSQL they go as one statement, each but the last in a data-modifying CTE: one round
    trip instead of several, all or nothing. They share one snapshot and must not touch the same
    row twice. Elsewhere (SQLite) they run one by one inside a transaction.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            sql_execute(cursor, *statements_chained(statements[:-1], statements[-1]))
        return
    with transaction.atomic(), connection.cursor() as cursor:
        for sql, params in statements:
            cursor.execute(sql, params)


def first_statement(run: Callable[[], T]) -> T:
    """``run()``: one statement that is harmless to run twice, run as the first use of the
    database in a request, in place of Django's health check of a persistent connection
    (CONN_HEALTH_CHECKS), which costs a round trip of its own (``SELECT 1``). If the
    connection turns out to be dead, it is closed and ``run`` runs once more on a new one: what
    the health check would have done, without its round trip on every request."""
    db = connection
    if db.connection is None or db.health_check_done or not db.health_check_enabled or db.in_atomic_block:
        return run()
    db.health_check_done = True
    try:
        return run()
    except (InterfaceError, OperationalError):
        if db.is_usable():
            raise  # the connection is fine: the statement itself failed
        db.close()
        return run()


def statements_chained(
    writes: list[tuple[str, list]], last: tuple[str, list], named: list[tuple[str, str, list]] = ()
) -> tuple[str, list]:
    """PostgreSQL: one statement running ``writes`` (independent data-modifying statements) as
    CTEs, then ``named`` (name, sql, params) CTEs that later ones may read (``INSERT … RETURNING
    id`` feeding the next), then ``last``. Returns (sql, params) for ``sql_execute``."""
    heads = [f"s{n} AS ({sql})" for n, (sql, _params) in enumerate(writes)] + [f"{name} AS ({sql})" for name, sql, _params in named]
    params = [param for _sql, statement_params in writes for param in statement_params]
    params += [param for _name, _sql, statement_params in named for param in statement_params]
    sql = f"WITH {', '.join(heads)} {last[0]}" if heads else last[0]
    return sql, params + list(last[1])


# Hot statements are prepared once per PostgreSQL session and then run with EXECUTE: parsing and
# planning cost the server more than running them (bench/deliver.py). Keyed by the raw psycopg2
# connection, so a new connection prepares again. Only for statements whose parameter types
# PostgreSQL can infer. Prepared statements do not survive a transaction-pooling proxy
# (pgbouncer in transaction mode); Kameng talks to PostgreSQL directly.
_prepared: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def sql_execute(cursor, sql: str, params: list | Mapping[str, object]) -> None:
    """``cursor.execute(sql, params)``, prepared on PostgreSQL. Placeholders are ``%s`` with a
    list, or ``%(name)s`` with a mapping: a name used several times is one parameter of the
    prepared statement, sent once (each parameter sent costs the client its adaptation)."""
    if cursor.db.vendor != "postgresql":
        cursor.execute(sql, params)
        return
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


def model_from_sql(model, sql: str, params: list):
    """One ``model`` instance from a hand-written SELECT (all its columns, in any order, plus any
    extra ones set as attributes), or None: ``Model.objects.raw`` without its per-call column
    mapping, and prepared on PostgreSQL."""
    found = models_from_sql(sql, params, (model, ""))
    return None if found is None else found[0]


def models_from_sql(sql: str, params: list, *models: tuple[type, str]) -> tuple | None:
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
    for model, (order, converters) in zip((model for model, _prefix in models), plans):
        for index, functions in converters:
            for function, expression in functions:
                values[index] = function(values[index], expression, db)
        instances.append(model.from_db(db.alias, None, [values[index] for index in order]))
    for index in extras:
        setattr(instances[0], columns[index], values[index])
    return tuple(instances)


@functools.lru_cache(maxsize=64)
def _row_plan(models: tuple[tuple[type, str], ...], columns: tuple[str, ...], vendor: str):
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
