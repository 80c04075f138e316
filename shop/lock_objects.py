"""Row locks on orders. Callers must already be inside a transaction."""

from __future__ import annotations

from django.db import connection

from kameng.sql import model_columns, model_from_sql
from shop.models import Order

# Hand-written because it runs once per delivery on the hot path: the ORM's query compilation
# cost more than the query itself (see bench/reserve.py). FOR UPDATE OF o locks the order row
# only; locking the joined product row would serialise every delivery of that product.
_ORDER_LOCK_SQL = """
    SELECT {columns}, p.low_stock_threshold AS low_stock_threshold, p.delivery_delay_minutes AS delivery_delay_minutes
      FROM {order} o JOIN {product} p ON p.id = o.product_id
     WHERE o.id = %s {lock}
"""


def order_lock(order_id: int) -> Order:
    """Lock one order row (SELECT … FOR UPDATE) and return it freshly read.

    The product's low-stock threshold comes along as ``low_stock_threshold``. Raises
    Order.DoesNotExist. Lock order across the project: payment row, then order, then card keys.
    """
    sql = _ORDER_LOCK_SQL.format(
        columns=model_columns(Order, "o"),
        order=Order._meta.db_table,
        product=Order._meta.get_field("product").related_model._meta.db_table,
        lock="FOR UPDATE OF o" if connection.features.has_select_for_update_of else "",
    )
    order = model_from_sql(Order, sql, [order_id])
    if order is None:
        raise Order.DoesNotExist(f"order {order_id}")
    return order
