"""The key pool as shop's fulfilment provider (``shop.fulfilment``)."""

from __future__ import annotations

from cardpool.models import CardKey, CardKeyStatus
from cardpool.selectors import available_counts, product_has_stock, stock_counts


class KeyPoolFulfilment:
    """A product's goods are its sellable card keys (``cardpool.selectors``)."""

    def units_available(self, *, product_id: int, quantity: int) -> bool:
        return product_has_stock(product_id=product_id, quantity=quantity)

    def units_shown(self, *, product_ids: list[int], up_to: int) -> dict[int, int]:
        return stock_counts(product_ids=product_ids, up_to=up_to)

    def units_counted(self, *, product_ids: list[int]) -> dict[int, int]:
        return available_counts(product_ids=product_ids)

    def order_holds_goods(self, *, order_id: int) -> bool:
        return CardKey.objects.filter(order_id=order_id, status=CardKeyStatus.SOLD).exists()
