"""The catalog and product pages through HTTP, as a buyer sees them."""

from __future__ import annotations

import pytest
from django.urls import reverse

from cardpool.models import CardKey, CardKeyStatus
from shop.models import Product
from tests.support.factories import ProductFactory, stock_product

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


def test_cached_catalog_is_rendered_once_per_language_while_the_product_page_stays_exact(
    client, settings, django_assert_num_queries
):
    settings.CATALOG_CACHE_SECONDS = 60
    product = ProductFactory(name="Steam ¥50")
    stock_product(product, 1)
    client.get("/")  # renders and caches the body in Chinese

    with django_assert_num_queries(0):  # no product, no stock count: the body comes from the cache
        cached = client.get("/").content.decode()
    english = client.get("/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    stock_product(ProductFactory(name="Netflix 月卡", category=product.category), 1)
    Product.objects.filter(pk=product.pk).update(price="1.00")
    CardKey.objects.filter(product=product).update(status=CardKeyStatus.VOID)  # its last key is gone

    assert "库存 1" in cached and "1 in stock" in english  # each language has its own body
    assert "Netflix 月卡" not in client.get("/").content.decode()  # the catalog lags a while
    product_page = client.get(reverse("shop:product", args=[product.slug])).content.decode()
    assert "<small>¥</small>1.00" in product_page and "售罄" in product_page  # the page that sells is exact


def test_product_page_escapes_operator_html(client):
    product = ProductFactory(name="<script>alert(1)</script>", description="<img src=x onerror=alert(1)>")

    page = client.get(reverse("shop:product", args=[product.slug])).content.decode()

    assert "<script>alert(1)</script>" not in page
    assert "<img src=x" not in page


def test_inactive_product_is_not_found(client):
    product = ProductFactory(is_active=False)

    assert client.get(reverse("shop:product", args=[product.slug])).status_code == 404
