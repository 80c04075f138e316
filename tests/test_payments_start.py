"""payments.services.payment_start: one trade per order and gateway while the buyer keeps clicking."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse

from payments.models import Payment, PaymentState
from payments.registry import gateway_get
from payments.services import payment_close, payment_start
from shop.models import OrderEvent
from tests.factories import ProductFactory, stock_product
from tests.storefront import checkout

pytestmark = pytest.mark.django_db


def _pay(client, order, **extra):
    return client.post(reverse("shop:order-pay", args=[order.access_token]), {"gateway": "sandbox"}, **extra)


def test_clicking_pay_again_reuses_the_open_payment(client):
    product = ProductFactory()
    stock_product(product, 1)
    order = checkout(client, product)

    first = _pay(client, order)
    again = [_pay(client, order) for _ in range(4)]

    assert order.payments.count() == 1
    assert {response["Location"] for response in again} == {first["Location"]}
    assert OrderEvent.objects.filter(order=order, type="payments.payment.started").count() == 1


def test_a_payment_older_than_the_reuse_window_is_not_reused(client, settings):
    settings.PAYMENT_REUSE_SECONDS = 60
    product = ProductFactory()
    stock_product(product, 1)
    order = checkout(client, product)
    _pay(client, order)
    Payment.objects.filter(order=order).update(created_at=order.created_at - timedelta(seconds=61))

    _pay(client, order)

    assert order.payments.count() == 2


def test_a_phone_and_a_desktop_get_their_own_payment(client):
    product = ProductFactory()
    stock_product(product, 1)
    order = checkout(client, product)

    _pay(client, order)
    _pay(client, order, HTTP_USER_AGENT="Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Mobile/15E148")

    assert sorted(order.payments.values_list("mobile", flat=True)) == [False, True]


def test_a_closed_payment_is_never_reused(client):
    product = ProductFactory()
    stock_product(product, 1)
    order = checkout(client, product)
    _pay(client, order)
    payment_close(payment_id=order.payments.get().pk)

    _pay(client, order)

    assert order.payments.filter(state=PaymentState.CREATED).count() == 1
    assert order.payments.filter(state=PaymentState.CLOSED).count() == 1


def test_an_attempt_the_gateway_never_answered_is_not_reused(client):
    product = ProductFactory()
    stock_product(product, 1)
    order = checkout(client, product)
    Payment.objects.create(order=order, gateway="sandbox", out_trade_no=order.number + "DEAD", amount=order.total)

    _pay(client, order)

    reused = order.payments.exclude(out_trade_no=order.number + "DEAD").get()
    assert reused.redirect_url.endswith(f"/payments/sandbox/pay/{reused.out_trade_no}/")


def test_payment_start_for_an_order_paid_meanwhile_is_refused(client):
    from payments.services import PaymentRefused
    from shop.models import Order

    product = ProductFactory()
    stock_product(product, 1)
    order = checkout(client, product)
    stale = Order.objects.get(pk=order.pk)
    Order.objects.filter(pk=order.pk).update(status="cancelled")

    with pytest.raises(PaymentRefused):
        payment_start(order=stale, gateway=gateway_get("sandbox"))
    assert not order.payments.exists()
