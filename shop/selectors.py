"""Storefront reads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.cache import cache
from django.db import connection
from django.db.models import Prefetch, Q, QuerySet

from kameng.sql import sql_execute
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
        _stock_set(
            product, fulfilment().units_shown(product_ids=[product.pk], up_to=up_to).get(product.pk, 0), up_to=up_to
        )
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


@dataclass(frozen=True)
class RecentOrders:
    """Orders paid since a time by one buyer, each count capped at the ``up_to`` asked."""

    by_contact: int
    by_client_ip: int


# Hand-written and prepared (kameng.sql): the delivery hold rule asks inside every delivery,
# where the ORM's two counts cost more in query building and planning than in running. Each
# count reads at most ``up_to`` entries of its index ((contact, paid_at), and (client_ip,
# paid_at) over paid orders, whose condition the strict ``=`` and ``>=`` imply under a generic
# plan too); the limit is a literal, one prepared statement per limit a shop sets.
_PAID_SINCE_SQL = """
SELECT (SELECT count(*) FROM (SELECT 1 FROM {table}
                               WHERE contact = %(contact)s AND paid_at >= %(since)s AND id <> %(exclude)s
                               LIMIT {up_to}) by_contact),
       (SELECT count(*) FROM (SELECT 1 FROM {table}
                               WHERE client_ip = %(client_ip)s AND paid_at >= %(since)s AND id <> %(exclude)s
                               LIMIT {up_to}) by_client_ip)
"""


def orders_paid_since_sql(*, up_to: int) -> str:
    """The statement of ``orders_paid_since_count`` (pure; named parameters contact, client_ip,
    since, exclude)."""
    return _PAID_SINCE_SQL.format(table=Order._meta.db_table, up_to=int(up_to))


def orders_paid_since_count(
    *, contact: str, client_ip: str | None, since: datetime, exclude_id: int, up_to: int
) -> RecentOrders:
    """How many other orders (``exclude_id`` left out) of ``contact``, and of ``client_ip``
    (0 without one), were paid at or after ``since``, whatever their status now; each counted
    only up to ``up_to``, so a buyer with thousands of orders that hour costs what one at the
    limit does. One statement, served by indexes (the delivery hold rule, in every delivery)."""
    params = {
        "contact": contact,
        "client_ip": client_ip or None,
        "since": connection.ops.adapt_datetimefield_value(since),
        "exclude": exclude_id,
    }
    with connection.cursor() as cursor:
        sql_execute(cursor, orders_paid_since_sql(up_to=up_to), params)
        by_contact, by_client_ip = cursor.fetchone()
    return RecentOrders(by_contact=by_contact, by_client_ip=by_client_ip)


def orders_paid_due_ids(*, cutoff: datetime, limit: int = 1000) -> list[int]:
    """Paid orders whose delivery was due at ``cutoff``, oldest payment first, at most ``limit``:
    paid at or before ``cutoff``, or, for a product that delays delivery by ``d`` minutes, at or
    before ``cutoff - d`` (so an order waiting out its delay is not re-driven on every sweep).

    Walks the index over paid orders in paid_at order, reading at most the paid orders older
    than ``cutoff``, however many of them wait out a delay. (Each delay's cutoff is computed
    here, one condition per distinct delay, rather than in SQL: SQLite cannot multiply an
    interval by a column. The product table is small.)"""
    delays = (
        Product.objects.filter(delivery_delay_minutes__gt=0).order_by().values_list("delivery_delay_minutes", flat=True)
    )
    due = Q(product__delivery_delay_minutes=0)
    for delay in sorted(set(delays)):
        due |= Q(product__delivery_delay_minutes=delay, paid_at__lte=cutoff - timedelta(minutes=delay))
    orders = Order.objects.filter(due, status=OrderStatus.PAID, paid_at__lte=cutoff)
    return list(orders.order_by("paid_at").values_list("pk", flat=True)[:limit])


def order_events(*, order: Order) -> QuerySet:
    return order.events.all()


def shop_settings() -> ShopSettings:
    """The shop's settings row (an unsaved default when the operator never saved one), from the
    cache: every storefront page and message reads it."""
    found = cache.get(SHOP_SETTINGS_CACHE_KEY)
    if found is None:
        found = ShopSettings.objects.filter(pk=ShopSettings.SINGLETON_PK).first() or ShopSettings(
            pk=ShopSettings.SINGLETON_PK
        )
        cache.set(SHOP_SETTINGS_CACHE_KEY, found, timeout=300)
    return found


def orders_by_lookup_digests(*, digests: tuple[str, ...] | list[str]) -> QuerySet[Order]:
    """The orders a contact and query password found (``shop.services.order_lookup_digests``),
    newest first: one probe of the lookup-digest index, whether or not the contact exists."""
    return (
        Order.objects.filter(lookup_digest__in=[d for d in digests if d])
        .select_related("product")
        .order_by("-created_at", "-id")
    )


def orders_by_ids(*, order_ids: list[int]) -> list[Order]:
    """Orders by id (a browser's remembered orders), newest first; unknown ids are left out."""
    return list(Order.objects.filter(pk__in=order_ids).select_related("product").order_by("-created_at", "-id"))
