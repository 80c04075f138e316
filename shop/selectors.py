"""Storefront reads."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Prefetch, QuerySet

from cardpool.selectors import available_counts
from shop.models import Category, Order, OrderStatus, Product


def catalog_categories() -> list[Category]:
    """Active categories holding active products; each product carries ``stock``."""
    products = Product.objects.filter(is_active=True)
    categories = list(
        Category.objects.filter(is_active=True, products__is_active=True)
        .distinct()
        .prefetch_related(Prefetch("products", queryset=products, to_attr="active_products"))
    )
    all_products = [p for c in categories for p in c.active_products]
    counts = available_counts(product_ids=[p.pk for p in all_products])
    for product in all_products:
        product.stock = counts.get(product.pk, 0)
    return categories


def product_for_sale(*, slug: str) -> Product | None:
    """An active product with ``stock`` set, or None."""
    product = Product.objects.filter(slug=slug, is_active=True).select_related("category").first()
    if product is not None:
        product.stock = available_counts(product_ids=[product.pk]).get(product.pk, 0)
    return product


def orders_expired_ids(*, now: datetime, limit: int = 500) -> list[int]:
    return list(
        Order.objects.filter(status=OrderStatus.PENDING, expires_at__lte=now)
        .order_by("expires_at")
        .values_list("pk", flat=True)[:limit]
    )


def order_events(*, order: Order) -> QuerySet:
    return order.events.all()
