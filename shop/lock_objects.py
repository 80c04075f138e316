"""Row locks on orders. Callers must already be inside a transaction."""

from __future__ import annotations

from kameng.sql import lock_clause, model_columns, models_from_sql
from shop.models import Order, Product

# Hand-written because it runs once per delivery on the hot path: the ORM's query compilation
# cost more than the query itself (see bench/reserve.py). FOR UPDATE OF o locks the order row
# only; locking the joined product row would serialise every delivery of that product. The
# product comes along (its threshold, delay and message templates), read without a lock.
_ORDER_LOCK_SQL = """
    SELECT {columns}, {product_columns}
      FROM {order} o JOIN {product} p ON p.id = o.product_id
     WHERE o.id = %s {lock}
"""


def order_lock(order_id: int) -> Order:
    """Lock one order row (SELECT … FOR UPDATE) and return it freshly read, with its product
    loaded (``order.product``, not locked). Raises Order.DoesNotExist. Lock order across the
    project: payment row, then order, then card keys.
    """
    return _order_with_product(order_id, lock=True)


def order_with_product(order_id: int) -> Order:
    """The same read without a lock (building a message outside the delivery transaction)."""
    return _order_with_product(order_id, lock=False)


def _order_with_product(order_id: int, *, lock: bool) -> Order:
    sql = _ORDER_LOCK_SQL.format(
        columns=model_columns(Order, "o"),
        product_columns=model_columns(Product, "p", "product__"),
        order=Order._meta.db_table,
        product=Product._meta.db_table,
        lock=lock_clause(of="o") if lock else "",
    )
    found = models_from_sql(sql, [order_id], (Order, ""), (Product, "product__"))
    if found is None:
        raise Order.DoesNotExist(f"order {order_id}")
    order, order.product = found
    return order
