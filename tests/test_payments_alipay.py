"""Alipay, end to end through HTTP against the offline platform simulator."""

from __future__ import annotations

import datetime as dt
import socket
from decimal import Decimal
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse

from cardpool.models import CardKey
from payments.gateways.alipay import AlipayGateway, alipay_settings_load
from payments.models import Payment, PaymentNotification
from shop.models import ExceptionReason, OrderStatus
from tests.support.factories import ProductFactory, stock_product
from tests.support.storefront import checkout, post_notification

pytestmark = pytest.mark.django_db

IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"


@pytest.fixture
def alipay_order(client, alipay):
    product = ProductFactory(price=Decimal("48.00"))
    keys = stock_product(product, 3)
    order = checkout(client, product)
    return order, keys


def start(client, order, **headers) -> tuple[Payment, str]:
    response = client.post(reverse("shop:order-pay", args=[order.access_token]), {"gateway": "alipay"}, headers=headers)
    assert response.status_code == 302, response.content.decode()[:500]
    return Payment.objects.get(order=order, gateway="alipay"), response["Location"]


def test_desktop_buyer_goes_to_page_pay_signed_in_china_time(client, settings, alipay, alipay_order):
    settings.TIME_ZONE = "UTC"  # a server clock in UTC must not shift Alipay's timestamp
    order, _keys = alipay_order

    payment, location = start(client, order)

    parts = urlsplit(location)
    params = dict(parse_qsl(parts.query))
    assert location.startswith(alipay.SERVER_URL + "?")
    assert params["method"] == "alipay.trade.page.pay" and params["sign_type"] == "RSA2"
    assert f'"out_trade_no":"{payment.out_trade_no}"' in params["biz_content"].replace(" ", "")
    assert '"total_amount":"48.00"' in params["biz_content"].replace(" ", "")
    stamped = dt.datetime.strptime(params["timestamp"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=ZoneInfo("Asia/Shanghai"))
    assert abs((stamped - dt.datetime.now(dt.UTC)).total_seconds()) < 120
    assert params["notify_url"] == "http://testserver/payments/alipay/notify/"


def test_phone_buyer_goes_to_wap_pay(client, alipay, alipay_order):
    order, _keys = alipay_order

    _payment, location = start(client, order, user_agent=IPHONE)

    assert dict(parse_qsl(urlsplit(location).query))["method"] == "alipay.trade.wap.pay"


def test_qr_mode_shows_a_face_to_face_qr_code(client, settings, alipay, alipay_order):
    settings.ALIPAY_PAY_MODE = "qr"
    order, _keys = alipay_order

    payment, location = start(client, order)
    page = client.get(location)

    assert page.status_code == 200 and "<svg" in page.content.decode()
    assert payment.qr_content.startswith("https://qr.alipay.com/")
    assert alipay.requests[-1]["method"] == "alipay.trade.precreate" and alipay.requests[-1]["signature_ok"]


def test_platform_down_at_checkout_says_so_and_keeps_the_order(client, settings, alipay, alipay_order):
    settings.ALIPAY_PAY_MODE = "qr"
    alipay.down = True
    order, _keys = alipay_order

    response = client.post(
        reverse("shop:order-pay", args=[order.access_token]), {"gateway": "alipay"}, headers={"accept-language": "en"}
    )

    assert response.status_code == 200
    assert "did not answer" in response.content.decode()
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING


def test_notify_paid_delivers_and_answers_success(client, on_commit, alipay, alipay_order):
    order, keys = alipay_order
    payment, _ = start(client, order)

    with on_commit():
        response = post_notification(
            client, alipay.notification(out_trade_no=payment.out_trade_no, amount="48.00"), "alipay"
        )

    assert response.status_code == 200 and response.content == b"success"
    order.refresh_from_db()
    assert order.status == OrderStatus.DELIVERED
    assert any(k in client.get(reverse("shop:order", args=[order.access_token])).content.decode() for k in keys)


def test_notify_twice_delivers_once(client, on_commit, alipay, alipay_order):
    order, _keys = alipay_order
    payment, _ = start(client, order)
    fields = alipay.notification(out_trade_no=payment.out_trade_no, amount="48.00")

    with on_commit():
        assert post_notification(client, fields, "alipay").content == b"success"
    with on_commit():
        assert post_notification(client, fields, "alipay").content == b"success"

    assert CardKey.objects.filter(order=order).count() == 1


def _resign_with_sha1(platform, fields):
    import base64

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    content = "&".join(f"{k}={v}" for k, v in sorted(fields.items()) if k not in ("sign", "sign_type") and v != "")
    # RSA-SHA1 is the legacy scheme a forged notification may claim: the shop must refuse it.
    signature = platform.platform_key.sign(content.encode(), padding.PKCS1v15(), hashes.SHA1())  # noqa: S303
    return {**fields, "sign_type": "RSA", "sign": base64.b64encode(signature).decode()}


REJECTIONS = {
    "bad-signature": (lambda p, f: {**f, "sign": f["sign"][:-8] + "AAAAAAA="}, "bad signature"),
    "tampered-amount": (lambda p, f: {**f, "total_amount": "0.01"}, "bad signature"),
    "rsa-sha1-sign-type": (_resign_with_sha1, "sign_type RSA refused: RSA2 only"),
    "missing-sign": (lambda p, f: {k: v for k, v in f.items() if k != "sign"}, "missing sign"),
    "garbage-sign": (lambda p, f: {**f, "sign": "%%%not-base64"}, "bad signature"),
    "wrong-app-id": (lambda p, f: p.sign({**f, "app_id": "2021009999999999"}), "wrong app_id"),
    "wrong-seller-id": (lambda p, f: p.sign({**f, "seller_id": "2088009999999999"}), "wrong seller_id"),
    "unknown-order": (lambda p, f: p.sign({**f, "out_trade_no": "NOT-OURS-1"}), "unknown out_trade_no"),
    "stale": (
        lambda p, f: p.sign(
            {
                **f,
                "notify_time": (dt.datetime.now(ZoneInfo("Asia/Shanghai")) - dt.timedelta(days=3)).strftime(
                    "%Y-%m-%d %H:%M:%S"
                ),
            }
        ),
        "stale notification",
    ),
    "unknown-status": (lambda p, f: p.sign({**f, "trade_status": "TRADE_PWNED"}), "unknown trade_status TRADE_PWNED"),
}


@pytest.mark.parametrize("case", REJECTIONS, ids=list(REJECTIONS))
def test_notify_rejections_answer_fail_and_change_nothing(client, on_commit, alipay, alipay_order, case):
    tamper, reason = REJECTIONS[case]
    order, _keys = alipay_order
    payment, _ = start(client, order)
    fields = tamper(alipay, alipay.notification(out_trade_no=payment.out_trade_no, amount="48.00"))

    with on_commit():
        response = post_notification(client, fields, "alipay")

    assert response.status_code == 400 and response.content == b"fail"
    order.refresh_from_db()
    payment.refresh_from_db()
    assert order.status == OrderStatus.PENDING and payment.state == "created"
    assert not CardKey.objects.filter(order=order).exists()
    assert PaymentNotification.objects.get().reason == reason


@pytest.mark.parametrize(
    "paid", ["47.99", "48.01", "0.01", "480.00"], ids=["underpaid", "overpaid", "one-fen", "ten-times"]
)
def test_notify_with_another_amount_queues_the_order_and_delivers_nothing(
    client, on_commit, alipay, alipay_order, paid
):
    order, _keys = alipay_order
    payment, _ = start(client, order)

    with on_commit():
        response = post_notification(
            client, alipay.notification(out_trade_no=payment.out_trade_no, amount=paid), "alipay"
        )

    assert response.content == b"success"  # the money is real; Alipay must stop resending
    order.refresh_from_db()
    assert order.status == OrderStatus.EXCEPTION and order.exception_reason == ExceptionReason.AMOUNT_MISMATCH
    assert not CardKey.objects.filter(order=order).exists()


@pytest.mark.parametrize("status", ["WAIT_BUYER_PAY", "TRADE_CLOSED"])
def test_notify_of_an_unpaid_trade_changes_nothing(client, on_commit, alipay, alipay_order, status):
    order, _keys = alipay_order
    payment, _ = start(client, order)

    with on_commit():
        fields = alipay.notification(out_trade_no=payment.out_trade_no, amount="48.00", trade_status=status)
        assert post_notification(client, fields, "alipay").content == b"success"

    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING


def test_success_after_a_waiting_notice_of_the_same_trade_is_delivered(client, on_commit, alipay, alipay_order):
    # A merchant who subscribed to WAIT_BUYER_PAY gets it first, then TRADE_SUCCESS, both with
    # the same trade_no: the second one is not a duplicate of the first.
    order, _keys = alipay_order
    payment, _ = start(client, order)
    waiting = alipay.notification(
        out_trade_no=payment.out_trade_no, amount="48.00", trade_no="T-SAME", trade_status="WAIT_BUYER_PAY"
    )
    paid = alipay.notification(out_trade_no=payment.out_trade_no, amount="48.00", trade_no="T-SAME")
    finished = alipay.notification(
        out_trade_no=payment.out_trade_no, amount="48.00", trade_no="T-SAME", trade_status="TRADE_FINISHED"
    )

    with on_commit():
        for fields in (waiting, paid, finished, paid):
            assert post_notification(client, fields, "alipay").content == b"success"

    order.refresh_from_db()
    assert order.status == OrderStatus.DELIVERED
    assert CardKey.objects.filter(order=order).count() == 1
    assert PaymentNotification.objects.filter(out_trade_no=payment.out_trade_no).count() == 2  # waiting, paid (×3)


def test_notify_makes_no_outbound_connection(client, on_commit, alipay, alipay_order, monkeypatch):
    order, _keys = alipay_order
    payment, _ = start(client, order)
    fields = alipay.notification(out_trade_no=payment.out_trade_no, amount="48.00")
    connections = []
    real_connect = socket.socket.connect

    def recording_connect(sock, address):
        connections.append(address)
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", recording_connect)
    with on_commit():
        assert post_notification(client, fields, "alipay").content == b"success"

    assert connections == []


def test_query_reports_a_paid_trade_and_an_unknown_one(alipay, alipay_order, client):
    order, _keys = alipay_order
    payment, _ = start(client, order)
    alipay.trades[payment.out_trade_no] = {
        "trade_status": "TRADE_SUCCESS",
        "total_amount": "48.00",
        "trade_no": "2026X1",
    }

    status = AlipayGateway().query(out_trade_no=payment.out_trade_no)

    assert status.paid and status.amount == Decimal("48.00") and status.transaction_id == "2026X1"
    assert AlipayGateway().query(out_trade_no="NEVER-CREATED") is None
    assert all(r["signature_ok"] for r in alipay.requests)


@pytest.mark.parametrize(
    "overrides, variable",
    [
        ({"ALIPAY_APP_PRIVATE_KEY": ""}, "ALIPAY_APP_PRIVATE_KEY"),
        ({"ALIPAY_PUBLIC_KEY": ""}, "ALIPAY_PUBLIC_KEY"),
        (
            {"ALIPAY_APP_PRIVATE_KEY": "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----"},
            "ALIPAY_APP_PRIVATE_KEY",
        ),
        ({"ALIPAY_PUBLIC_KEY": "MIIBIjANBg"}, "ALIPAY_PUBLIC_KEY"),
        ({"ALIPAY_PAY_MODE": "sometimes"}, "ALIPAY_PAY_MODE"),
        ({"ALIPAY_SERVER_URL": "https://openapi.alipay.com:8443/gateway.do"}, "ALIPAY_SERVER_URL"),
    ],
    ids=["no-private-key", "no-public-key", "malformed-private-key", "malformed-public-key", "bad-mode", "port"],
)
def test_misconfiguration_names_the_variable(settings, alipay, overrides, variable):
    for name, value in overrides.items():
        setattr(settings, name, value)

    with pytest.raises(ImproperlyConfigured, match=variable):
        alipay_settings_load()


def test_return_page_shows_the_real_status_and_confirms_nothing(client, alipay, alipay_order):
    order, keys = alipay_order
    payment, _ = start(client, order)
    # What Alipay appends to return_url after the buyer pays: signed, but never trusted here.
    returned = alipay.notification(out_trade_no=payment.out_trade_no, amount="48.00")

    page = client.get(reverse("shop:order", args=[order.access_token]), returned).content.decode()

    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING and not any(k in page for k in keys)
    assert not PaymentNotification.objects.exists()
