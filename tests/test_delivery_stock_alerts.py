"""Low-stock alerts: raised once at the threshold, emailed to staff, resolved by a restock."""

from __future__ import annotations

import pytest
from django.core import mail
from django.urls import reverse

from cardpool.importing import cardkeys_import_text
from delivery.models import StockAlert
from tests.support.factories import ProductFactory, stock_product
from tests.support.storefront import pay

pytestmark = pytest.mark.django_db


def test_stock_alert_is_raised_once_when_stock_falls_to_the_threshold(admin_client, client, on_commit):
    product = ProductFactory(low_stock_threshold=2)
    stock_product(product, 5)

    pay(client, on_commit, product)  # 4 left
    assert not StockAlert.objects.exists()
    pay(client, on_commit, product, quantity=2)  # 2 left: at the threshold
    pay(client, on_commit, product)  # 1 left: still the same alert

    alert = StockAlert.objects.get()
    assert (alert.available, alert.threshold, alert.resolved_at) == (2, 2, None)
    banner = admin_client.get(reverse("admin:index"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert f"Low stock: {product.name} has 2 keys left" in banner


def test_restocking_above_the_threshold_resolves_the_alert(client, on_commit):
    product = ProductFactory(low_stock_threshold=1)
    stock_product(product, 2)
    pay(client, on_commit, product)
    assert StockAlert.objects.filter(resolved_at__isnull=True).count() == 1

    cardkeys_import_text(product=product, text="NEW-1\nNEW-2\n")

    assert StockAlert.objects.get().resolved_at is not None
    assert client.get("/").status_code == 200


def test_low_stock_alert_emails_once_and_again_only_after_a_restock(client, on_commit, settings):
    settings.ALERT_EMAILS = ["ops@example.com"]
    product = ProductFactory(low_stock_threshold=1, name="Steam 50")
    stock_product(product, 3)

    pay(client, on_commit, product)  # 2 left
    pay(client, on_commit, product)  # 1 left: alert
    pay(client, on_commit, product)  # 0 left: same alert
    alerts = [m for m in mail.outbox if m.to == ["ops@example.com"]]
    assert len(alerts) == 1
    # Raised by the second sale: 1 key left, 2 sold in the last 7 days → 3.5 days of cover.
    assert "Steam 50" in alerts[0].subject and "3.5" in alerts[0].body

    with on_commit():
        cardkeys_import_text(product=product, text="R1\nR2\nR3\n")  # above the threshold: resolved
    pay(client, on_commit, product)  # 2 left
    pay(client, on_commit, product)  # 1 left: a new alert

    assert len([m for m in mail.outbox if m.to == ["ops@example.com"]]) == 2
    assert StockAlert.objects.filter(resolved_at__isnull=True).count() == 1
