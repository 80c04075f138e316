"""The storefront through HTTP, as a buyer sees it."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from cardpool.models import CardKey, CardKeyStatus
from kameng.log_redaction import SecretPathFilter
from shop.browser_orders import COOKIE_NAME
from shop.models import Order, OrderStatus, Product
from shop.services import order_create
from tests.support.factories import OrderFactory, ProductFactory, stock_product
from tests.support.platforms import sandbox_notification
from tests.support.storefront import checkout, post_notification, sandbox_pay_page, start_sandbox_payment

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


def test_order_page_keeps_its_token_on_the_site_but_lets_its_forms_send_their_origin(client):
    order = OrderFactory()

    response = client.get(reverse("shop:order", args=[order.access_token]))

    # same-origin: no Referer (with the token in its URL) to other sites; "no-referrer" made
    # Chromium post the page's forms with "Origin: null", which CSRF refuses.
    assert response["Referrer-Policy"] == "same-origin"
    assert "no-store" in response["Cache-Control"]


# --- Finding orders again: by contact, and orders from this browser ---------------------------



def _orders_for(product, contact, password, count):
    return [
        order_create(product=product, quantity=1, contact=contact, query_password=password, client_ip=None) for _ in range(count)
    ]


def _lookup(client, reference, password, **extra):
    return client.post(reverse("shop:lookup"), {"number": reference, "query_password": password}, HTTP_ACCEPT_LANGUAGE="en", **extra)


def test_lookup_by_email_and_password_lists_that_contacts_orders_newest_first(client):
    product = ProductFactory(name="Steam ¥50")
    stock_product(product, 5)
    mine = _orders_for(product, "buyer@example.com", "right-pw", 3)
    other_password = _orders_for(product, "buyer@example.com", "other-pw", 1)[0]
    other_contact = _orders_for(product, "someone@example.com", "right-pw", 1)[0]

    response = _lookup(client, " Buyer@Example.COM ", "right-pw")

    assert response.status_code == 302 and response["Location"] == reverse("shop:lookup") + "?page=1"
    page = client.get(response["Location"], HTTP_ACCEPT_LANGUAGE="en").content.decode()
    found = re.findall(r'id="found-orders".*?</ul>', page, re.S)[0]
    assert [m for m in re.findall(r"<code>(\d+)</code>", found)] == [o.number for o in reversed(mine)]
    assert all(reverse("shop:order", args=[o.access_token]) in found for o in mine)
    assert other_password.number not in page and other_contact.number not in page
    assert "Awaiting payment" in found and "Steam ¥50" in found


def test_lookup_by_mobile_number_and_password(client):
    product = ProductFactory()
    stock_product(product, 1)
    order = _orders_for(product, "13800138000", "right-pw", 1)[0]

    response = _lookup(client, "13800138000", "right-pw", follow=True)

    assert order.number in response.content.decode()


def test_lookup_by_contact_pages_ten_orders_at_a_time(client):
    product = ProductFactory()
    stock_product(product, 1)
    orders = _orders_for(product, "buyer@example.com", "right-pw", 12)
    _lookup(client, "buyer@example.com", "right-pw")

    first = client.get(reverse("shop:lookup") + "?page=1", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    second = client.get(reverse("shop:lookup") + "?page=2", HTTP_ACCEPT_LANGUAGE="en").content.decode()

    assert orders[-1].number in first and orders[0].number not in first and "Page 1 of 2" in first
    assert orders[0].number in second and orders[1].number in second and orders[2].number not in second


def _answer(response, typed: str) -> str:
    """The page with what differs by design removed: the CSRF token and the value typed back."""
    page = response.content.decode()
    page = re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", page)
    return page.replace(f'value="{typed}"', "")


def test_every_lookup_miss_gets_the_same_answer(client, settings):
    settings.ORDER_LOOKUP_RATE = "100/m"
    product = ProductFactory()
    stock_product(product, 1)
    order = _orders_for(product, "buyer@example.com", "right-pw", 1)[0]

    misses = {
        typed: _lookup(client, typed, "wrong-pw")
        for typed in ("buyer@example.com", "nobody@example.com", "13900000000", order.number, "20260101000000000000")
    }

    answers = {_answer(response, typed) for typed, response in misses.items()}
    assert {response.status_code for response in misses.values()} == {200}
    assert len(answers) == 1
    assert "No order matches these details and query password." in answers.pop()
    assert not client.session.get("shop.lookup")


def test_an_order_from_before_contact_lookup_is_found_by_number_then_by_contact_too(client):
    product = ProductFactory()
    stock_product(product, 1)
    order = _orders_for(product, "buyer@example.com", "right-pw", 1)[0]
    Order.objects.filter(pk=order.pk).update(lookup_digest="")  # as the migration left older orders

    assert "No order matches" in _lookup(client, "buyer@example.com", "right-pw").content.decode()
    assert _lookup(client, order.number, "right-pw").status_code == 302
    assert order.number in _lookup(client, "buyer@example.com", "right-pw", follow=True).content.decode()


def test_lookup_by_contact_is_rate_limited_per_contact_whatever_the_network(client, settings):
    settings.ORDER_LOOKUP_RATE_CONTACT = "3/h"
    product = ProductFactory()
    stock_product(product, 1)
    _orders_for(product, "buyer@example.com", "right-pw", 1)
    for number in range(3):
        _lookup(client, "buyer@example.com", "guess", REMOTE_ADDR=f"10.0.0.{number}")

    response = _lookup(client, "buyer@example.com", "right-pw", REMOTE_ADDR="10.0.1.1")

    assert response.status_code == 429
    assert "Too many lookups for this email or mobile number" in response.content.decode()
    assert _lookup(client, "other@example.com", "x", REMOTE_ADDR="10.0.1.1").status_code == 200


def test_a_contacts_list_is_not_shown_to_another_browser(client):
    product = ProductFactory()
    stock_product(product, 1)
    order = _orders_for(product, "buyer@example.com", "right-pw", 1)[0]
    _lookup(client, "buyer@example.com", "right-pw")

    elsewhere = Client().get(reverse("shop:lookup") + "?page=1").content.decode()

    assert order.number not in elsewhere


def test_the_order_page_remembers_its_orders_in_this_browser(client):
    product = ProductFactory(name="Netflix 月卡")
    stock_product(product, 2)
    first = checkout(client, product)
    second = checkout(client, product, contact="13800138000")
    client.get(reverse("shop:order", args=[first.access_token]))
    client.get(reverse("shop:order-pay", args=[second.access_token]))

    page = client.get(reverse("shop:lookup"), HTTP_ACCEPT_LANGUAGE="en").content.decode()

    remembered = re.findall(r'id="browser-orders".*?</ul>', page, re.S)[0]
    assert re.findall(r"<code>(\d+)</code>", remembered) == [second.number, first.number]
    assert reverse("shop:order", args=[first.access_token]) in remembered and "Netflix 月卡" in remembered
    assert "Orders from this browser" in page
    assert "Orders from this browser" not in Client().get(reverse("shop:lookup"), HTTP_ACCEPT_LANGUAGE="en").content.decode()


def test_the_browser_orders_cookie_is_signed_http_only_lax_and_long_lived(client, settings):
    settings.SESSION_COOKIE_SECURE = True
    product = ProductFactory()
    stock_product(product, 1)
    order = checkout(client, product)

    response = client.get(reverse("shop:order", args=[order.access_token]))

    cookie = response.cookies[COOKIE_NAME]
    assert cookie["httponly"] and cookie["secure"] and cookie["samesite"] == "Lax"
    assert int(cookie["max-age"]) >= 300 * 86400
    assert str(order.pk) in cookie.value and ":" in cookie.value  # the id, with its signature


@pytest.mark.parametrize(
    "forge",
    [
        lambda value, other_id: value.replace(value.split(":")[0], str(other_id), 1),
        lambda value, other_id: f"{other_id}:forged-signature",
        lambda value, other_id: str(other_id),
        lambda value, other_id: "\x00\xff;;=",
    ],
    ids=["swapped-id", "forged-signature", "unsigned", "garbage"],
)
def test_a_tampered_browser_orders_cookie_shows_nothing(client, forge):
    product = ProductFactory()
    stock_product(product, 2)
    mine = checkout(client, product)
    response = client.get(reverse("shop:order", args=[mine.access_token]))
    someone_elses = _orders_for(product, "victim@example.com", "pw12", 1)[0]

    client.cookies[COOKIE_NAME] = forge(response.cookies[COOKIE_NAME].value, someone_elses.pk)
    page = client.get(reverse("shop:lookup"), HTTP_ACCEPT_LANGUAGE="en")

    assert page.status_code == 200
    assert someone_elses.number not in page.content.decode() and mine.number not in page.content.decode()


def test_the_browser_remembers_a_bounded_number_of_orders(client, settings):
    settings.BROWSER_ORDERS_MAX = 3
    product = ProductFactory()
    stock_product(product, 1)
    orders = _orders_for(product, "buyer@example.com", "pw12", 5)
    for order in orders:
        client.get(reverse("shop:order", args=[order.access_token]))

    page = client.get(reverse("shop:lookup")).content.decode()

    assert all(o.number in page for o in orders[2:]) and not any(o.number in page for o in orders[:2])


# --- Throttling: checkout and payment start --------------------------------------------------


def _checkout_post(client, product, contact, **extra):
    return client.post(
        reverse("shop:product", args=[product.slug]),
        {"quantity": 1, "contact": contact, "query_password": "pw123"},
        HTTP_ACCEPT_LANGUAGE="en",
        **extra,
    )


def test_checkout_is_throttled_per_ip_with_a_friendly_429(client, settings):
    settings.ORDER_CREATE_RATE_IP = "3/m"
    product = ProductFactory()
    stock_product(product, 1)
    for number in range(3):
        assert _checkout_post(client, product, f"b{number}@example.com").status_code == 302

    refused = _checkout_post(client, product, "b9@example.com")

    assert refused.status_code == 429
    assert "Too many orders in a short time" in refused.content.decode()
    assert Order.objects.count() == 3
    assert _checkout_post(client, product, "b9@example.com", REMOTE_ADDR="10.1.1.1").status_code == 302


def test_checkout_is_throttled_per_contact_across_networks(client, settings):
    settings.ORDER_CREATE_RATE_CONTACT = "2/m"
    product = ProductFactory()
    stock_product(product, 1)
    for number in range(2):
        assert _checkout_post(client, product, "buyer@example.com", REMOTE_ADDR=f"10.0.0.{number}").status_code == 302

    refused = _checkout_post(client, product, "BUYER@example.com", REMOTE_ADDR="10.0.0.9")

    assert refused.status_code == 429 and Order.objects.count() == 2


def test_payment_start_is_throttled_per_order(client, settings):
    settings.PAYMENT_START_RATE_ORDER = "3/m"
    product = ProductFactory()
    stock_product(product, 1)
    order = checkout(client, product)
    pay_url = reverse("shop:order-pay", args=[order.access_token])
    for number in range(3):
        assert client.post(pay_url, {"gateway": "sandbox"}, REMOTE_ADDR=f"10.0.0.{number}").status_code == 302

    refused = client.post(pay_url, {"gateway": "sandbox"}, REMOTE_ADDR="10.0.0.9", HTTP_ACCEPT_LANGUAGE="en")

    assert refused.status_code == 429
    assert "Too many payment attempts in a short time" in refused.content.decode()
    assert order.payments.count() == 1  # the three allowed clicks shared one payment


def test_payment_start_is_throttled_per_ip(client, settings):
    settings.PAYMENT_START_RATE_IP = "2/m"
    product = ProductFactory()
    stock_product(product, 3)
    orders = [checkout(client, product, contact=f"b{n}@example.com") for n in range(3)]
    for order in orders[:2]:
        assert client.post(reverse("shop:order-pay", args=[order.access_token]), {"gateway": "sandbox"}).status_code == 302

    refused = client.post(reverse("shop:order-pay", args=[orders[2].access_token]), {"gateway": "sandbox"})

    assert refused.status_code == 429 and not orders[2].payments.exists()


def test_behind_a_trusted_proxy_orders_record_and_limits_key_on_the_forwarded_client(client, settings):
    from kameng.client_ip import trusted_proxies_parse

    settings.TRUSTED_PROXIES = trusted_proxies_parse(["10.5.0.0/16"])
    settings.ORDER_CREATE_RATE_IP = "2/m"
    product = ProductFactory()
    stock_product(product, 1)
    proxy = {"REMOTE_ADDR": "10.5.0.2"}

    for number in range(2):
        assert _checkout_post(client, product, f"a{number}@example.com", HTTP_X_FORWARDED_FOR="198.51.100.1", **proxy).status_code == 302
    assert _checkout_post(client, product, "a9@example.com", HTTP_X_FORWARDED_FOR="198.51.100.1", **proxy).status_code == 429
    assert _checkout_post(client, product, "c@example.com", HTTP_X_FORWARDED_FOR="198.51.100.2", **proxy).status_code == 302
    # A buyer reaching gunicorn directly cannot pick another address with the header.
    assert _checkout_post(client, product, "d@example.com", HTTP_X_FORWARDED_FOR="198.51.100.9", REMOTE_ADDR="203.0.113.5").status_code == 302

    assert sorted(Order.objects.values_list("client_ip", flat=True)) == ["198.51.100.1", "198.51.100.1", "198.51.100.2", "203.0.113.5"]


@pytest.mark.parametrize(
    "language, sandbox_name",
    [("zh-hans", "沙箱（测试支付）"), ("zh-hant", "沙箱（測試付款）"), ("en", "Sandbox (test payments)")],
)
def test_pay_page_names_the_sandbox_in_the_buyers_language(client, language, sandbox_name):
    product = ProductFactory()
    stock_product(product, 1)
    order = checkout(client, product)

    page = client.get(reverse("shop:order-pay", args=[order.access_token]), HTTP_ACCEPT_LANGUAGE=language).content.decode()

    assert sandbox_name in page


@pytest.mark.parametrize(
    "language, too_short, has_nul",
    [("zh-hans", "至少需要 4 个字符（当前 2 个）。", "不能包含空字符（NUL）。"), ("zh-hant", "至少需要 4 個字元（目前 2 個）。", "不能包含空字元（NUL）。")],
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


def test_refused_requests_on_an_order_page_do_not_log_its_token(client, caplog):
    product = ProductFactory()
    stock_product(product, 1)
    order = checkout(client, product)
    strict = Client(enforce_csrf_checks=True)
    # The shop's log handlers carry this filter (settings.LOGGING); pytest's capture handler
    # gets it too, so it shows what the shop's own handlers write.
    caplog.handler.addFilter(SecretPathFilter())

    with caplog.at_level("INFO"):
        refused_csrf = strict.post(reverse("shop:order-resend", args=[order.access_token]))
        unknown_payment = client.get(reverse("shop:order-pay-qr", args=[order.access_token, "NO-SUCH-TRADE"]))

    assert (refused_csrf.status_code, unknown_payment.status_code) == (403, 404)
    assert "CSRF" in caplog.text and "Not Found" in caplog.text
    assert order.access_token not in caplog.text
