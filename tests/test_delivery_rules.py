"""Delivery rules: automatic delivery off, and orders held for review by total or by a busy contact."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from cardpool.models import CardKey
from shop.models import ExceptionReason, OrderStatus
from tests.support.factories import ProductFactory, stock_product
from tests.support.operators import retry_from_the_queue
from tests.support.storefront import pay

pytestmark = pytest.mark.django_db


@pytest.fixture
def rules(admin_client):
    from delivery.models import DeliveryRules

    def set_rules(**values):
        admin_client.post(
            reverse("admin:delivery_deliveryrules_change", args=[1]),
            {"auto_delivery": "on", "review_amount": "", "review_orders_per_hour": "", **values},
        )
        return DeliveryRules.objects.get(pk=1)

    admin_client.get(reverse("admin:delivery_deliveryrules_changelist"))
    return set_rules


def test_switching_automatic_delivery_off_holds_paid_orders_for_review(admin_client, client, on_commit, rules):
    rules(auto_delivery="")
    product = ProductFactory()
    stock_product(product, 1)

    order = pay(client, on_commit, product)

    assert order.status == OrderStatus.EXCEPTION and order.exception_reason == ExceptionReason.HELD_FOR_REVIEW
    assert not CardKey.objects.filter(order=order).exists()
    retry_from_the_queue(admin_client, on_commit, order)  # staff approve it
    assert order.status == OrderStatus.DELIVERED


def test_orders_from_a_total_or_a_busy_contact_are_held(client, on_commit, rules):
    rules(review_amount="50.00", review_orders_per_hour="2")
    cheap, dear = ProductFactory(price=Decimal("10.00")), ProductFactory(price=Decimal("60.00"))
    stock_product(cheap, 5)
    stock_product(dear, 1)

    assert pay(Client(REMOTE_ADDR="10.0.0.9"), on_commit, dear).exception_reason == ExceptionReason.HELD_FOR_REVIEW
    assert pay(client, on_commit, cheap, contact="a@example.com").status == OrderStatus.DELIVERED
    assert pay(client, on_commit, cheap, contact="a@example.com").status == OrderStatus.DELIVERED
    third = pay(client, on_commit, cheap, contact="a@example.com")
    assert third.exception_reason == ExceptionReason.HELD_FOR_REVIEW and "a@example.com" in third.exception_note
