"""Row locks on payments (callers must already be inside a transaction)."""

from __future__ import annotations

from kameng.sql import lock_clause, model_columns, models_from_sql
from payments.models import Payment
from shop.models import Order

# Hand-written: every notification outside the common case takes it (see bench/notify.py; the
# common case is payments.services.payment_confirm_guarded). One round trip locks the
# payment and then its order (FOR UPDATE OF locks in the order listed): the project's lock order.
_PAYMENT_ORDER_SQL = """
    SELECT {payment_columns}, {order_columns}
      FROM {payment} p JOIN {order} o ON o.id = p.order_id
     WHERE p.out_trade_no = %s AND p.gateway = %s {lock}
"""


def payment_lock(*, out_trade_no: str, gateway: str) -> tuple[Payment, Order] | None:
    """Lock one payment row and its order's row (SELECT … FOR UPDATE) and return both freshly
    read, or None when there is no such payment.

    Lock order across the project: payment row, then its order, then card keys.
    """
    return models_from_sql(_payment_order_sql(lock=lock_clause(of="p, o")), [out_trade_no, gateway], *_MODELS)


_MODELS = ((Payment, "payment__"), (Order, "order__"))


def _payment_order_sql(*, lock: str) -> str:
    return _PAYMENT_ORDER_SQL.format(
        payment_columns=model_columns(Payment, "p", "payment__"),
        order_columns=model_columns(Order, "o", "order__"),
        payment=Payment._meta.db_table,
        order=Order._meta.db_table,
        lock=lock,
    )
