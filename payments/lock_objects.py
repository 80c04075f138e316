"""Row locks on payments (callers must already be inside a transaction), and the guarded read."""

from __future__ import annotations

from django.db import connection

from kameng.sql import model_columns, models_from_sql, row_guard
from payments.models import Payment
from shop.models import Order

# Hand-written: it runs for every notification (see bench/notify.py). One round trip locks the
# payment and then its order (FOR UPDATE OF locks in the order listed): the project's lock order.
_PAYMENT_ORDER_SQL = """
    SELECT {payment_columns}, {order_columns}{versions}
      FROM {payment} p JOIN {order} o ON o.id = p.order_id
     WHERE p.out_trade_no = %s AND p.gateway = %s {lock}
"""


def payment_lock(*, out_trade_no: str, gateway: str) -> tuple[Payment, Order] | None:
    """Lock one payment row and its order's row (SELECT … FOR UPDATE) and return both freshly
    read, or None when there is no such payment.

    Lock order across the project: payment row, then its order, then card keys.
    """
    lock = "FOR UPDATE OF p, o" if connection.features.has_select_for_update_of else ""
    return models_from_sql(_payment_order_sql(lock=lock), [out_trade_no, gateway], *_MODELS)


def payment_read(*, out_trade_no: str, gateway: str) -> tuple[tuple[Payment, Order] | None, tuple[str, list] | None]:
    """PostgreSQL: a payment and its order read without a lock (None when there is no such
    payment), and a guard for the writes decided on them (``statements_run(…, guard=…)``): they
    apply only if neither row has changed since, and lock both rows (in the project's lock
    order) while they do. Saves the transaction's own round trips (BEGIN, the lock, COMMIT) on
    the notification path; a write that finds the rows changed writes nothing (StaleRows)."""
    found = models_from_sql(_payment_order_sql(versions=True), [out_trade_no, gateway], *_MODELS)
    if found is None:
        return None, None
    payment, order = found
    guard = row_guard(
        (Payment._meta.db_table, payment.pk, payment.payment_version),
        (Order._meta.db_table, order.pk, payment.order_version),
    )
    return (payment, order), guard


_MODELS = ((Payment, "payment__"), (Order, "order__"))


def _payment_order_sql(*, lock: str = "", versions: bool = False) -> str:
    return _PAYMENT_ORDER_SQL.format(
        payment_columns=model_columns(Payment, "p", "payment__"),
        order_columns=model_columns(Order, "o", "order__"),
        versions=", p.xmin AS payment_version, o.xmin AS order_version" if versions else "",
        payment=Payment._meta.db_table,
        order=Order._meta.db_table,
        lock=lock,
    )
