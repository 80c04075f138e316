"""Checkout through HTTP: the order it creates, and the input it refuses."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from shop.models import Order, OrderStatus
from tests.support.factories import ProductFactory, stock_product
from tests.support.storefront import checkout

pytestmark = pytest.mark.django_db


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

    response = client.post(
        reverse("shop:product", args=[product.slug]), {"quantity": 1, "contact": "a@b.cn", "query_password": "pass1"}
    )

    assert response.status_code == 403
    assert not Order.objects.exists()


@pytest.mark.parametrize(
    "language, too_short, has_nul",
    [
        ("zh-hans", "至少需要 4 个字符（当前 2 个）。", "不能包含空字符（NUL）。"),
        ("zh-hant", "至少需要 4 個字元（目前 2 個）。", "不能包含空字元（NUL）。"),
    ],
)
def test_checkout_errors_read_as_shop_chinese(client, language, too_short, has_nul):
    product = ProductFactory()
    stock_product(product, 1)

    response = client.post(
        reverse("shop:product", args=[product.slug]),
        {"quantity": "1", "contact": "buyer@example.com\x00", "query_password": "pw"},
        HTTP_ACCEPT_LANGUAGE=language,
    )
    page = response.content.decode()

    assert too_short in page and has_nul in page
    assert "变量" not in page and "是用" not in page
