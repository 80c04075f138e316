"""Order lifecycle rules: the transition table, expiry, checkout limits."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from payments.tasks import orders_expire
from shop.models import Order, OrderStatus
from shop.services import (
    ORDER_TRANSITIONS,
    InvalidTransition,
    OrderRejected,
    order_create,
    order_lookup,
    order_transition,
)
from tests.support.factories import OrderFactory, ProductFactory, stock_product

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "start, to",
    [(start, to) for start in OrderStatus.values for to in OrderStatus.values if to not in ORDER_TRANSITIONS[start]],
)
def test_order_transition_outside_the_table_raises(start, to):
    order = OrderFactory(status=start)

    with pytest.raises(InvalidTransition):
        order_transition(order=order, to=to, event_type="test")

    order.refresh_from_db()
    assert order.status == start and not order.events.exists()


def test_order_transition_writes_an_event():
    order = OrderFactory()

    order_transition(order=order, to=OrderStatus.PAID, event_type="shop.order.paid", message="sandbox", actor="system")

    order.refresh_from_db()
    assert order.status == OrderStatus.PAID and order.paid_at is not None
    assert list(order.events.values_list("type", "message")) == [("shop.order.paid", "sandbox")]


def test_order_create_uses_the_current_price_as_decimal():
    product = ProductFactory(price=Decimal("0.10"))
    stock_product(product, 3)

    order = order_create(product=product, quantity=3, contact="a@b.cn", query_password="pw12", client_ip=None)

    assert order.total == Decimal("0.30") and isinstance(order.total, Decimal)
    assert len(order.number) == 20 and order.number.isdigit()
    assert order.expires_at - timezone.now() > timedelta(minutes=14)


def test_order_numbers_and_tokens_do_not_follow_each_other():
    product = ProductFactory()
    stock_product(product, 1)
    orders = [
        order_create(product=product, quantity=1, contact="a@b.cn", query_password="pw12", client_ip=None)
        for _ in range(5)
    ]

    tails = {int(o.number[8:]) for o in orders}
    assert len(tails) == 5 and max(tails) - min(tails) > 5
    assert len({o.access_token for o in orders}) == 5


@pytest.mark.parametrize(
    "quantity, active, message",
    [(0, True, "quantity"), (6, True, "quantity"), (4, True, "stock"), (1, False, "inactive")],
    ids=["below-min", "above-max", "above-stock", "inactive"],
)
def test_order_create_refuses(quantity, active, message):
    product = ProductFactory(is_active=active, min_quantity=1, max_quantity=5)
    stock_product(product, 3)

    with pytest.raises(OrderRejected) as caught:
        order_create(product=product, quantity=quantity, contact="a@b.cn", query_password="pw12", client_ip=None)

    assert caught.value.code == message
    assert not Order.objects.exists()


def test_orders_expire_after_their_time_and_not_before():
    due = OrderFactory(expires_at=timezone.now() - timedelta(seconds=1))
    fresh = OrderFactory()
    paid = OrderFactory(status=OrderStatus.PAID, expires_at=timezone.now() - timedelta(minutes=5))

    assert orders_expire() == 1

    due.refresh_from_db(), fresh.refresh_from_db(), paid.refresh_from_db()
    assert (due.status, fresh.status, paid.status) == (OrderStatus.EXPIRED, OrderStatus.PENDING, OrderStatus.PAID)
    assert due.events.get().type == "shop.order.expired"
    assert orders_expire() == 0


def test_order_lookup_needs_both_number_and_password():
    product = ProductFactory()
    stock_product(product, 1)
    order = order_create(product=product, quantity=1, contact="a@b.cn", query_password="right", client_ip=None)

    assert order_lookup(number=order.number, password="right") == order
    assert order_lookup(number=order.number, password="wrong") is None
    assert order_lookup(number="00000000000000000000", password="right") is None
