"""The buyer's "email the keys again": limited per order and per recipient, nothing before delivery."""

from __future__ import annotations

import pytest
from django.core import mail
from django.urls import reverse

from cardpool.models import CardKey
from tests.support.factories import ProductFactory, stock_product
from tests.support.storefront import checkout, pay

pytestmark = pytest.mark.django_db


def test_buyer_has_the_email_sent_again_three_times_an_hour(client, on_commit):
    product = ProductFactory()
    keys = stock_product(product, 1)
    order = pay(client, on_commit, product)
    resend_url = reverse("shop:order-resend", args=[order.access_token])
    assert (
        "Email the keys again"
        in client.get(
            reverse("shop:order", args=[order.access_token]), headers={"accept-language": "en"}
        ).content.decode()
    )

    for _ in range(3):
        with on_commit():
            page = client.post(resend_url, follow=True, headers={"accept-language": "en"}).content.decode()
        assert "on its way to buyer@example.com" in page
    with on_commit():
        page = client.post(resend_url, follow=True, headers={"accept-language": "en"}).content.decode()

    assert "sent again 3 times in the last hour" in page
    assert len(mail.outbox) == 4 and all(keys[0] in m.body for m in mail.outbox)
    assert CardKey.objects.filter(order=order).count() == 1


def test_resend_before_delivery_sends_nothing(client):
    product = ProductFactory()
    stock_product(product, 1)
    order = checkout(client, product)

    page = client.post(
        reverse("shop:order-resend", args=[order.access_token]), follow=True, headers={"accept-language": "en"}
    )

    assert "nothing to send yet" in page.content.decode()
    assert not mail.outbox


def test_resend_is_limited_per_recipient_across_their_orders(client, on_commit, settings):
    settings.DELIVERY_RESEND_PER_RECIPIENT_PER_HOUR = 2
    product = ProductFactory()
    stock_product(product, 3)
    orders = [pay(client, on_commit, product) for _ in range(3)]
    sent_before = len(mail.outbox)

    pages = []
    for order in orders:
        with on_commit():
            pages.append(
                client.post(
                    reverse("shop:order-resend", args=[order.access_token]),
                    follow=True,
                    headers={"accept-language": "en"},
                ).content.decode()
            )

    assert "on its way to buyer@example.com" in pages[0] and "on its way to buyer@example.com" in pages[1]
    assert "We have sent several messages to buyer@example.com in the last hour" in pages[2]
    assert len(mail.outbox) == sent_before + 2
