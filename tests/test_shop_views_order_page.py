"""The order page and the pay page: the secret link, status polling, gateways, what is logged."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from kameng.log_redaction import SecretPathFilter
from tests.support.factories import OrderFactory, ProductFactory, stock_product
from tests.support.platforms import sandbox_notification
from tests.support.storefront import checkout, post_notification, sandbox_pay_page, start_sandbox_payment

pytestmark = pytest.mark.django_db


def test_order_page_needs_the_secret_token_not_the_number(client):
    product = ProductFactory()
    stock_product(product, 1)
    order = checkout(client, product)

    assert Client().get(f"/order/{order.number}/").status_code == 404
    assert Client().get(reverse("shop:order", args=[order.access_token])).status_code == 200


def test_order_status_is_polled_without_keys(client, on_commit):
    product = ProductFactory()
    keys = stock_product(product, 1)
    order = checkout(client, product)
    payment = start_sandbox_payment(client, order)
    status_url = reverse("shop:order-status", args=[order.access_token])
    assert client.get(status_url).json()["status"] == "pending"

    with on_commit():
        post_notification(client, sandbox_notification(out_trade_no=payment.out_trade_no, amount=order.total))

    body = client.get(status_url).json()
    assert body["status"] == "delivered" and body["has_keys"] is True
    assert keys[0] not in str(body)


def test_sandbox_pay_page_posts_a_signed_notification_that_delivers(client, on_commit):
    product = ProductFactory()
    keys = stock_product(product, 1)
    order = checkout(client, product)
    page = sandbox_pay_page(client, order)
    fields = {name: page.context["fields"][name] for name in page.context["fields"]}

    with on_commit():
        response = post_notification(client, fields)

    assert response.content == b"success"
    assert keys[0] in client.get(reverse("shop:order", args=[order.access_token])).content.decode()


def test_pay_page_lists_no_gateway_when_none_is_enabled(client, settings):
    product = ProductFactory()
    stock_product(product, 1)
    order = checkout(client, product)
    settings.PAYMENTS_SANDBOX_ENABLED = False

    page = client.get(reverse("shop:order-pay", args=[order.access_token]), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "No payment method is configured" in page
    response = client.post(reverse("shop:order-pay", args=[order.access_token]), {"gateway": "sandbox"})
    assert response.status_code == 200
    assert not order.payments.exists()


def test_order_page_keeps_its_token_on_the_site_but_lets_its_forms_send_their_origin(client):
    order = OrderFactory()

    response = client.get(reverse("shop:order", args=[order.access_token]))

    # same-origin: no Referer (with the token in its URL) to other sites; "no-referrer" made
    # Chromium post the page's forms with "Origin: null", which CSRF refuses.
    assert response["Referrer-Policy"] == "same-origin"
    assert "no-store" in response["Cache-Control"]


@pytest.mark.parametrize(
    "language, sandbox_name",
    [("zh-hans", "沙箱（测试支付）"), ("zh-hant", "沙箱（測試付款）"), ("en", "Sandbox (test payments)")],
)
def test_pay_page_names_the_sandbox_in_the_buyers_language(client, language, sandbox_name):
    product = ProductFactory()
    stock_product(product, 1)
    order = checkout(client, product)

    page = client.get(
        reverse("shop:order-pay", args=[order.access_token]), HTTP_ACCEPT_LANGUAGE=language
    ).content.decode()

    assert sandbox_name in page


def test_refused_requests_on_an_order_page_do_not_log_its_token(client, caplog):
    product = ProductFactory()
    stock_product(product, 1)
    order = checkout(client, product)
    strict = Client(enforce_csrf_checks=True)
    # The shop's log handlers carry this filter (settings.LOGGING); pytest's capture handler
    # gets it too, so it shows what the shop's own handlers write.
    caplog.handler.addFilter(SecretPathFilter())

    with caplog.at_level("INFO"):
        refused_csrf = strict.post(reverse("shop:order-resend", args=[order.access_token]))
        unknown_payment = client.get(reverse("shop:order-pay-qr", args=[order.access_token, "NO-SUCH-TRADE"]))

    assert (refused_csrf.status_code, unknown_payment.status_code) == (403, 404)
    assert "CSRF" in caplog.text and "Not Found" in caplog.text
    assert order.access_token not in caplog.text
