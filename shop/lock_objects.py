"""Row locks on orders. Callers must already be inside a transaction."""

from __future__ import annotations

from shop.models import Order


def order_lock(order_id: int) -> Order:
    """Lock one order row (SELECT … FOR UPDATE) and return it freshly read.

    Lock order across the project: payment row first, then the order, then card keys.
    """
    return Order.objects.select_for_update().select_related("product").get(pk=order_id)
