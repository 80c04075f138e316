"""Stock: one definition of a sellable key, counted only as far as a page shows it, exact where
it decides what a buyer can order (cardpool/selectors.py, shop/selectors.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from cardpool.importing import cardkeys_import_text
from cardpool.models import CardKey, CardKeyStatus
from cardpool.selectors import available_counts, product_has_stock, stock_counts, stock_counts_sql
from delivery.models import StockAlert
from shop import selectors
from shop.fulfilment import UNLIMITED_STOCK
from shop.models import ExceptionReason, Order, OrderStatus
from tests.support.factories import OrderFactory, ProductFactory, stock_product
from tests.support.platforms import sandbox_notification
from tests.support.storefront import checkout, post_notification, start_sandbox_payment

pytestmark = pytest.mark.django_db


def _expire(product, count: int) -> None:
    ids = list(
        CardKey.objects.filter(product=product, status=CardKeyStatus.AVAILABLE).values_list("pk", flat=True)[:count]
    )
    CardKey.objects.filter(pk__in=ids).update(expires_at=timezone.now() - timedelta(minutes=1))


def test_stock_counts_are_exact_below_the_limit_and_capped_at_it():
    few, many, shared, uncapped, empty = (ProductFactory() for _ in range(5))
    stock_product(few, 3)
    stock_product(many, 12)
    cardkeys_import_text(product=shared, text="SHARED-CODE-1", max_uses=5)
    CardKey.objects.filter(product=shared).update(uses=2)
    cardkeys_import_text(product=uncapped, text="GENERIC-CODE-1", max_uses=None)

    counts = stock_counts(product_ids=[few.pk, many.pk, shared.pk, uncapped.pk, empty.pk], up_to=10)

    assert counts == {few.pk: 3, many.pk: 10, shared.pk: 3, uncapped.pk: 10, empty.pk: 0}
    assert available_counts(product_ids=[many.pk, uncapped.pk]) == {many.pk: 12, uncapped.pk: UNLIMITED_STOCK}


def test_expired_and_sold_keys_are_not_stock_anywhere(client):
    product = ProductFactory(name="Steam ¥50", max_quantity=5)
    stock_product(product, 5)
    _expire(product, 3)

    assert stock_counts(product_ids=[product.pk], up_to=100) == {product.pk: 2}
    assert available_counts(product_ids=[product.pk]) == {product.pk: 2}  # the admin's figure
    assert product_has_stock(product_id=product.pk, quantity=2)
    assert not product_has_stock(product_id=product.pk, quantity=3)
    english = {"HTTP_ACCEPT_LANGUAGE": "en"}
    assert "2 in stock" in client.get(reverse("shop:catalog"), **english).content.decode()
    assert "2 in stock" in client.get(reverse("shop:product", args=[product.slug]), **english).content.decode()
    response = client.post(
        reverse("shop:product", args=[product.slug]),
        {"quantity": 3, "contact": "buyer@example.com", "query_password": "secret-pw"},
        **english,
    )
    assert response.status_code == 200 and "Not enough stock" in response.content.decode()


def test_a_product_whose_only_key_expired_is_sold_out_everywhere(client, on_commit):
    product = ProductFactory(name="Steam ¥100", low_stock_threshold=0)
    stock_product(product, 1)
    order = checkout(client, product)  # bought while the key was still good
    payment = start_sandbox_payment(client, order)
    _expire(product, 1)
    english = {"HTTP_ACCEPT_LANGUAGE": "en"}

    assert "Sold out" in client.get(reverse("shop:catalog"), **english).content.decode()
    assert "Sold out" in client.get(reverse("shop:product", args=[product.slug]), **english).content.decode()
    refused = client.post(
        reverse("shop:product", args=[product.slug]),
        {"quantity": 1, "contact": "b@example.com", "query_password": "pw-123456"},
        **english,
    )
    assert refused.status_code == 200 and "This product is sold out for now" in refused.content.decode()
    assert Order.objects.filter(product=product).count() == 1  # nothing was created
    with on_commit():
        post_notification(client, sandbox_notification(out_trade_no=payment.out_trade_no, amount=str(order.total)))

    order.refresh_from_db()
    assert (order.status, order.exception_reason) == (OrderStatus.EXCEPTION, ExceptionReason.OUT_OF_STOCK)
    assert not CardKey.objects.filter(order=order).exists()
    alert = StockAlert.objects.get(product=product, resolved_at__isnull=True)  # the low-stock probe agrees
    assert alert.available == 0


def test_catalog_says_in_stock_beyond_what_it_counts(client, monkeypatch):
    monkeypatch.setattr(selectors, "STOCK_SHOWN_UP_TO", 5)
    plenty = ProductFactory(name="Plenty", max_quantity=2)
    stock_product(plenty, 7)
    few = ProductFactory(name="Few", category=plenty.category, max_quantity=2)
    stock_product(few, 4)
    sold_out = ProductFactory(name="Gone", category=plenty.category)

    products = {p.pk: p for c in selectors.catalog_categories() for p in c.active_products}

    assert (products[plenty.pk].stock, products[plenty.pk].stock_unlimited) == (5, True)
    assert (products[few.pk].stock, products[few.pk].stock_unlimited) == (4, False)
    assert (products[sold_out.pk].stock, products[sold_out.pk].stock_unlimited) == (0, False)
    page = client.get(reverse("shop:catalog"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "In stock" in page and "4 in stock" in page and "Sold out" in page


def test_product_page_counts_at_least_up_to_its_largest_quantity(client, monkeypatch):
    monkeypatch.setattr(selectors, "STOCK_SHOWN_UP_TO", 5)
    product = ProductFactory(max_quantity=10)
    stock_product(product, 8)

    shown = selectors.product_for_sale(slug=product.slug)

    assert (shown.stock, shown.stock_unlimited) == (8, False)  # exact: an order of 9 or 10 would not fit
    assert "8" in client.get(reverse("shop:product", args=[product.slug]), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    order = checkout(client, product, quantity=8)
    assert order.quantity == 8


def test_last_key_sold_shows_sold_out(client):
    product = ProductFactory()
    stock_product(product, 1)
    CardKey.objects.filter(product=product).update(status=CardKeyStatus.VOID)

    page = client.get(reverse("shop:product", args=[product.slug]), HTTP_ACCEPT_LANGUAGE="en").content.decode()

    assert "Sold out" in page


def _generic_plan(sql: str, params: list | dict) -> str:
    """EXPLAIN of ``sql`` prepared as kameng.sql prepares it, under its generic plan (the one a
    prepared statement may switch to after five runs), with sequential scans ruled out and the
    other indexes on product_id dropped: shows whether that plan can use the partial index over
    available keys at all. (With the status
    as a parameter it could not: nothing proves ``status = $n`` matches the index's condition.)"""
    from kameng.sql import _numbered

    body, order = _numbered(sql, named=isinstance(params, dict))
    values = [params[k] for k in order] if order is not None else list(params)
    with connection.cursor() as cursor:
        # Only the partial index is left to serve a product's keys (rolled back with the test's
        # transaction): the plan uses it if PostgreSQL can prove the statement's condition
        # implies the index's, and otherwise falls back to the table.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # ALTER TABLE refuses pending FK checks
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = %s AND indexdef LIKE %s AND indexname <> %s",
            [CardKey._meta.db_table, "%(product_id%", "cardkey_available_idx"],
        )
        for (index,) in cursor.fetchall():
            cursor.execute(f'ALTER TABLE {CardKey._meta.db_table} DROP CONSTRAINT IF EXISTS "{index}"')
            cursor.execute(f'DROP INDEX IF EXISTS "{index}"')
        cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        cursor.execute("SET LOCAL enable_seqscan = off")
        try:
            cursor.execute(f"PREPARE stock_plan AS {body}")
            cursor.execute(f"EXPLAIN EXECUTE stock_plan ({', '.join(['%s'] * len(values))})", values)
            return "\n".join(row[0] for row in cursor.fetchall())
        finally:
            cursor.execute("DEALLOCATE stock_plan")


@pytest.mark.postgres
def test_stock_counts_probes_and_the_sale_can_use_the_available_index_under_a_generic_plan():
    from cardpool.selectors import SELLABLE_UNITS_SQL
    from cardpool.services import _SELL_SQL

    products = [ProductFactory() for _ in range(3)]
    for product, size in zip(products, (150, 30, 0), strict=True):
        stock_product(product, size)
    now = timezone.now()
    counts_sql = stock_counts_sql(ids="= ANY(%(ids)s)", up_to=100)
    table = CardKey._meta.db_table
    order = OrderFactory(product=products[0])

    plans = {
        "stock_counts": _generic_plan(counts_sql, {"now": now, "ids": [p.pk for p in products]}),
        "product_has_stock": _generic_plan(SELLABLE_UNITS_SQL.format(table=table), [5, products[0].pk, now, 5]),
        "sale": _generic_plan(
            _SELL_SQL.format(table=table, lock="FOR UPDATE SKIP LOCKED"),
            {"order_id": order.pk, "now": now, "product_id": products[0].pk, "wanted": 1},
        ),
    }

    for name, plan in plans.items():
        assert "cardkey_available_idx" in plan, (name, plan)
        assert "JIT" not in plan, (name, plan)
    assert stock_counts(product_ids=[p.pk for p in products], up_to=100) == {
        products[0].pk: 100,
        products[1].pk: 30,
        products[2].pk: 0,
    }
