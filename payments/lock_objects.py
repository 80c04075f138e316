"""Row locks on payments. Callers must already be inside a transaction."""

from __future__ import annotations

from django.db import connection

from kameng.sql import model_columns, model_from_sql
from payments.models import Payment

# Hand-written: it runs for every notification (see bench/notify.py).
_PAYMENT_LOCK_SQL = "SELECT {columns} FROM {table} WHERE out_trade_no = %s AND gateway = %s {lock}"


def payment_lock(*, out_trade_no: str, gateway: str) -> Payment | None:
    """Lock one payment row (SELECT … FOR UPDATE) and return it freshly read, or None.

    Lock order across the project: payment row, then its order, then card keys.
    """
    sql = _PAYMENT_LOCK_SQL.format(
        columns=model_columns(Payment), table=Payment._meta.db_table, lock="FOR UPDATE" if connection.features.has_select_for_update else ""
    )
    return model_from_sql(Payment, sql, [out_trade_no, gateway])
