"""A buyer's whole visit in a real browser, at phone and desktop width, in every language the shop
speaks: catalog → product → checkout (a bad contact first) → sandbox payment → the keys appear on
the order page by themselves → copy → send again → language switch → lookup by number and query
password → cancel an unpaid order. No console errors (CSP violations among them) anywhere."""

from __future__ import annotations

import pytest
from django.conf import settings
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from shop.models import Order, OrderStatus
from tests.support.browser import console_errors, screenshot
from tests.support.factories import ProductFactory, stock_product

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# What each language's buyer sends as Accept-Language.
ACCEPT_LANGUAGE = {"zh-hans": "zh-CN", "zh-hant": "zh-TW", "en": "en"}


def _wait(driver, condition, what: str, timeout: float = 15):
    try:
        # An element read while the next page replaces the current one goes stale: read again.
        ignored = (NoSuchElementException, StaleElementReferenceException)
        return WebDriverWait(driver, timeout, ignored_exceptions=ignored).until(condition)
    except TimeoutException:
        pytest.fail(f"timed out waiting for {what} at {driver.current_url}; console: {console_errors(driver)}")


def _css(driver, selector: str):
    return driver.find_element(By.CSS_SELECTOR, selector)


def _messages(driver, kind: str) -> list[str]:
    return [item.text for item in driver.find_elements(By.CSS_SELECTOR, f".messages li.{kind}")]


def _checkout(driver, product, *, contact: str, password: str) -> None:
    _css(driver, "input[name=contact]").clear()
    _css(driver, "input[name=contact]").send_keys(contact)
    _css(driver, "input[name=query_password]").clear()
    _css(driver, "input[name=query_password]").send_keys(password)
    _css(driver, "form.checkout button[type=submit]").click()


def _page_language(driver) -> str:
    # Read in one script call: an <html> element found first can belong to the page being left
    # by the time its attribute is asked for ("Node … does not belong to the document").
    return driver.execute_script("return document.documentElement.lang")


@pytest.mark.parametrize("language", [code for code, _name in settings.LANGUAGES])
def test_buyer_buys_pays_and_manages_the_order(live_shop, browser_in, language):
    product = ProductFactory(name="Steam 充值卡 ¥50")
    stock_product(product, 3)
    driver = browser_in(ACCEPT_LANGUAGE[language])
    errors: list[str] = []

    driver.get(live_shop.url + "/")
    assert _page_language(driver) == language
    screenshot(driver, f"flow-catalog-{language}")
    _css(driver, f'a[href="/p/{product.slug}/"]').click()
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "form.checkout"), "the product page")

    # A contact that is neither an email address nor a mobile number: a clear error, no order.
    _checkout(driver, product, contact="not a contact", password="pw-1234")
    error = _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".errorlist li"), "the contact error")[0]
    assert error.text.strip()
    assert "/p/" in driver.current_url and not Order.objects.filter(product=product).exists()
    screenshot(driver, f"flow-checkout-error-{language}")
    errors += console_errors(driver)

    _checkout(driver, product, contact="buyer@example.com", password="pw-1234")
    _wait(driver, lambda d: d.current_url.endswith("/pay/"), "the pay page")
    order = Order.objects.get(product=product)
    _css(driver, 'button[name="gateway"][value="sandbox"]').click()
    _wait(driver, lambda d: "/payments/sandbox/pay/" in d.current_url, "the sandbox pay page")
    screenshot(driver, f"flow-sandbox-{language}")
    errors += console_errors(driver)
    _css(driver, "#sandbox-pay button").click()

    # The order page polls and shows the key when the worker delivers it, without a reload by hand.
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "code.secret"), "the key on the order page", timeout=30)
    order.refresh_from_db()
    assert order.status == OrderStatus.DELIVERED
    secret = _css(driver, "code.secret").text
    assert secret.startswith("KEY-")
    screenshot(driver, f"flow-order-{language}")

    driver.execute_cdp_cmd(
        "Browser.grantPermissions",
        {"origin": live_shop.url, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]},
    )
    _css(driver, "button.copy").click()
    _wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, "button.copy").text == "✓", "the copy button's feedback")
    assert driver.execute_async_script("navigator.clipboard.readText().then(arguments[0])") == secret

    _css(driver, "form.resend button").click()
    _wait(driver, lambda d: _messages(d, "success") or _messages(d, "info"), "the resend message")
    assert "buyer@example.com" in " ".join(_messages(driver, "success"))
    errors += console_errors(driver)

    other = next(code for code, _name in settings.LANGUAGES if code != language)
    _css(driver, f'form.lang button[value="{other}"]').click()
    _wait(driver, lambda d: _page_language(d) == other, "the other language")
    assert (
        driver.find_elements(By.CSS_SELECTOR, "code.secret") and f"/order/{order.access_token}/" in driver.current_url
    )
    _css(driver, f'form.lang button[value="{language}"]').click()
    _wait(driver, lambda d: _page_language(d) == language, "the language back")
    errors += console_errors(driver)

    driver.get(live_shop.url + "/lookup/")
    _css(driver, "input[name=number]").send_keys(order.number)
    _css(driver, "input[name=query_password]").send_keys("pw-1234")
    _css(driver, "section.lookup button[type=submit]").click()
    _wait(driver, lambda d: f"/order/{order.access_token}/" in d.current_url, "the looked-up order")
    assert _css(driver, "code.secret").text == secret
    errors += console_errors(driver)

    # A second order, left unpaid and cancelled from its pay page.
    driver.get(f"{live_shop.url}/p/{product.slug}/")
    _checkout(driver, product, contact="13800138000", password="pw-5678")
    _wait(driver, lambda d: d.current_url.endswith("/pay/"), "the second pay page")
    unpaid = Order.objects.filter(product=product).exclude(pk=order.pk).get()
    screenshot(driver, f"flow-pay-{language}")
    _css(driver, "form.cancel button").click()
    _wait(driver, lambda d: _messages(d, "info"), "the cancellation message")
    unpaid.refresh_from_db()
    assert unpaid.status == OrderStatus.CANCELLED
    errors += console_errors(driver)

    # (the favicon arrives with the storefront's own work)
    assert [e for e in errors if "favicon.ico" not in e] == []
