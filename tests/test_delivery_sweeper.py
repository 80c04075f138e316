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
from tests.support.factories import ProductFactory, stock_product
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
