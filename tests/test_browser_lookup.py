"""Finding an order again in a real browser, at phone and desktop width: by contact and query
password, the orders this browser made, and the message a throttled page shows."""

from __future__ import annotations

import pytest
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from shop.services import order_create
from tests.support.browser import console_errors, screenshot
from tests.support.factories import ProductFactory, stock_product
from tests.support.processes import shop_start

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _look_up(driver, base: str, reference: str, password: str) -> None:
    driver.get(base + "/lookup/")
    driver.find_element(By.ID, "id_number").send_keys(reference)
    driver.find_element(By.ID, "id_query_password").send_keys(password)
    _submit_and_wait(driver, driver.find_element(By.CSS_SELECTOR, ".lookup form button[type=submit]"))


def _submit_and_wait(driver, button) -> None:
    """Click and wait until the answer page has replaced this one (the mark set on this page is gone)."""
    driver.execute_script("document.documentElement.dataset.before = 'submit'")
    button.click()
    WebDriverWait(driver, 20, ignored_exceptions=(WebDriverException,)).until(
        lambda d: d.execute_script(
            "return document.readyState === 'complete' && !document.documentElement.dataset.before"
        )
    )


def _buy(driver, base: str, product, contact: str) -> str:
    """Check out in the browser; returns the pay page's URL."""
    driver.get(f"{base}/p/{product.slug}/")
    driver.find_element(By.ID, "id_contact").send_keys(contact)
    driver.find_element(By.ID, "id_query_password").send_keys("pw1234")
    driver.find_element(By.CSS_SELECTOR, "form.checkout button[type=submit]").click()
    WebDriverWait(driver, 20).until(ec.url_contains("/pay/"))
    return driver.current_url


def test_lookup_by_contact_and_password_lists_the_orders(live_shop, browser):
    product = ProductFactory(name="Steam 充值卡 ¥50")
    other = ProductFactory(name="网易云音乐 月卡", category=product.category)
    stock_product(product, 2)
    stock_product(other, 2)
    contact = f"finder-{browser.viewport.name}@example.com"
    older = order_create(product=product, quantity=1, contact=contact, query_password="pw1234", client_ip=None)
    newer = order_create(product=other, quantity=2, contact=contact, query_password="pw1234", client_ip=None)

    _look_up(browser, live_shop.url, contact.upper(), "pw1234")

    listed = WebDriverWait(browser, 20).until(ec.presence_of_element_located((By.ID, "found-orders")))
    rows = listed.find_elements(By.TAG_NAME, "li")
    assert [row.find_element(By.TAG_NAME, "code").text for row in rows] == [newer.number, older.number]
    assert "网易云音乐 月卡" in rows[0].text and "待支付" in rows[0].text
    screenshot(browser, "lookup-by-contact")
    rows[1].find_element(By.TAG_NAME, "a").click()
    WebDriverWait(browser, 20).until(ec.url_contains(f"/order/{older.access_token}/"))
    assert "Steam 充值卡 ¥50" in browser.page_source
    assert [e for e in console_errors(browser) if "favicon.ico" not in e] == []


def test_a_wrong_password_for_a_contact_shows_the_same_miss_as_an_unknown_contact(live_shop, browser):
    product = ProductFactory()
    stock_product(product, 1)
    contact = f"miss-{browser.viewport.name}@example.com"
    order_create(product=product, quantity=1, contact=contact, query_password="pw1234", client_ip=None)

    _look_up(browser, live_shop.url, contact, "wrong-pw")
    known = browser.find_element(By.CSS_SELECTOR, ".errors").text
    screenshot(browser, "lookup-miss")
    _look_up(browser, live_shop.url, "nobody-" + contact, "wrong-pw")

    assert known == browser.find_element(By.CSS_SELECTOR, ".errors").text == "没有找到与该信息和查询密码匹配的订单。"


def test_orders_from_this_browser_are_listed_here_and_not_in_a_fresh_browser(live_shop, browser, browser_in):
    product = ProductFactory(name="Xbox 礼品卡")
    stock_product(product, 3)
    pay_url = _buy(browser, live_shop.url, product, f"cookie-{browser.viewport.name}@example.com")
    token = pay_url.rstrip("/").split("/")[-2]

    browser.get(live_shop.url + "/lookup/")

    remembered = browser.find_element(By.ID, "browser-orders")
    assert "Xbox 礼品卡" in remembered.text and "待支付" in remembered.text
    assert remembered.find_element(By.TAG_NAME, "a").get_attribute("href").endswith(f"/order/{token}/")
    screenshot(browser, "lookup-browser-orders")
    fresh = browser_in("zh-CN")
    fresh.get(live_shop.url + "/lookup/")
    assert not fresh.find_elements(By.ID, "browser-orders") and "本浏览器的订单" not in fresh.page_source


@pytest.fixture(scope="module")
def strict_shop(tmp_path_factory, django_db_setup, django_db_blocker):
    """A shop of its own whose limits are hit in a few clicks (one gunicorn worker, so its
    per-process cache counts every request)."""
    with django_db_blocker.unblock():
        shop = shop_start(
            tmp_path_factory.mktemp("strict-shop"),
            beat=False,
            web_workers=1,
            ORDER_LOOKUP_RATE="2/h",
            PAYMENT_START_RATE_ORDER="1/h",
        )
    yield shop
    shop.stop()


def test_a_throttled_lookup_shows_the_message(strict_shop, browser):
    for _ in range(3):
        _look_up(browser, strict_shop.url, "nobody@example.com", "guess1")

    assert browser.find_element(By.CSS_SELECTOR, ".errors").text == "查询过于频繁，请几分钟后再试。"
    screenshot(browser, "lookup-throttled")


def test_a_throttled_pay_button_shows_the_message(strict_shop, browser):
    product = ProductFactory(name="Steam 充值卡 ¥100")
    stock_product(product, 1)
    pay_url = _buy(browser, strict_shop.url, product, f"payer-{browser.viewport.name}@example.com")
    browser.find_element(By.CSS_SELECTOR, "button[name=gateway][value=sandbox]").click()
    WebDriverWait(browser, 20).until(ec.url_contains("/payments/sandbox/pay/"))

    browser.get(pay_url)
    _submit_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "button[name=gateway][value=sandbox]"))

    message = WebDriverWait(browser, 20).until(ec.presence_of_element_located((By.CSS_SELECTOR, ".messages .error")))
    assert message.text == "短时间内发起支付次数过多，请稍等几分钟再试。"
    screenshot(browser, "pay-throttled")
