"""Throttling of checkout and payment start, per IP, per contact and per order, behind a proxy too."""

from __future__ import annotations

import pytest
from django.urls import reverse

from shop.models import Order
from tests.support.factories import ProductFactory, stock_product
from tests.support.storefront import checkout

pytestmark = pytest.mark.django_db


def _checkout_post(client, product, contact, **extra):
    return client.post(
        reverse("shop:product", args=[product.slug]),
        {"quantity": 1, "contact": contact, "query_password": "pw123"},
        HTTP_ACCEPT_LANGUAGE="en",
        **extra,
    )


def test_checkout_is_throttled_per_ip_with_a_friendly_429(client, settings):
    settings.ORDER_CREATE_RATE_IP = "3/m"
    product = ProductFactory()
    stock_product(product, 1)
    for number in range(3):
        assert _checkout_post(client, product, f"b{number}@example.com").status_code == 302

    refused = _checkout_post(client, product, "b9@example.com")

    assert refused.status_code == 429
    assert "Too many orders in a short time" in refused.content.decode()
    assert Order.objects.count() == 3
    assert _checkout_post(client, product, "b9@example.com", REMOTE_ADDR="10.1.1.1").status_code == 302


def test_checkout_is_throttled_per_contact_across_networks(client, settings):
    settings.ORDER_CREATE_RATE_CONTACT = "2/m"
    product = ProductFactory()
    stock_product(product, 1)
    for number in range(2):
        assert _checkout_post(client, product, "buyer@example.com", REMOTE_ADDR=f"10.0.0.{number}").status_code == 302

    refused = _checkout_post(client, product, "BUYER@example.com", REMOTE_ADDR="10.0.0.9")

    assert refused.status_code == 429 and Order.objects.count() == 2


def test_payment_start_is_throttled_per_order(client, settings):
    settings.PAYMENT_START_RATE_ORDER = "3/m"
    product = ProductFactory()
    stock_product(product, 1)
    order = checkout(client, product)
    pay_url = reverse("shop:order-pay", args=[order.access_token])
    for number in range(3):
        assert client.post(pay_url, {"gateway": "sandbox"}, REMOTE_ADDR=f"10.0.0.{number}").status_code == 302

    refused = client.post(pay_url, {"gateway": "sandbox"}, REMOTE_ADDR="10.0.0.9", HTTP_ACCEPT_LANGUAGE="en")

    assert refused.status_code == 429
    assert "Too many payment attempts in a short time" in refused.content.decode()
    assert order.payments.count() == 1  # the three allowed clicks shared one payment


def test_payment_start_is_throttled_per_ip(client, settings):
    settings.PAYMENT_START_RATE_IP = "2/m"
    product = ProductFactory()
    stock_product(product, 3)
    orders = [checkout(client, product, contact=f"b{n}@example.com") for n in range(3)]
    for order in orders[:2]:
        assert (
            client.post(reverse("shop:order-pay", args=[order.access_token]), {"gateway": "sandbox"}).status_code == 302
        )

    refused = client.post(reverse("shop:order-pay", args=[orders[2].access_token]), {"gateway": "sandbox"})

    assert refused.status_code == 429 and not orders[2].payments.exists()


def test_behind_a_trusted_proxy_orders_record_and_limits_key_on_the_forwarded_client(client, settings):
    from kameng.client_ip import trusted_proxies_parse

    settings.TRUSTED_PROXIES = trusted_proxies_parse(["10.5.0.0/16"])
    settings.ORDER_CREATE_RATE_IP = "2/m"
    product = ProductFactory()
    stock_product(product, 1)
    proxy = {"REMOTE_ADDR": "10.5.0.2"}

    for number in range(2):
        assert (
            _checkout_post(
                client, product, f"a{number}@example.com", HTTP_X_FORWARDED_FOR="198.51.100.1", **proxy
            ).status_code
            == 302
        )
    assert (
        _checkout_post(client, product, "a9@example.com", HTTP_X_FORWARDED_FOR="198.51.100.1", **proxy).status_code
        == 429
    )
    assert (
        _checkout_post(client, product, "c@example.com", HTTP_X_FORWARDED_FOR="198.51.100.2", **proxy).status_code
        == 302
    )
    # A buyer reaching gunicorn directly cannot pick another address with the header.
    assert (
        _checkout_post(
            client, product, "d@example.com", HTTP_X_FORWARDED_FOR="198.51.100.9", REMOTE_ADDR="203.0.113.5"
        ).status_code
        == 302
    )

    assert sorted(Order.objects.values_list("client_ip", flat=True)) == [
        "198.51.100.1",
        "198.51.100.1",
        "198.51.100.2",
        "203.0.113.5",
    ]
