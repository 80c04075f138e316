"""What a buyer sees in a real browser when the stock runs out under them: the pay page of a
sold-out order, and the order page of one paid just after the last key went."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from cardpool.models import CardKey, CardKeyStatus
from payments.models import Payment
from shop.models import ExceptionReason, Order, OrderStatus
from shop.selectors import order_by_access_token
from tests.support.browser import console_errors, screenshot
from tests.support.factories import ProductFactory, stock_product
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def browser_checkout(driver, shop_url: str, product) -> Order:
    driver.get(f"{shop_url}/p/{product.slug}/")
    driver.find_element(By.ID, "id_contact").send_keys("buyer@example.com")
    driver.find_element(By.ID, "id_query_password").send_keys("secret-pw")
    driver.find_element(By.CSS_SELECTOR, "form.checkout button[type=submit]").click()
    WebDriverWait(driver, 15).until(expected_conditions.url_contains("/pay/"))
    return order_by_access_token(token=driver.current_url.rstrip("/").split("/")[-2])


def no_console_errors(driver) -> list[str]:
    return [e for e in console_errors(driver) if "favicon.ico" not in e]


def test_sold_out_order_says_why_on_the_pay_page_and_can_be_cancelled(live_shop, browser_in):
    driver = browser_in("en")
    product = ProductFactory(name="Steam 50")
    stock_product(product, 1)
    order = browser_checkout(driver, live_shop.url, product)
    CardKey.objects.filter(product=product).update(status=CardKeyStatus.VOID)  # sold to someone else meanwhile

    driver.refresh()

    notice = WebDriverWait(driver, 15).until(expected_conditions.visibility_of_element_located((By.ID, "sold-out")))
    assert "this product sold out while your order was waiting for payment" in notice.text
    assert "Nothing was charged" in notice.text
    assert not driver.find_elements(By.CSS_SELECTOR, "button[name=gateway]")
    assert (
        notice.find_element(By.LINK_TEXT, "Back to the product").get_attribute("href").endswith(f"/p/{product.slug}/")
    )
    screenshot(driver, "pay-sold-out")
    assert no_console_errors(driver) == []

    driver.find_element(By.CSS_SELECTOR, "form.cancel button").click()

    WebDriverWait(driver, 15).until(
        expected_conditions.text_to_be_present_in_element((By.ID, "order"), "Nothing was charged")
    )
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED and not Payment.objects.filter(order=order).exists()
    assert driver.find_element(By.LINK_TEXT, "Back to the product").is_displayed()
    screenshot(driver, "order-cancelled")


def test_order_paid_just_after_the_last_key_went_tells_the_buyer_what_happens_next(live_shop, browser):
    product = ProductFactory(name="网易点卡 100")
    stock_product(product, 1)
    order = browser_checkout(browser, live_shop.url, product)
    browser.find_element(By.CSS_SELECTOR, "button[name=gateway][value=sandbox]").click()
    pay = WebDriverWait(browser, 15).until(
        expected_conditions.element_to_be_clickable((By.CSS_SELECTOR, "#sandbox-pay button"))
    )
    CardKey.objects.filter(product=product).update(status=CardKeyStatus.VOID)  # the last key went while paying

    pay.click()

    wait_until(
        lambda: Order.objects.get(pk=order.pk).status == OrderStatus.EXCEPTION, message="the worker to queue the order"
    )
    assert Order.objects.get(pk=order.pk).exception_reason == ExceptionReason.OUT_OF_STOCK
    browser.get(f"{live_shop.url}/order/{order.access_token}/")
    steps = WebDriverWait(browser, 15).until(
        expected_conditions.visibility_of_element_located((By.CSS_SELECTOR, ".next-steps"))
    )
    assert "售罄" in steps.text and "无需再次付款" in steps.text
    screenshot(browser, "order-out-of-stock")
    assert no_console_errors(browser) == []
