"""Small helpers for the hand-written SQL of hot paths."""

from __future__ import annotations

from django.db import connection, transaction


def statements_run(statements: list[tuple[str, list]]) -> None:
    """Run independent data-modifying statements (INSERT/UPDATE, no RETURNING) together.

    On PostgreSQL they go as one statement, each but the last in a data-modifying CTE: one round
    trip instead of several, all or nothing. They share one snapshot and must not touch the same
    row twice. Elsewhere (SQLite) they run one by one inside a transaction.
    """
    if connection.vendor == "postgresql" and len(statements) > 1:
        heads = ", ".join(f"s{n} AS ({sql})" for n, (sql, _params) in enumerate(statements[:-1]))
        sql = f"WITH {heads} {statements[-1][0]}"
        params = [param for _sql, statement_params in statements for param in statement_params]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
        return
    with transaction.atomic(), connection.cursor() as cursor:
        for sql, params in statements:
            cursor.execute(sql, params)
