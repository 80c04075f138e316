"""payments.services.payment_start: one trade per order and gateway while the buyer keeps clicking."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse

from payments.models import Payment, PaymentState
from payments.registry import gateway_get
from payments.services import payment_close, payment_start
from shop.models import OrderEvent
from tests.support.factories import ProductFactory, stock_product
from tests.support.storefront import checkout

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

    response = _pay(client, order)

    reused = order.payments.exclude(out_trade_no=order.number + "DEAD").get()
    assert f"/payments/sandbox/pay/{reused.out_trade_no}/?" in response["Location"]


def test_the_redirect_kept_for_reuse_never_reaches_the_database(client):
    # Page and wap pay URLs carry the return URL, so the order page's token: a dump of the
    # payments table must not hold it.
    product = ProductFactory()
    stock_product(product, 1)
    order = checkout(client, product)

    first = _pay(client, order)

    assert order.access_token in first["Location"]
    rows = [str(value) for row in Payment.objects.filter(order=order).values_list() for value in row]
    assert not any(order.access_token in value for value in rows)
    assert _pay(client, order)["Location"] == first["Location"]


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


@pytest.mark.django_db(transaction=True)
def test_a_double_click_while_the_gateway_answers_opens_one_trade(monkeypatch):
    import threading

    from django.db import connection

    from payments.gateways.sandbox import SandboxGateway
    from shop.services import order_create

    product = ProductFactory()
    stock_product(product, 1)
    order = order_create(product=product, quantity=1, contact="a@b.cn", query_password="pw12", client_ip=None)
    first_call_started, release = threading.Event(), threading.Event()
    calls = []
    answer = SandboxGateway.create_payment

    def slow_platform(self, request):  # the platform takes its time to answer the first click
        calls.append(request.out_trade_no)
        first_call_started.set()
        assert release.wait(10)
        return answer(self, request)

    monkeypatch.setattr(SandboxGateway, "create_payment", slow_platform)
    results = []

    def click():
        try:
            results.append(payment_start(order=order, gateway=gateway_get("sandbox")))
        finally:
            connection.close()

    first = threading.Thread(target=click)
    first.start()
    assert first_call_started.wait(10)
    second = threading.Thread(target=click)
    second.start()
    release.set()
    first.join(10)
    second.join(10)

    assert len(calls) == 1 and order.payments.count() == 1
    assert [payment.pk for payment, _action in results] == [order.payments.get().pk] * 2
    assert results[0][1] == results[1][1]


def test_a_click_while_another_never_finishes_is_told_to_try_again(client, monkeypatch):
    from django.core.cache import cache

    import payments.services

    monkeypatch.setattr(payments.services, "PAYMENT_START_WAIT_SECONDS", 0.2)
    product = ProductFactory()
    stock_product(product, 1)
    order = checkout(client, product)
    cache.add(f"kameng:payment-start:{order.pk}", "another request", timeout=30)

    page = client.post(
        reverse("shop:order-pay", args=[order.access_token]),
        {"gateway": "sandbox"},
        follow=True,
        HTTP_ACCEPT_LANGUAGE="en",
    )

    assert "Your payment is being prepared" in page.content.decode()
    assert not order.payments.exists()
