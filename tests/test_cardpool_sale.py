"""Selling from the pool: which key goes first, voided batches, and the key table's index and vacuum settings."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from cardpool.crypto import secret_blind_index
from cardpool.importing import cardkeys_import_text
from cardpool.models import CardKey, CardKeyStatus, ImportBatch
from cardpool.services import _SELL_SQL
from tests.support.factories import ProductFactory, stock_product
from tests.support.platforms import sandbox_notification
from tests.support.storefront import checkout, post_notification, start_sandbox_payment

pytestmark = pytest.mark.django_db


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_reservation_query_uses_the_partial_index_on_postgresql():
    from tests.support.factories import OrderFactory

    product = ProductFactory()
    stock_product(ProductFactory(), 2000)
    stock_product(product, 3000)
    # Most of the pool has been sold, as in a shop that has run for a while.
    sold_to = OrderFactory(product=product, status="delivered")
    cutoff = CardKey.objects.filter(product=product).order_by("id").values_list("id", flat=True)[2990]
    CardKey.objects.filter(product=product, id__lt=cutoff).update(status=CardKeyStatus.SOLD, order=sold_to)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE cardpool_cardkey")
    # The statement the delivery service sends (EXPLAIN without ANALYZE does not run it).
    sql = _SELL_SQL.format(table=CardKey._meta.db_table, lock="FOR UPDATE SKIP LOCKED")
    now = timezone.now()
    params = {"order_id": sold_to.pk, "now": now, "product_id": product.pk, "wanted": 1}

    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())

    assert "Index Scan using cardkey_available_idx" in plan, plan
    assert "Sort" not in plan, plan


def test_voiding_a_batch_voids_its_unsold_keys_only(admin_client, client, on_commit):
    product = ProductFactory()
    first = cardkeys_import_text(product=product, text="A-1\nA-2\nA-3\n")
    second = cardkeys_import_text(product=product, text="B-1\n")
    order = checkout(client, product)
    payment = start_sandbox_payment(client, order)
    with on_commit():
        post_notification(client, sandbox_notification(out_trade_no=payment.out_trade_no, amount=order.total))

    admin_client.post(
        reverse("admin:cardpool_importbatch_changelist"),
        {"action": "void_unsold", "_selected_action": [first.batch_id]},
    )

    statuses = sorted(CardKey.objects.filter(batch_id=first.batch_id).values_list("status", flat=True))
    assert statuses == ["sold", "void", "void"]
    assert CardKey.objects.get(batch_id=second.batch_id).status == "available"
    assert "voided 2 unsold keys by admin" in ImportBatch.objects.get(pk=first.batch_id).note


def test_allocation_takes_the_soonest_expiring_key_and_never_an_expired_one(client, on_commit, admin_client):
    product = ProductFactory()
    cardkeys_import_text(product=product, text="EXPIRED\nLATER\nSOON\nNEVER\n")
    now = timezone.now()
    for secret, days in (("EXPIRED", -1), ("LATER", 60), ("SOON", 3)):
        CardKey.objects.filter(blind_index=secret_blind_index(secret=secret, product_id=product.pk)).update(
            expires_at=now + timedelta(days=days)
        )

    order = checkout(client, product)
    payment = start_sandbox_payment(client, order)
    with on_commit():
        post_notification(client, sandbox_notification(out_trade_no=payment.out_trade_no, amount=order.total))

    page = client.get(reverse("shop:order", args=[order.access_token])).content.decode()
    assert ">SOON<" in page and "EXPIRED" not in page
    listing = admin_client.get(reverse("admin:cardpool_cardkey_changelist") + "?expiring=expired")
    assert [k.mask for k in listing.context["cl"].result_list] == ["EX***ED"]
    within = admin_client.get(reverse("admin:cardpool_cardkey_changelist") + "?expiring=90")
    assert [k.mask for k in within.context["cl"].result_list] == ["*****"]  # LATER; SOON was sold


@pytest.mark.postgres
def test_key_table_has_its_own_autovacuum_settings():
    with connection.cursor() as cursor:
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = 'cardpool_cardkey'")
        options = cursor.fetchone()[0]

    assert "autovacuum_vacuum_scale_factor=0.01" in options and "autovacuum_analyze_scale_factor=0.02" in options
