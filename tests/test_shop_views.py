"""The storefront through HTTP, as a buyer sees it."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from shop.models import Order, OrderStatus
from tests.factories import OrderFactory, ProductFactory, stock_product
from tests.platforms import sandbox_notification
from tests.storefront import checkout, post_notification, sandbox_pay_page, start_sandbox_payment

pytestmark = pytest.mark.django_db


def test_catalog_shows_products_with_live_stock(client):
    product = ProductFactory(name="Steam ¥50")
    stock_product(product, 3)
    sold_out = ProductFactory(name="空卡", category=product.category)

    page = client.get(reverse("shop:catalog")).content.decode()

    assert "Steam ¥50" in page and "3" in page
    assert sold_out.name in page


def test_catalog_speaks_chinese_by_default_and_english_on_request(client):
    stock_product(ProductFactory(), 1)

    chinese = client.get("/").content.decode()
    english = client.get("/", HTTP_ACCEPT_LANGUAGE="en").content.decode()

    assert "库存 1" in chinese and "订单查询" in chinese
    assert "1 in stock" in english and "Find my order" in english


def test_product_page_escapes_operator_html(client):
    product = ProductFactory(name="<script>alert(1)</script>", description="<img src=x onerror=alert(1)>")

    page = client.get(reverse("shop:product", args=[product.slug])).content.decode()

    assert "<script>alert(1)</script>" not in page
    assert "<img src=x" not in page


def test_checkout_creates_pending_order_with_hashed_password(client):
    product = ProductFactory(price=Decimal("9.90"))
    stock_product(product, 5)

    order = checkout(client, product, quantity=3, contact=" Buyer@Example.com ", password="my-query-pw")

    assert order.status == OrderStatus.PENDING
    assert order.total == Decimal("29.70") and order.unit_price == Decimal("9.90")
    assert order.contact == "buyer@example.com" and order.contact_kind == "email"
    assert "my-query-pw" not in order.query_password_hash
    assert order.client_ip == "127.0.0.1"


def test_checkout_accepts_a_mobile_number(client):
    product = ProductFactory()
    stock_product(product, 1)

    order = checkout(client, product, contact="13800138000")

    assert order.contact_kind == "mobile"


@pytest.mark.parametrize(
    "form, message",
    [
        ({"quantity": 20, "contact": "a@b.cn", "query_password": "pass1"}, "1"),
        ({"quantity": 0, "contact": "a@b.cn", "query_password": "pass1"}, "1"),
        ({"quantity": 1, "contact": "not-a-contact", "query_password": "pass1"}, "11"),
        ({"quantity": 1, "contact": "a@b.cn", "query_password": "x"}, "4"),
    ],
    ids=["above-max", "zero", "bad-contact", "short-password"],
)
def test_checkout_with_bad_input_explains_and_creates_nothing(client, form, message):
    product = ProductFactory(max_quantity=10)
    stock_product(product, 30)

    response = client.post(reverse("shop:product", args=[product.slug]), form)

    assert response.status_code == 200
    assert "errorlist" in response.content.decode()
    assert not Order.objects.exists()


def test_checkout_above_available_stock_is_refused(client):
    product = ProductFactory(max_quantity=10)
    stock_product(product, 2)

    response = client.post(
        reverse("shop:product", args=[product.slug]),
        {"quantity": 3, "contact": "a@b.cn", "query_password": "pass1"},
        HTTP_ACCEPT_LANGUAGE="en",
    )

    assert "Not enough stock" in response.content.decode()
    assert not Order.objects.exists()


def test_checkout_without_csrf_token_is_refused():
    product = ProductFactory()
    stock_product(product, 1)
    client = Client(enforce_csrf_checks=True)

    response = client.post(reverse("shop:product", args=[product.slug]), {"quantity": 1, "contact": "a@b.cn", "query_password": "pass1"})

    assert response.status_code == 403
    assert not Order.objects.exists()


def test_inactive_product_is_not_found(client):
    product = ProductFactory(is_active=False)

    assert client.get(reverse("shop:product", args=[product.slug])).status_code == 404


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


def test_lookup_with_number_and_password_opens_the_order(client):
    product = ProductFactory()
    stock_product(product, 1)
    order = checkout(client, product, password="right-pw")

    response = client.post(reverse("shop:lookup"), {"number": order.number, "query_password": "right-pw"})

    assert response.status_code == 302 and response["Location"] == reverse("shop:order", args=[order.access_token])


def test_lookup_with_wrong_password_reveals_nothing(client):
    product = ProductFactory()
    stock_product(product, 1)
    order = checkout(client, product, password="right-pw")

    response = client.post(
        reverse("shop:lookup"), {"number": order.number, "query_password": "wrong-pw"}, HTTP_ACCEPT_LANGUAGE="en"
    )
    page = response.content.decode()

    assert response.status_code == 200
    assert "No order matches" in page
    assert order.access_token not in page and order.contact not in page


def test_lookup_is_rate_limited_per_ip(client, settings):
    settings.ORDER_LOOKUP_RATE = "3/m"
    product = ProductFactory()
    stock_product(product, 1)
    order = checkout(client, product, password="right-pw")
    for _ in range(3):
        client.post(reverse("shop:lookup"), {"number": order.number, "query_password": "guess"})

    response = client.post(
        reverse("shop:lookup"), {"number": order.number, "query_password": "right-pw"}, HTTP_ACCEPT_LANGUAGE="en"
    )

    assert response.status_code == 429
    assert "Too many lookups" in response.content.decode()
    other_ip = client.post(
        reverse("shop:lookup"), {"number": order.number, "query_password": "right-pw"}, REMOTE_ADDR="10.9.9.9"
    )
    assert other_ip.status_code == 302


def test_healthz_answers(client):
    assert client.get("/healthz").content == b"ok"


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


def test_order_page_keeps_its_token_on_the_site_but_lets_its_forms_send_their_origin(client):
    order = OrderFactory()

    response = client.get(reverse("shop:order", args=[order.access_token]))

    # same-origin: no Referer (with the token in its URL) to other sites; "no-referrer" made
    # Chromium post the page's forms with "Origin: null", which CSRF refuses.
    assert response["Referrer-Policy"] == "same-origin"
    assert "no-store" in response["Cache-Control"]
