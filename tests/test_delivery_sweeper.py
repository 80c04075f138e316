"""The delivery sweeper: it re-drives work the broker lost or a dead worker left, and waits out delays."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from cardpool.models import CardKey
from delivery.models import DeliveryMessage, MessageState
from delivery.sweeper import delivery_sweep
from shop.models import Order, OrderStatus
from tests.support.factories import OrderFactory, ProductFactory, stock_product
from tests.support.platforms import sandbox_notification
from tests.support.storefront import checkout, order_page, pay, post_notification, start_sandbox_payment

pytestmark = pytest.mark.django_db


def test_sweeper_redrives_a_paid_order_whose_task_was_lost(client, settings):
    product = ProductFactory()
    keys = stock_product(product, 1)
    order = checkout(client, product)
    payment = start_sandbox_payment(client, order)
    # No on-commit execution: the delivery task is never sent, as if the broker lost it.
    post_notification(client, sandbox_notification(out_trade_no=payment.out_trade_no, amount=order.total))
    order.refresh_from_db()
    assert order.status == OrderStatus.PAID
    assert delivery_sweep().orders == 0  # too young: the task may still be on its way
    Order.objects.filter(pk=order.pk).update(paid_at=timezone.now() - timedelta(seconds=61))

    report = delivery_sweep()

    assert report.orders == 1
    order.refresh_from_db()
    assert order.status == OrderStatus.DELIVERED and keys[0] in order_page(client, order)


def test_sweeper_gives_back_a_send_left_hanging_by_a_dead_worker(client, on_commit):
    product = ProductFactory()
    stock_product(product, 1)
    order = pay(client, on_commit, product)
    mail.outbox.clear()
    long_ago = timezone.now() - timedelta(minutes=5)
    DeliveryMessage.objects.filter(order=order).update(state=MessageState.SENDING, updated_at=long_ago, sent_at=None)

    with on_commit():
        delivery_sweep()

    assert DeliveryMessage.objects.get(order=order).state == MessageState.SENT
    assert len(mail.outbox) == 1


def test_delayed_delivery_waits_for_the_product_delay(client, on_commit):
    product = ProductFactory(delivery_delay_minutes=30)
    stock_product(product, 1)

    order = pay(client, on_commit, product)

    assert order.status == OrderStatus.PAID and not CardKey.objects.filter(order=order).exists()
    Order.objects.filter(pk=order.pk).update(paid_at=timezone.now() - timedelta(minutes=5))
    assert delivery_sweep().orders == 0  # still waiting: the sweeper leaves it alone
    Order.objects.filter(pk=order.pk).update(paid_at=timezone.now() - timedelta(minutes=31))
    with on_commit():
        delivery_sweep()
    order.refresh_from_db()
    assert order.status == OrderStatus.DELIVERED


def test_sweeper_finds_a_due_order_behind_thousands_of_newer_ones_waiting_out_a_longer_delay(client, on_commit):
    # Delays beyond DELIVERY_MAX_COUNTDOWN_SECONDS: no delayed task carries them, only the sweeper.
    slow, quick = ProductFactory(delivery_delay_minutes=90), ProductFactory(delivery_delay_minutes=15)
    stock_product(quick, 1)
    order = pay(client, on_commit, quick)
    Order.objects.filter(pk=order.pk).update(paid_at=timezone.now() - timedelta(minutes=20))
    paid = timezone.now() - timedelta(minutes=5)
    Order.objects.bulk_create(
        [
            OrderFactory.build(product=slow, query_password_hash="-", status=OrderStatus.PAID, paid_at=paid)
            for _ in range(5001)
        ],
        batch_size=1000,
    )  # a flash sale of the slow product since, still waiting

    with on_commit():
        report = delivery_sweep()

    assert report.orders == 1
    order.refresh_from_db()
    assert order.status == OrderStatus.DELIVERED


def test_paid_orders_due_come_oldest_payment_first_across_product_delays():
    from shop.selectors import orders_paid_due_ids

    undelayed, delayed = ProductFactory(), ProductFactory(delivery_delay_minutes=10)
    now = timezone.now()
    minutes_ago = {
        "due 20": (delayed, 20),
        "due 12": (undelayed, 12),
        "waiting 5": (delayed, 5),
        "due 3": (undelayed, 3),
    }
    ids = {
        name: OrderFactory(product=product, status=OrderStatus.PAID, paid_at=now - timedelta(minutes=age)).pk
        for name, (product, age) in minutes_ago.items()
    }

    assert orders_paid_due_ids(cutoff=now - timedelta(minutes=1)) == [ids["due 20"], ids["due 12"], ids["due 3"]]
    assert orders_paid_due_ids(cutoff=now - timedelta(minutes=1), limit=2) == [ids["due 20"], ids["due 12"]]
