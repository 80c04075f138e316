"""Low-stock alerts (one open alert per product, raised again only after a restock above the
threshold resolved it) and the staff emails about stock and failed deliveries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import connection
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation

from cardpool.models import CardKey, CardKeyStatus
from cardpool.selectors import available_counts, product_has_stock
from delivery import tasks
from delivery.models import StockAlert
from shop.models import Order

_STOCK_ALERT_INSERT_SQL = """
    INSERT INTO {table} (product_id, available, threshold, created_at)
    VALUES (%s, %s, %s, %s)
    ON CONFLICT DO NOTHING
    RETURNING id
"""


def stock_alert_check(*, product_id: int, threshold: int) -> None:
    """Raise one StockAlert when available stock is at or below the product's threshold, and
    email ALERT_EMAILS after commit. It is raised again only after a restock above the
    threshold resolved it. The partial unique index (one open alert per product) makes
    concurrent sales raise it once."""
    if product_has_stock(product_id=product_id, quantity=threshold + 1):
        return
    available = available_counts(product_ids=[product_id]).get(product_id, 0)
    with connection.cursor() as cursor:
        cursor.execute(
            _STOCK_ALERT_INSERT_SQL.format(table=StockAlert._meta.db_table),
            [product_id, available, threshold, connection.ops.adapt_datetimefield_value(timezone.now())],
        )
        row = cursor.fetchone()
    if row is not None and settings.ALERT_EMAILS:
        tasks.stock_alert_email.delay_on_commit(row[0])


def staff_alert_email(*, order_id: int) -> None:
    """Tell ALERT_EMAILS that an order's delivery failed for good and waits in the exception queue."""
    order = Order.objects.select_related("product").get(pk=order_id)
    context = {
        "order": order,
        "admin_url": settings.SITE_URL + reverse("admin:shop_exceptionorder_change", args=[order.pk]),
    }
    with translation.override(settings.LANGUAGE_CODE):
        subject = " ".join(render_to_string("delivery/email/staff_alert_subject.txt", context).split())
        body = render_to_string("delivery/email/staff_alert_body.txt", context)
    EmailMultiAlternatives(subject=subject, body=body, to=settings.ALERT_EMAILS).send()


def stock_alert_email(*, alert_id: int) -> None:
    """Email a low-stock alert, with days of cover at the last 7 days' sales rate, to ALERT_EMAILS."""
    alert = StockAlert.objects.select_related("product").get(pk=alert_id)
    context = {"alert": alert, "cover": stock_cover(product_id=alert.product_id, available=alert.available)}
    with translation.override(settings.LANGUAGE_CODE):
        subject = " ".join(render_to_string("delivery/email/stock_alert_subject.txt", context).split())
        body = render_to_string("delivery/email/stock_alert_body.txt", context)
    EmailMultiAlternatives(subject=subject, body=body, to=settings.ALERT_EMAILS).send()


@dataclass(frozen=True)
class StockCover:
    sold_last_7_days: int
    days: Decimal | None  # None: nothing sold in 7 days


def stock_cover(*, product_id: int, available: int) -> StockCover:
    """How long ``available`` keys last at the last 7 days' sales rate."""
    sold = CardKey.objects.filter(
        product_id=product_id, status=CardKeyStatus.SOLD, sold_at__gte=timezone.now() - timedelta(days=7)
    ).count()
    if not sold:
        return StockCover(sold_last_7_days=0, days=None)
    return StockCover(sold_last_7_days=sold, days=(Decimal(available) * 7 / sold).quantize(Decimal("0.1")))


def stock_alerts_resolve(*, product) -> int:
    """Close a product's open alert once its stock is above the threshold again (after an import)."""
    if not product_has_stock(product_id=product.pk, quantity=product.low_stock_threshold + 1):
        return 0
    return StockAlert.objects.filter(product=product, resolved_at__isnull=True).update(resolved_at=timezone.now())
