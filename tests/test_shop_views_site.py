"""What every page shares: the language switch, the security policy, the health check, admin pages."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.support.factories import ProductFactory, stock_product
from tests.support.platforms import sandbox_notification
from tests.support.storefront import checkout, post_notification, start_sandbox_payment

pytestmark = pytest.mark.django_db


def test_healthz_answers(client):
    response = client.get("/healthz")

    assert response.content == b"ok"
    # The bare-view baseline of the benchmarks: no policy built for a plain-text liveness answer.
    assert "Content-Security-Policy" not in response


@pytest.mark.parametrize(
    "url_name",
    [
        "admin:index",
        "admin:shop_product_changelist",
        "admin:shop_category_changelist",
        "admin:shop_order_changelist",
        "admin:shop_exceptionorder_changelist",
        "admin:cardpool_cardkey_changelist",
        "admin:cardpool_cardkey_import",
        "admin:cardpool_importbatch_changelist",
        "admin:payments_payment_changelist",
        "admin:payments_paymentnotification_changelist",
        "admin:delivery_deliverymessage_changelist",
        "admin:delivery_stockalert_changelist",
        "admin:shop_product_add",
    ],
)
def test_admin_pages_open_for_staff(admin_client, client, on_commit, url_name):
    product = ProductFactory()
    stock_product(product, 2)
    order = checkout(client, product)
    payment = start_sandbox_payment(client, order)
    with on_commit():
        post_notification(client, sandbox_notification(out_trade_no=payment.out_trade_no, amount=order.total))

    response = admin_client.get(reverse(url_name))

    assert response.status_code == 200


def test_admin_product_list_shows_stock_from_the_pool(admin_client):
    product = ProductFactory(name="库存商品")
    stock_product(product, 7)

    page = admin_client.get(reverse("admin:shop_product_changelist")).content.decode()

    assert '<td class="field-stock">7</td>' in page


def test_buyer_switches_the_language_and_it_sticks(client):
    stock_product(ProductFactory(), 1)
    switcher = client.get("/").content.decode()
    assert 'value="en"' in switcher and ">English<" in switcher

    client.post(reverse("set_language"), {"language": "en", "next": "/"})

    assert "Find my order" in client.get("/").content.decode()


def test_storefront_pages_forbid_inline_and_foreign_scripts(client, admin_client):
    product = ProductFactory()
    stock_product(product, 1)
    order = checkout(client, product)

    for url in ("/", reverse("shop:product", args=[product.slug]), reverse("shop:order", args=[order.access_token])):
        policy = client.get(url)["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    page = client.get(reverse("shop:order", args=[order.access_token])).content.decode()
    assert "<script>" not in page and "onclick=" not in page
    assert "Content-Security-Policy" not in admin_client.get(reverse("admin:index"))
