"""Requests an attacker sends, against gunicorn with production settings and through the test
client: malformed paths, forged and replayed notifications, another order's token, posts without
CSRF. Every one gets a clean 4xx (or the platform's "fail"), changes nothing, and never a 500."""

from __future__ import annotations

import pytest
import requests
from django.urls import reverse

from payments.models import Payment
from shop.models import Order, OrderStatus
from tests.support.factories import OrderFactory, ProductFactory, stock_product
from tests.support.platforms import sandbox_notification
from tests.support.storefront import checkout, sandbox_pay_page
from tests.support.waiting import wait_until

NUL_PATHS = [
    "/order/abc%00/",
    "/order/abc%00/pay/",
    "/order/abc%00/status/",
    "/order/abc%00/pay/X%00/",
    "/s/abc%00.x/",
    "/s/2026%00.x/",
    "/payments/sandbox/pay/abc%00/",
    "/p/abc%00/",
    "/%00",
    "/static/%00.css",
]
MALFORMED_PATHS = [
    "/order/%ff%fe/",  # not UTF-8
    "/order/" + "A" * 2000 + "/",
    "/s/no-dot/",
    "/s/.x/",
    "/s/" + "9" * 300 + ".x/",
    "/payments/sandbox/pay/NOSUCHTRADE/",
    "/payments/sandbox/pay/NOSUCHTRADE/?return_url=http://evil.example/&sign=00",
]


@pytest.fixture(scope="module")
def shop(django_db_setup, django_db_blocker, tmp_path_factory):
    from tests.support.processes import shop_start

    with django_db_blocker.unblock():
        started = shop_start(tmp_path_factory.mktemp("hostile"), beat=False, web_workers=1)
    yield started
    started.stop()


def _no_server_errors(shop) -> None:
    log = shop.web.log()
    assert '" 500 ' not in log and "Internal Server Error" not in log, log[-3000:]


@pytest.mark.django_db
@pytest.mark.parametrize("path", NUL_PATHS + MALFORMED_PATHS)
def test_malformed_path_answers_404_through_the_test_client(client, path):
    assert client.get(path).status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/order/abc%00/resend/", "/order/abc%00/cancel/", "/order/abc%00/pay/"])
def test_post_to_a_nul_path_answers_404(client, path):
    assert client.post(path, {"gateway": "sandbox"}).status_code == 404


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_malformed_paths_answer_404_through_gunicorn(shop):
    for path in NUL_PATHS + MALFORMED_PATHS:
        response = requests.get(shop.url + path, timeout=10, allow_redirects=False)
        assert response.status_code == 404, (path, response.status_code)
    assert requests.post(shop.url + "/order/abc%00/resend/", timeout=10).status_code == 404
    assert requests.post(shop.url + "/payments/nosuchgateway/notify/", timeout=10).status_code == 404
    assert requests.get(shop.url + "/", headers={"Host": "evil.example"}, timeout=10).status_code == 400
    too_big = b"a=" + b"x" * (3 * 1024 * 1024)
    assert (
        requests.post(
            shop.url + "/payments/sandbox/notify/",
            data=too_big,
            timeout=30,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ).status_code
        == 400
    )
    # Longer than gunicorn's request line: refused before Django.
    assert requests.get(shop.url + "/order/" + "A" * 5000 + "/", timeout=10).status_code == 414
    _no_server_errors(shop)


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_forged_replayed_and_foreign_requests_through_gunicorn_change_nothing(shop):
    product = ProductFactory()
    stock_product(product, 2)
    order = OrderFactory(product=product)
    other = OrderFactory(product=product)
    payment = Payment.objects.create(
        order=order, gateway="sandbox", out_trade_no=order.number + "AB12CD34", amount=order.total
    )
    notify = shop.url + "/payments/sandbox/notify/"
    fields = sandbox_notification(out_trade_no=payment.out_trade_no, amount=order.total)

    refused = [
        requests.post(notify, data={**fields, "sign": "0" * 64}, timeout=10),  # forged signature
        requests.post(notify, data={**fields, "sign": "签名" * 32}, timeout=10),  # not even ASCII (was a 500)
        requests.post(notify, data={**fields, "total_amount": "0.01"}, timeout=10),  # changed after signing
        requests.post(
            notify,
            data=sandbox_notification(out_trade_no=payment.out_trade_no, amount=order.total, secret="guess"),
            timeout=10,
        ),
        requests.post(
            notify,
            data=sandbox_notification(out_trade_no=payment.out_trade_no, amount=order.total, timestamp=1),
            timeout=10,
        ),
        requests.post(notify, data=sandbox_notification(out_trade_no="NOSUCHTRADE", amount="1.00"), timeout=10),
        requests.post(
            notify,
            data=b"\xff\xfe\x00garbage",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout=10,
        ),
        requests.post(notify, json={"out_trade_no": payment.out_trade_no}, timeout=10),
        requests.post(notify, files={"sign": ("x", b"\x00")}, timeout=10),
    ]
    assert [r.status_code for r in refused] == [400] * len(refused)
    assert {r.text for r in refused} == {"fail"}
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING
    assert requests.get(notify, timeout=10).status_code == 405

    # The genuine notice pays once; replaying it pays nothing more.
    assert requests.post(notify, data=fields, timeout=10).text == "success"
    assert requests.post(notify, data=fields, timeout=10).text == "success"
    wait_until(lambda: Order.objects.get(pk=order.pk).status == OrderStatus.DELIVERED, message="the delivery")
    assert Order.objects.get(pk=order.pk).card_keys.count() == 1

    # Another order's token opens nothing of this one; a made-up token opens nothing at all.
    for path in (
        f"/order/{other.access_token}/pay/{payment.out_trade_no}/",
        f"/order/{'x' * 43}/",
        f"/order/{'x' * 43}/status/",
        f"/payments/sandbox/pay/{payment.out_trade_no}/",
    ):
        assert requests.get(shop.url + path, timeout=10, allow_redirects=False).status_code == 404, path

    # State-changing posts without the CSRF token (from a page of another site) are refused.
    for path, data in (
        (f"/order/{order.access_token}/resend/", {}),
        (f"/order/{other.access_token}/cancel/", {}),
        (f"/order/{other.access_token}/pay/", {"gateway": "sandbox"}),
        ("/lookup/", {"number": order.number, "query_password": "secret-pw"}),
        ("/i18n/setlang/", {"language": "en"}),
        (f"/p/{product.slug}/", {"quantity": 1, "contact": "a@example.com", "query_password": "pw"}),
    ):
        response = requests.post(
            shop.url + path, data=data, headers={"Origin": "https://evil.example"}, timeout=10, allow_redirects=False
        )
        assert response.status_code == 403, (path, response.status_code)
    assert Order.objects.get(pk=other.pk).status == OrderStatus.PENDING
    assert not Payment.objects.filter(order=other).exists()
    _no_server_errors(shop)


@pytest.mark.django_db
def test_sandbox_pay_page_opens_only_from_the_signed_link_the_shop_gave(client):
    product = ProductFactory()
    stock_product(product, 2)
    order = checkout(client, product)
    other = checkout(client, product)
    page = sandbox_pay_page(client, order)
    assert page.status_code == 200
    payment = Payment.objects.get(order=order)
    other_page = client.post(reverse("shop:order-pay", args=[other.access_token]), {"gateway": "sandbox"})["Location"]
    other_query = other_page.partition("?")[2]

    bare = client.get(reverse("payments:sandbox-pay", args=[payment.out_trade_no]))
    foreign = client.get(f"{reverse('payments:sandbox-pay', args=[payment.out_trade_no])}?{other_query}")

    assert bare.status_code == 404 and foreign.status_code == 404
    assert order.access_token not in bare.content.decode() + foreign.content.decode()
    assert other.access_token not in page.content.decode()
