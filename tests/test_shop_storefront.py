"""The storefront's face over HTTP: the shop settings singleton in admin, name, logo, favicon,
contacts, the scheduled notice, the note after purchase, category pages."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from shop.models import ShopSettings
from tests.support.factories import CategoryFactory, ProductFactory, stock_product
from tests.support.images import jpeg_upload
from tests.support.storefront import checkout, sandbox_pay

pytestmark = pytest.mark.django_db


def test_shop_settings_list_goes_straight_to_the_one_form(admin_client):
    listing = admin_client.get(reverse("admin:shop_shopsettings_changelist"))
    assert listing.status_code == 302 and listing["Location"] == reverse("admin:shop_shopsettings_change", args=[1])

    form = admin_client.get(listing["Location"], headers={"accept-language": "en"})
    assert form.status_code == 200 and "Support contacts" in form.content.decode()
    assert admin_client.get(reverse("admin:shop_shopsettings_add")).status_code == 403
    assert (
        admin_client.get(reverse("admin:shop_shopsettings_change", args=[2])).status_code == 302
    )  # no such row: back to admin


def test_saving_shop_settings_twice_keeps_one_row_and_the_storefront_sees_it_at_once(admin_client, client):
    url = reverse("admin:shop_shopsettings_change", args=[1])

    admin_client.post(url, {"name": "星河卡铺", "support_qq": "10001"})
    response = admin_client.post(
        url, {"name": "星河数字卡铺", "support_qq": "10002", "support_email": "help@example.com"}
    )

    assert response.status_code == 302 and ShopSettings.objects.count() == 1
    assert admin_client.get(reverse("admin:shop_shopsettings_delete", args=[1])).status_code == 403
    page = client.get("/").content.decode()
    assert "<title>星河数字卡铺</title>" in page and "10002" in page and 'href="mailto:help@example.com"' in page


def test_storefront_shows_the_default_name_and_no_contact_block_when_unset(client):
    page = client.get("/", headers={"accept-language": "en"}).content.decode()

    assert "Kameng card shop" in page and 'id="support-contacts"' not in page and 'id="shop-notice"' not in page


def test_footer_lists_every_support_contact(client):
    ShopSettings.objects.create(
        name="卡铺",
        support_qq="123456",
        support_wechat="kapu_kefu",
        support_telegram="https://t.me/kapu_help",
        support_email="kefu@example.com",
        footer_text="营业执照 · 客服 9:00–23:00",
    )

    page = client.get("/").content.decode()

    assert "123456" in page and "kapu_kefu" in page and "营业执照" in page
    assert 'href="https://t.me/kapu_help"' in page and "@kapu_help" in page


@pytest.mark.parametrize(
    ("starts", "ends", "shown"),
    [(None, None, True), (-1, 1, True), (1, None, False), (None, -1, False), (-2, -1, False)],
    ids=["no-schedule", "inside", "not-yet", "ended", "past-window"],
)
def test_notice_shows_only_inside_its_schedule(client, starts, ends, shown):
    now = timezone.now()
    ShopSettings.objects.create(
        notice="春节期间正常发货",
        notice_starts_at=now + timedelta(hours=starts) if starts is not None else None,
        notice_ends_at=now + timedelta(hours=ends) if ends is not None else None,
    )

    page = client.get("/").content.decode()

    assert ("春节期间正常发货" in page) is shown and ('id="shop-notice"' in page) is shown


def test_order_note_shows_with_the_keys(client, on_commit):
    ShopSettings.objects.create(order_note="**请立即兑换**，卡密售出不退。")
    product = ProductFactory()
    keys = stock_product(product, 1)
    order = checkout(client, product)
    sandbox_pay(client, on_commit, order)

    page = client.get(reverse("shop:order", args=[order.access_token])).content.decode()

    assert keys[0] in page and '<div class="order-note rich" id="order-note"><p><strong>请立即兑换</strong>' in page
    assert page.index(keys[0]) < page.index("请立即兑换")


def test_favicon_is_the_default_until_the_operator_uploads_one(admin_client, client):
    default = client.get("/favicon.ico")
    assert default.status_code == 302 and default["Location"].endswith(".ico")

    admin_client.post(reverse("admin:shop_shopsettings_change", args=[1]), {"favicon": jpeg_upload(size=(64, 64))})
    configured = client.get("/favicon.ico")

    assert configured.status_code == 200 and configured["Content-Type"] == "image/png"
    assert b"".join(configured.streaming_content).startswith(b"\x89PNG")
    assert '<link rel="icon" href="/favicon.ico?v=' in client.get("/").content.decode()


def test_favicon_missing_from_the_media_folder_falls_back_to_the_default(admin_client, client):
    admin_client.post(reverse("admin:shop_shopsettings_change", args=[1]), {"favicon": jpeg_upload(size=(64, 64))})
    row = ShopSettings.objects.get()
    row.favicon.storage.delete(row.favicon.name)

    assert client.get("/favicon.ico").status_code == 302


def test_category_page_shows_that_category_and_chips_for_all(client):
    games, video = CategoryFactory(name="游戏点卡", slug="games"), CategoryFactory(name="视频会员", slug="video")
    stock_product(ProductFactory(name="Steam 卡", category=games), 1)
    stock_product(ProductFactory(name="爱奇艺月卡", category=video), 1)

    page = client.get(reverse("shop:category", args=["video"])).content.decode()

    assert "爱奇艺月卡" in page and "Steam 卡" not in page
    assert 'href="/c/games/"' in page and 'class="chip active" aria-current="page">视频会员' in page
    assert client.get(reverse("shop:category", args=["nothing-here"])).status_code == 404


def test_sold_out_product_shows_a_disabled_buy_button(client):
    product = ProductFactory(name="售罄商品")

    page = client.get(reverse("shop:product", args=[product.slug]), headers={"accept-language": "en"}).content.decode()

    assert 'class="checkout"' not in page and "disabled>Sold out</button>" in page


def test_query_password_is_kept_after_a_form_error(client):
    product = ProductFactory()
    stock_product(product, 1)

    response = client.post(
        reverse("shop:product", args=[product.slug]),
        {"quantity": 1, "contact": "not a contact", "query_password": "my-secret-pw"},
    )

    assert response.status_code == 200 and 'value="my-secret-pw"' in response.content.decode()


def test_pay_page_shows_an_icon_for_each_payment_method(client):
    product = ProductFactory()
    stock_product(product, 1)
    order = checkout(client, product)

    page = client.get(reverse("shop:order-pay", args=[order.access_token])).content.decode()

    assert 'name="gateway" value="sandbox"' in page and "shop/pay-sandbox" in page and 'class="gateway-icon"' in page


def test_pay_page_draws_alipay_and_wechat_pay_with_their_own_icons(client, alipay, wechat):
    product = ProductFactory()
    stock_product(product, 1)
    order = checkout(client, product)

    page = client.get(reverse("shop:order-pay", args=[order.access_token])).content.decode()

    for identifier in ("alipay", "wechatpay", "sandbox"):
        assert f'value="{identifier}" class="gateway gateway-{identifier}"' in page and f"shop/pay-{identifier}" in page


@pytest.mark.parametrize(
    "language, words, english",
    [
        (
            "zh-hans",
            ["店铺设置", "店铺名称", "客服微信", "公告开始时间", "购买后提示"],
            ["Shop name", "Support WeChat", "Notice from"],
        ),
        (
            "zh-hant",
            ["商店設定", "商店名稱", "客服微信", "公告開始時間", "購買後提示"],
            ["Shop name", "Support WeChat", "Notice from"],
        ),
    ],
)
def test_shop_settings_form_reads_in_the_operators_chinese(admin_client, language, words, english):
    page = admin_client.get(
        reverse("admin:shop_shopsettings_changelist"), follow=True, HTTP_ACCEPT_LANGUAGE=language
    ).content.decode()

    assert all(word in page for word in words), [word for word in words if word not in page]
    assert not any(word in page for word in english)
