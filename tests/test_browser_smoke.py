"""The storefront in a real browser: the catalog opens at phone and desktop width."""

from __future__ import annotations

import pytest

from tests.support.browser import console_errors, screenshot
from tests.support.factories import ProductFactory, stock_product

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_catalog_shows_a_product_in_stock(live_shop, browser):
    product = ProductFactory(name="Steam 充值卡 ¥50")
    stock_product(product, 2)

    browser.get(live_shop.url + "/")

    assert "Steam 充值卡 ¥50" in browser.page_source
    screenshot(browser, "catalog")
    assert console_errors(browser) == []
