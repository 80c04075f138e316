"""Delivery rules: automatic delivery off, and orders held for review by total or by a busy contact or IP."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from cardpool.models import CardKey
from shop.models import ExceptionReason, Order, OrderStatus
from tests.support.factories import ProductFactory, stock_product
from tests.support.operators import retry_from_the_queue
from tests.support.storefront import checkout, pay

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


def test_the_hourly_limit_counts_a_contacts_and_an_ips_other_orders_paid_in_the_last_hour(client, on_commit, rules):
    rules(review_orders_per_hour="2")
    product = ProductFactory(price=Decimal("10.00"))
    stock_product(product, 10)
    checkout(client, product, contact="a@example.com")  # never paid: not counted
    earlier = [pay(client, on_commit, product, contact="a@example.com") for _ in range(2)]
    Order.objects.filter(pk__in=[o.pk for o in earlier]).update(paid_at=timezone.now() - timedelta(minutes=61))

    assert (
        pay(client, on_commit, product, contact="a@example.com").status == OrderStatus.DELIVERED
    )  # the hour before: not counted
    same_ip = Client(REMOTE_ADDR="10.0.0.7")
    assert pay(same_ip, on_commit, product, contact="b@example.com").status == OrderStatus.DELIVERED
    assert pay(same_ip, on_commit, product, contact="c@example.com").status == OrderStatus.DELIVERED
    third = pay(same_ip, on_commit, product, contact="d@example.com")

    assert third.exception_reason == ExceptionReason.HELD_FOR_REVIEW and "10.0.0.7" in third.exception_note
    assert pay(client, on_commit, product, contact="e@example.com").status == OrderStatus.DELIVERED


def test_a_contact_far_over_the_hourly_limit_is_held(client, on_commit, rules):
    rules(review_orders_per_hour="1")
    product = ProductFactory(price=Decimal("10.00"))
    stock_product(product, 5)
    for _ in range(3):
        pay(Client(REMOTE_ADDR="10.0.1.1"), on_commit, product, contact="busy@example.com")

    order = pay(Client(REMOTE_ADDR="10.0.1.2"), on_commit, product, contact="busy@example.com")

    assert order.exception_reason == ExceptionReason.HELD_FOR_REVIEW and "busy@example.com" in order.exception_note


@pytest.mark.postgres
def test_the_hourly_limits_count_reads_the_contact_and_ip_indexes_under_a_generic_plan():
    """The count is a prepared statement (kameng.sql): after five runs PostgreSQL may plan it
    once for any parameters. That plan must still read (contact, paid_at) and the partial
    (client_ip, paid_at) index over paid orders, whose condition it has to prove from
    ``client_ip = $n AND paid_at >= $m``; with sequential scans ruled out it would otherwise
    fall back to another index read end to end."""
    from kameng.sql import _numbered
    from shop.selectors import orders_paid_since_sql

    body, names = _numbered(orders_paid_since_sql(up_to=5), named=True)
    params = {"contact": "a@example.com", "client_ip": "10.0.0.7", "since": timezone.now(), "exclude": 1}
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"PREPARE paid_since_plan AS {body}")
        try:
            cursor.execute(
                f"EXPLAIN EXECUTE paid_since_plan ({', '.join(['%s'] * len(names))})", [params[n] for n in names]
            )
            plan = "\n".join(row[0] for row in cursor.fetchall())
        finally:
            cursor.execute("DEALLOCATE paid_since_plan")

    assert "order_contact_paid_at" in plan and "order_paid_client_ip_paid_at" in plan, plan
