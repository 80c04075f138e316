"""The storefront's face in a real browser at phone and desktop width: category chips and product
images on the catalog, the running total, the notice, the footer's contacts, the pay page's
icons, the note beside the keys. Every page is screenshotted (var/screenshots/) for people."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from tests.support.browser import console_errors, screenshot
from tests.support.factories import CategoryFactory, ProductFactory, stock_product
from tests.support.images import card_art_upload, png_upload
from tests.support.operators import product_image_upload, shop_settings_save

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DESCRIPTION = """## 使用说明
1. 登录 Steam 客户端，点击左上角 **Steam → 兑换钱包充值码**
2. 粘贴卡密，确认即可到账

> 卡密一经售出，非质量问题不退换。<script>alert(1)</script>

[Steam 官方兑换页](https://store.steampowered.com/account/redeemwalletcode)"""


@pytest.fixture
def media(settings, live_shop, live_cache):
    """Uploads land where the live shop serves them from; settings saved reach it at once."""
    settings.MEDIA_ROOT = live_shop.env["MEDIA_ROOT"]


@pytest.fixture
def shop_front(admin_client, media):
    """A small shop: two categories, products with and without pictures, one sold out, the
    operator's name, logo, notice and contacts."""
    games = CategoryFactory(name="游戏点卡", slug="games", sort_order=1)
    video = CategoryFactory(name="视频会员", slug="video", sort_order=2)
    software = CategoryFactory(name="软件激活", slug="software", sort_order=3)
    steam = ProductFactory(
        name="Steam 钱包充值卡 ¥50", slug="steam-50", category=games, price=Decimal("48.50"), description=DESCRIPTION
    )
    netease = ProductFactory(name="网易一卡通 100 元", slug="netease-100", category=games, price=Decimal("96.00"))
    iqiyi = ProductFactory(
        name="爱奇艺黄金会员月卡", slug="iqiyi-month", category=video, price=Decimal("19.80"), max_quantity=5
    )
    ProductFactory(name="腾讯视频 VIP 季卡（售罄）", slug="tencent-video", category=video, price=Decimal("58.00"))
    office = ProductFactory(
        name="Office 2021 专业增强版 激活码", slug="office-2021", category=software, price=Decimal("9.90")
    )
    for product, count in ((steam, 30), (netease, 8), (iqiyi, 3), (office, 120)):
        stock_product(product, count)
    product_image_upload(admin_client, steam, card_art_upload("STEAM", (27, 40, 56), (42, 71, 94)))
    product_image_upload(admin_client, iqiyi, card_art_upload("爱奇艺", (0, 190, 6), (0, 120, 60)))
    shop_settings_save(
        admin_client,
        name="星河数字卡铺",
        logo=png_upload(size=(96, 96)),
        notice="**公告**：春节期间（2月9日–17日）自动发货不停，人工客服 10:00–22:00。",
        notice_starts_at_0=(timezone.localtime() - timedelta(hours=1)).strftime("%Y-%m-%d"),
        notice_starts_at_1=(timezone.localtime() - timedelta(hours=1)).strftime("%H:%M:%S"),
        support_qq="800012345",
        support_wechat="xinghe_kefu",
        support_telegram="@xinghe_help",
        support_email="help@xinghe.example",
        footer_text="本店所售卡密均来自官方授权渠道。",
        order_note="**请尽快兑换**：卡密已同时发送到你的邮箱。如遇问题，请带上订单号联系客服。",
    )
    return {"steam": steam, "iqiyi": iqiyi, "office": office}


def images_loaded(driver, css: str) -> list[bool]:
    """Whether each image matching ``css`` shows (lazy ones are scrolled to and waited for)."""
    script = "return Array.from(document.querySelectorAll(arguments[0])).map(i => i.complete && i.naturalWidth > 0);"
    for image in driver.find_elements(By.CSS_SELECTOR, css):
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", image)
    with contextlib.suppress(TimeoutException):  # the caller asserts on what loaded
        WebDriverWait(driver, 10).until(lambda d: all(d.execute_script(script, css)))
    driver.execute_script("window.scrollTo(0, 0);")
    return driver.execute_script(script, css)


def no_sideways_scroll(driver) -> bool:
    return driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1;")


def test_catalog_has_category_chips_product_images_and_the_shop_face(live_shop, browser, shop_front):
    browser.get(live_shop.url + "/")

    chips = browser.find_elements(By.CSS_SELECTOR, "#category-nav .chip")
    assert [c.text.split("\n")[0].rstrip("0123456789") for c in chips] == ["全部", "游戏点卡", "视频会员", "软件激活"]
    assert images_loaded(browser, ".product-card .thumb img") == [True, True]
    assert len(browser.find_elements(By.CSS_SELECTOR, ".product-card .placeholder")) == 3
    assert browser.find_element(By.CSS_SELECTOR, ".product-card.sold-out .badge-sold-out").text == "已售罄"
    assert "春节期间" in browser.find_element(By.ID, "shop-notice").text
    assert (
        browser.find_element(By.CSS_SELECTOR, ".brand-name").text == "星河数字卡铺" and browser.title == "星河数字卡铺"
    )
    assert images_loaded(browser, ".brand .logo") == [True]
    footer = browser.find_element(By.ID, "support-contacts").text
    assert all(c in footer for c in ("800012345", "xinghe_kefu", "@xinghe_help", "help@xinghe.example"))
    assert no_sideways_scroll(browser)
    screenshot(browser, "storefront-catalog")

    chips[2].click()
    WebDriverWait(browser, 10).until(EC.url_contains("/c/video/"))
    names = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".product-card .name")]
    assert names == ["爱奇艺黄金会员月卡", "腾讯视频 VIP 季卡（售罄）"]
    assert "active" in browser.find_elements(By.CSS_SELECTOR, "#category-nav .chip")[2].get_attribute("class")
    screenshot(browser, "storefront-category")
    assert console_errors(browser) == []


def test_product_page_shows_the_running_total_and_sanitised_details(live_shop, browser, shop_front):
    browser.get(live_shop.url + "/p/steam-50/")
    total = browser.find_element(By.ID, "checkout-total")
    quantity = browser.find_element(By.ID, "id_quantity")
    assert total.text == "¥48.50"
    assert images_loaded(browser, ".product-media img") == [True]

    plus = browser.find_elements(By.CSS_SELECTOR, ".quantity-stepper button.step")[1]
    plus.click()
    plus.click()
    assert quantity.get_attribute("value") == "3" and total.text == "¥145.50"
    quantity.clear()
    quantity.send_keys("7")
    assert total.text == "¥339.50"
    quantity.clear()
    quantity.send_keys("99")
    assert "1–10" in total.text  # out of range: says what is allowed instead of a total
    quantity.clear()
    quantity.send_keys("2")
    details = browser.find_element(By.CSS_SELECTOR, ".description").get_attribute("innerHTML")
    assert "<h2>使用说明</h2>" in details and "<script" not in details
    browser.find_element(By.ID, "id_contact").send_keys("buyer@example.com")
    browser.find_element(By.ID, "id_query_password").send_keys("secret-pw")
    screenshot(browser, "storefront-product")

    browser.find_element(By.CSS_SELECTOR, "button.buy").click()
    WebDriverWait(browser, 10).until(EC.url_contains("/pay/"))
    assert "¥97.00" in browser.find_element(By.CSS_SELECTOR, ".pay-amount").text  # the server's total agrees
    assert images_loaded(browser, ".gateway-icon") == [True]  # the sandbox gateway only, in tests
    screenshot(browser, "storefront-pay")

    browser.find_element(By.CSS_SELECTOR, "button.gateway-sandbox").click()
    WebDriverWait(browser, 10).until(EC.element_to_be_clickable((By.CSS_SELECTOR, "#sandbox-pay button"))).click()
    WebDriverWait(browser, 30).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".keys .secret")))
    assert "请尽快兑换" in browser.find_element(By.ID, "order-note").text
    assert no_sideways_scroll(browser)
    screenshot(browser, "storefront-order")
    assert console_errors(browser) == []


def test_sold_out_product_and_the_lookup_page(live_shop, browser, shop_front):
    browser.get(live_shop.url + "/p/tencent-video/")
    button = browser.find_element(By.CSS_SELECTOR, "button.buy")
    assert not button.is_enabled() and button.text == "已售罄"
    assert browser.find_elements(By.CSS_SELECTOR, "form.checkout") == []
    screenshot(browser, "storefront-sold-out")

    browser.get(live_shop.url + "/lookup/")
    screenshot(browser, "storefront-lookup")
    assert no_sideways_scroll(browser)
    assert console_errors(browser) == []


def test_catalog_in_english_fits_the_screen(live_shop, browser_in, shop_front):
    english = browser_in("en")
    english.get(live_shop.url + "/")

    assert english.find_element(By.CSS_SELECTOR, "#shop-notice .notice-tag").text == "Notice"
    assert english.find_element(By.CSS_SELECTOR, ".nav-lookup").text == "Find my order"
    assert no_sideways_scroll(english)
    screenshot(english, "storefront-catalog-en")
    assert console_errors(english) == []
