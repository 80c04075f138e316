"""WeChat Pay API v3, end to end through HTTP against the offline platform simulator."""

from __future__ import annotations

import json
import socket
import time
from decimal import Decimal

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse

from cardpool.models import CardKey
from payments.gateways.wechatpay import WechatPayGateway, wechatpay_settings_load
from payments.models import Payment, PaymentNotification
from shop.models import ExceptionReason, OrderStatus
from tests.support.factories import ProductFactory, stock_product
from tests.support.payment_platforms import WechatPayPlatform
from tests.support.storefront import checkout

pytestmark = pytest.mark.django_db

ANDROID = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/120.0 Mobile Safari/537.36"


@pytest.fixture
def wechat_order(client, wechat):
    product = ProductFactory(price=Decimal("15.00"))
    keys = stock_product(product, 3)
    return checkout(client, product), keys


def start(client, order, **headers) -> tuple[Payment, str]:
    response = client.post(
        reverse("shop:order-pay", args=[order.access_token]), {"gateway": "wechatpay"}, headers=headers
    )
    assert response.status_code == 302, response.content.decode()[:500]
    return Payment.objects.get(order=order, gateway="wechatpay"), response["Location"]


def notify(client, headers: dict, body: bytes):
    return client.post(
        reverse("payments:notify", args=["wechatpay"]), body, content_type="application/json", headers=headers
    )


def test_desktop_buyer_scans_a_native_pay_qr_code(client, wechat, wechat_order):
    order, _keys = wechat_order

    payment, location = start(client, order)
    page = client.get(location).content.decode()

    assert "<svg" in page and payment.qr_content.startswith("weixin://wxpay/bizpayurl")
    sent = wechat.requests[-1]
    assert sent["path"] == "/v3/pay/transactions/native"
    assert sent["json"]["amount"] == {"total": 1500, "currency": "CNY"}
    assert sent["json"]["notify_url"] == "http://testserver/payments/wechatpay/notify/"
    assert sent["authorization"].startswith(f'WECHATPAY2-SHA256-RSA2048 mchid="{wechat.MCHID}"')


def test_phone_buyer_goes_to_h5_pay(client, wechat, wechat_order):
    order, _keys = wechat_order

    _payment, location = start(client, order, user_agent=ANDROID)

    assert location.startswith("https://wx.tenpay.com/")
    assert wechat.requests[-1]["json"]["scene_info"]["h5_info"] == {"type": "Wap"}


def test_notify_paid_delivers_and_answers_204(client, on_commit, wechat, wechat_order):
    order, keys = wechat_order
    payment, _ = start(client, order)
    headers, body = wechat.notification(out_trade_no=payment.out_trade_no, amount="15.00")

    with on_commit():
        response = notify(client, headers, body)

    assert response.status_code == 204 and response.content == b""
    order.refresh_from_db()
    assert order.status == OrderStatus.DELIVERED
    assert any(k in client.get(reverse("shop:order", args=[order.access_token])).content.decode() for k in keys)


def test_notify_twice_delivers_once(client, on_commit, wechat, wechat_order):
    order, _keys = wechat_order
    payment, _ = start(client, order)
    headers, body = wechat.notification(out_trade_no=payment.out_trade_no, amount="15.00")

    with on_commit():
        assert notify(client, headers, body).status_code == 204
    with on_commit():
        assert notify(client, headers, body).status_code == 204

    assert CardKey.objects.filter(order=order).count() == 1


def _forge(platform, otn):
    headers, body = platform.notification(out_trade_no=otn, amount="15.00")
    return headers, body.replace(b'"summary"', b'"summary2"')


def _other_key(platform, otn):
    return platform.notification(out_trade_no=otn, amount="15.00", apiv3_key="0" * 32)


def _drop_header(name):
    def tamper(platform, otn):
        headers, body = platform.notification(out_trade_no=otn, amount="15.00")
        return {k: v for k, v in headers.items() if k != name}, body

    return tamper


REJECTIONS = {
    "bad-signature": (_forge, "bad signature or undecryptable resource"),
    "tampered-amount": (
        lambda p, o: (lambda h, b: (h, b.replace(b'"ciphertext": "', b'"ciphertext": "A')))(
            *p.notification(out_trade_no=o, amount="15.00")
        ),
        "bad signature or undecryptable resource",
    ),
    "wrong-apiv3-key": (_other_key, "bad signature or undecryptable resource"),
    "wrong-mchid": (lambda p, o: p.notification(out_trade_no=o, amount="15.00", mchid="1900009999"), "wrong mchid"),
    "wrong-appid": (
        lambda p, o: p.notification(out_trade_no=o, amount="15.00", appid="wx0000000000000000"),
        "wrong appid",
    ),
    "unknown-order": (lambda p, o: p.notification(out_trade_no="NOT-OURS", amount="15.00"), "unknown out_trade_no"),
    "stale-timestamp": (
        lambda p, o: p.notification(out_trade_no=o, amount="15.00", timestamp=int(time.time()) - 600),
        "stale notification",
    ),
    "future-timestamp": (
        lambda p, o: p.notification(out_trade_no=o, amount="15.00", timestamp=int(time.time()) + 600),
        "stale notification",
    ),
    "unknown-serial": (
        lambda p, o: p.notification(out_trade_no=o, amount="15.00", serial="5157F09EFDC096DE15EBE81A47057A7232F1B8E1"),
        "unknown Wechatpay-Serial",
    ),
    "non-hex-serial": (
        lambda p, o: p.notification(out_trade_no=o, amount="15.00", serial="ZZZ-not-hex"),
        "malformed Wechatpay-Serial",
    ),
    "missing-signature": (_drop_header("Wechatpay-Signature"), "missing headers: Wechatpay-Signature"),
    "missing-serial": (_drop_header("Wechatpay-Serial"), "missing headers: Wechatpay-Serial"),
    "malformed-body": (lambda p, o: (p.signed_headers("{not json"), b"{not json"), "body is not JSON"),
    "binary-body": (lambda p, o: (p.signed_headers("x"), b"\xff\xfe\x00"), "body is not JSON"),
}


@pytest.mark.parametrize("case", REJECTIONS, ids=list(REJECTIONS))
def test_notify_rejections_answer_4xx_json_and_change_nothing(client, on_commit, wechat, wechat_order, case):
    tamper, reason = REJECTIONS[case]
    order, _keys = wechat_order
    payment, _ = start(client, order)
    calls_before = len(wechat.requests)
    headers, body = tamper(wechat, payment.out_trade_no)

    with on_commit():
        response = notify(client, headers, body)

    assert response.status_code == 400
    assert response.json() == {"code": "FAIL", "message": reason}
    order.refresh_from_db()
    payment.refresh_from_db()
    assert order.status == OrderStatus.PENDING and payment.state == "created"
    assert not CardKey.objects.filter(order=order).exists()
    assert PaymentNotification.objects.get().reason == reason
    assert len(wechat.requests) == calls_before  # no certificate download, no platform call


def test_unknown_serial_does_not_break_the_next_genuine_notification(
    client, on_commit, settings, tmp_path, wechat_order
):
    platform = WechatPayPlatform()
    platform.apply(settings, cert_dir=tmp_path)  # certificate mode, where the SDK would download
    try:
        order, _keys = wechat_order
        payment, _ = start(client, order)
        forged = platform.notification(out_trade_no=payment.out_trade_no, amount="15.00", serial="7A2B" * 10)
        assert notify(client, *forged).status_code == 400

        with on_commit():
            genuine = notify(client, *platform.notification(out_trade_no=payment.out_trade_no, amount="15.00"))

        assert genuine.status_code == 204
        assert not any(r["path"] == "/v3/certificates" for r in platform.requests)
        order.refresh_from_db()
        assert order.status == OrderStatus.DELIVERED
    finally:
        platform.close()


@pytest.mark.parametrize("paid", ["14.99", "15.01"], ids=["underpaid", "overpaid"])
def test_notify_with_another_amount_queues_the_order(client, on_commit, wechat, wechat_order, paid):
    order, _keys = wechat_order
    payment, _ = start(client, order)

    with on_commit():
        assert notify(client, *wechat.notification(out_trade_no=payment.out_trade_no, amount=paid)).status_code == 204

    order.refresh_from_db()
    assert order.status == OrderStatus.EXCEPTION and order.exception_reason == ExceptionReason.AMOUNT_MISMATCH
    assert not CardKey.objects.filter(order=order).exists()


def test_notify_of_an_unpaid_trade_changes_nothing(client, on_commit, wechat, wechat_order):
    order, _keys = wechat_order
    payment, _ = start(client, order)

    with on_commit():
        headers, body = wechat.notification(out_trade_no=payment.out_trade_no, amount="15.00", trade_state="NOTPAY")
        assert notify(client, headers, body).status_code == 204

    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING


def test_notify_makes_no_outbound_connection(client, on_commit, wechat, wechat_order, monkeypatch):
    order, _keys = wechat_order
    payment, _ = start(client, order)
    headers, body = wechat.notification(out_trade_no=payment.out_trade_no, amount="15.00")
    connections = []
    real_connect = socket.socket.connect
    monkeypatch.setattr(
        socket.socket, "connect", lambda sock, address: connections.append(address) or real_connect(sock, address)
    )

    with on_commit():
        assert notify(client, headers, body).status_code == 204

    assert connections == []


def test_query_reports_a_paid_trade_and_an_unknown_one(client, wechat, wechat_order):
    order, _keys = wechat_order
    payment, _ = start(client, order)
    wechat.trades[payment.out_trade_no] = {
        "trade_state": "SUCCESS",
        "transaction_id": "42000X",
        "amount": {"total": 1500},
    }

    status = WechatPayGateway().query(out_trade_no=payment.out_trade_no)

    assert status.paid and status.amount == Decimal("15.00") and status.transaction_id == "42000X"
    assert WechatPayGateway().query(out_trade_no="NEVER-CREATED") is None


@pytest.mark.parametrize(
    "overrides, variable",
    [
        ({"WECHATPAY_APIV3_KEY": ""}, "WECHATPAY_APIV3_KEY"),
        ({"WECHATPAY_APIV3_KEY": "short"}, "WECHATPAY_APIV3_KEY"),
        ({"WECHATPAY_PRIVATE_KEY": "garbage!"}, "WECHATPAY_PRIVATE_KEY"),
        ({"WECHATPAY_PUBLIC_KEY_ID": ""}, "WECHATPAY_PUBLIC_KEY"),
        ({"WECHATPAY_PUBLIC_KEY": "", "WECHATPAY_PUBLIC_KEY_ID": ""}, "WECHATPAY_CERT_DIR"),
        (
            {"WECHATPAY_PUBLIC_KEY": "", "WECHATPAY_PUBLIC_KEY_ID": "", "WECHATPAY_CERT_DIR": "/nonexistent"},
            "WECHATPAY_CERT_DIR",
        ),
    ],
    ids=[
        "no-apiv3-key",
        "short-apiv3-key",
        "malformed-private-key",
        "public-key-without-id",
        "no-verifier",
        "empty-cert-dir",
    ],
)
def test_misconfiguration_names_the_variable(settings, wechat, overrides, variable):
    for name, value in overrides.items():
        setattr(settings, name, value)

    with pytest.raises(ImproperlyConfigured, match=variable):
        wechatpay_settings_load()


def test_rejection_body_is_json(client, wechat):
    response = notify(client, {}, b"{}")

    assert response.status_code == 400 and json.loads(response.content)["code"] == "FAIL"
