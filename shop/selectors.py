"""Storefront reads."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from django.core.cache import cache
from django.db.models import Prefetch, Q, QuerySet

from shop.fulfilment import UNLIMITED_STOCK, fulfilment
from shop.models import SHOP_SETTINGS_CACHE_KEY, Category, Order, OrderStatus, Product, ShopSettings
from shop.order_tokens import access_token_hash

# Storefront pages count a product's stock only this far; more shows as "In stock". Counting
# reads one index entry per key, and a large pool holds millions (docs/performance.md). What a
# buyer can order is decided exactly: checkout asks units_available for the quantity.
STOCK_SHOWN_UP_TO = 100


def catalog_categories() -> Sequence[Category]:
    """Active categories holding active products; each product carries ``stock`` (0 when sold out,
    exact up to STOCK_SHOWN_UP_TO) and ``stock_unlimited`` (at least that many: "In stock")."""
    products = Product.objects.filter(is_active=True)
    categories = list(
        Category.objects.filter(is_active=True, products__is_active=True)
        .distinct()
        .prefetch_related(Prefetch("products", queryset=products, to_attr="active_products"))
    )
    all_products = [p for c in categories for p in c.active_products]
    counts = fulfilment().units_shown(product_ids=[p.pk for p in all_products], up_to=STOCK_SHOWN_UP_TO)
    for product in all_products:
        _stock_set(product, counts.get(product.pk, 0), up_to=STOCK_SHOWN_UP_TO)
    return categories


def _stock_set(product: Product, stock: int, *, up_to: int) -> None:
    product.stock = stock
    # At least ``up_to`` (or a reusable key without a cap on uses): the page says "In stock".
    product.stock_unlimited = stock >= min(up_to, UNLIMITED_STOCK)


def product_for_sale(*, slug: str) -> Product | None:
    """An active product with ``stock`` set as in ``catalog_categories``, or None. Counted at
    least up to its largest order quantity, so the figure shown never hides that an order of
    any allowed size would exceed the stock."""
    product = Product.objects.filter(slug=slug, is_active=True).select_related("category").first()
    if product is not None:
        up_to = max(STOCK_SHOWN_UP_TO, product.max_quantity)
        _stock_set(product, fulfilment().units_shown(product_ids=[product.pk], up_to=up_to).get(product.pk, 0), up_to=up_to)
    return product


def order_by_access_token(*, token: str) -> Order | None:
    """The order whose page link carries ``token`` (its current one, or the earlier one kept in
    ``previous_token_hash``), with its product; None for any other string."""
    digest = access_token_hash(token)
    return (
        Order.objects.select_related("product")
        .filter(Q(access_token_hash=digest) | Q(previous_token_hash=digest))
        .first()
    )


def orders_expired_ids(*, now: datetime, limit: int = 500) -> list[int]:
    return list(
        Order.objects.filter(status=OrderStatus.PENDING, expires_at__lte=now)
        .order_by("expires_at")
        .values_list("pk", flat=True)[:limit]
    )


def order_events(*, order: Order) -> QuerySet:
    return order.events.all()


def shop_settings() -> ShopSettings:
    """The shop's settings row (an unsaved default when the operator never saved one), from the
    cache: every storefront page and message reads it."""
    found = cache.get(SHOP_SETTINGS_CACHE_KEY)
    if found is None:
        found = ShopSettings.objects.filter(pk=ShopSettings.SINGLETON_PK).first() or ShopSettings(pk=ShopSettings.SINGLETON_PK)
        cache.set(SHOP_SETTINGS_CACHE_KEY, found, timeout=300)
    return found


def orders_by_lookup_digests(*, digests: tuple[str, ...] | list[str]) -> QuerySet[Order]:
    """The orders a contact and query password found (``shop.services.order_lookup_digests``),
    newest first: one probe of the lookup-digest index, whether or not the contact exists."""
    return Order.objects.filter(lookup_digest__in=[d for d in digests if d]).select_related("product").order_by("-created_at", "-id")


def orders_by_ids(*, order_ids: list[int]) -> list[Order]:
    """Orders by id (a browser's remembered orders), newest first; unknown ids are left out."""
    return list(Order.objects.filter(pk__in=order_ids).select_related("product").order_by("-created_at", "-id"))
