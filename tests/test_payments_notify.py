"""The sandbox notify endpoint, through HTTP: verified once, everything else refused."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from django.core import mail
from django.urls import reverse

from cardpool.models import CardKey
from payments.gateways.sandbox import sandbox_secret, sandbox_signature
from payments.models import NotificationVerdict, Payment, PaymentNotification
from shop.models import ExceptionReason, Order, OrderStatus
from tests.support.factories import ProductFactory, stock_product
from tests.support.platforms import sandbox_notification
from tests.support.storefront import checkout, post_notification, sandbox_pay_page, start_sandbox_payment

pytestmark = pytest.mark.django_db


@pytest.fixture
def pending_payment(client):
    product = ProductFactory(price=Decimal("12.50"))
    keys = stock_product(product, 5)
    order = checkout(client, product, quantity=2)
    payment = start_sandbox_payment(client, order)
    return product, keys, order, payment


def test_notify_paid_delivers_keys_to_the_order_page(client, on_commit, pending_payment):
    product, keys, order, payment = pending_payment

    with on_commit():
        response = post_notification(client, sandbox_notification(out_trade_no=payment.out_trade_no, amount="25.00"))

    assert response.status_code == 200 and response.content == b"success"
    order.refresh_from_db()
    assert order.status == OrderStatus.DELIVERED
    page = client.get(reverse("shop:order", args=[order.access_token])).content.decode()
    shown = [k for k in keys if k in page]
    assert len(shown) == 2
    assert product.usage_instructions in page
    assert len(mail.outbox) == 1 and all(k in mail.outbox[0].body for k in shown)


def test_notify_twice_delivers_once(client, on_commit, pending_payment):
    _product, _keys, order, payment = pending_payment
    fields = sandbox_notification(out_trade_no=payment.out_trade_no, amount="25.00")

    with on_commit():
        first = post_notification(client, fields)
    with on_commit():
        second = post_notification(client, fields)

    assert first.content == second.content == b"success"
    assert CardKey.objects.filter(order=order).count() == 2
    ledger = PaymentNotification.objects.get(transaction_id=fields["trade_no"])
    assert ledger.times_received == 2 and ledger.verdict == NotificationVerdict.ACCEPTED
    assert len(mail.outbox) == 1


def test_notify_with_new_transaction_id_for_a_paid_payment_changes_nothing(client, on_commit, pending_payment):
    _product, _keys, order, payment = pending_payment
    with on_commit():
        post_notification(client, sandbox_notification(out_trade_no=payment.out_trade_no, amount="25.00"))
    with on_commit():
        replay = post_notification(client, sandbox_notification(out_trade_no=payment.out_trade_no, amount="25.00"))

    assert replay.content == b"success"
    assert CardKey.objects.filter(order=order).count() == 2


@pytest.mark.parametrize(
    "tamper, reason",
    [
        (lambda f: f.update(sign="0" * 64), "bad signature"),
        (lambda f: f.update(total_amount="0.01"), "bad signature"),
        (lambda f: f.pop("sign"), "missing fields: sign"),
        (lambda f: f.update(sign=""), "missing fields: sign"),
        (lambda f: f.pop("out_trade_no"), "missing fields: out_trade_no"),
    ],
    ids=["forged-signature", "tampered-amount", "no-signature", "empty-signature", "missing-field"],
)
def test_notify_tampered_is_refused_and_changes_nothing(client, on_commit, pending_payment, tamper, reason):
    _product, _keys, order, payment = pending_payment
    fields = sandbox_notification(out_trade_no=payment.out_trade_no, amount="25.00")
    tamper(fields)

    with on_commit():
        response = post_notification(client, fields)

    assert response.status_code == 400 and response.content == b"fail"
    order.refresh_from_db()
    payment.refresh_from_db()
    assert order.status == OrderStatus.PENDING and payment.state == "created"
    assert not CardKey.objects.filter(order=order).exists()
    assert PaymentNotification.objects.get().reason == reason


def test_notify_signed_with_another_secret_is_refused(client, on_commit, pending_payment):
    _product, _keys, order, payment = pending_payment
    fields = sandbox_notification(out_trade_no=payment.out_trade_no, amount="25.00", secret="guessed")

    assert post_notification(client, fields).status_code == 400
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING


def test_notify_stale_timestamp_is_refused(client, pending_payment):
    _product, _keys, order, payment = pending_payment
    fields = sandbox_notification(out_trade_no=payment.out_trade_no, amount="25.00", timestamp=int(time.time()) - 3600)

    response = post_notification(client, fields)

    assert response.status_code == 400
    assert PaymentNotification.objects.get().reason == "stale notification"


def test_notify_wrong_merchant_is_refused(client, pending_payment):
    _product, _keys, _order, payment = pending_payment
    fields = sandbox_notification(out_trade_no=payment.out_trade_no, amount="25.00", merchant_id="someone-else")

    assert post_notification(client, fields).status_code == 400
    assert PaymentNotification.objects.get().reason == "wrong merchant"


def test_notify_unknown_trade_is_refused(client, pending_payment):
    fields = sandbox_notification(out_trade_no="NOSUCHTRADE", amount="25.00")

    assert post_notification(client, fields).status_code == 400
    assert PaymentNotification.objects.get().reason == "unknown out_trade_no"


def test_notify_malformed_amount_is_refused(client, pending_payment):
    _product, _keys, _order, payment = pending_payment
    fields = sandbox_notification(out_trade_no=payment.out_trade_no, amount="25.00")
    fields["total_amount"] = "NaN"
    import hashlib
    import hmac

    from tests.support.platforms import SANDBOX_SECRET

    names = [k for k in fields if k != "sign"]
    fields["sign"] = hmac.new(
        SANDBOX_SECRET.encode(), "&".join(f"{k}={fields[k]}" for k in sorted(names)).encode(), hashlib.sha256
    ).hexdigest()

    assert post_notification(client, fields).status_code == 400
    assert PaymentNotification.objects.get().reason == "bad amount"


def test_notify_waiting_status_is_acknowledged_without_paying(client, on_commit, pending_payment):
    _product, _keys, order, payment = pending_payment
    fields = sandbox_notification(out_trade_no=payment.out_trade_no, amount="25.00", trade_status="WAIT_BUYER_PAY")

    with on_commit():
        assert post_notification(client, fields).content == b"success"

    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING


def test_notify_with_a_different_amount_goes_to_the_exception_queue(client, on_commit, pending_payment):
    _product, _keys, order, payment = pending_payment

    with on_commit():
        response = post_notification(client, sandbox_notification(out_trade_no=payment.out_trade_no, amount="0.01"))

    assert response.content == b"success"  # the money arrived; the platform must stop resending
    order.refresh_from_db()
    payment.refresh_from_db()
    assert order.status == OrderStatus.EXCEPTION and order.exception_reason == ExceptionReason.AMOUNT_MISMATCH
    assert payment.state == "mismatched" and payment.paid_amount == Decimal("0.01")
    assert not CardKey.objects.filter(order=order).exists()


def test_notify_for_an_expired_order_goes_to_the_exception_queue(client, on_commit, pending_payment):
    _product, _keys, order, payment = pending_payment
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.EXPIRED)

    with on_commit():
        response = post_notification(client, sandbox_notification(out_trade_no=payment.out_trade_no, amount="25.00"))

    assert response.content == b"success"
    order.refresh_from_db()
    assert order.status == OrderStatus.EXCEPTION and order.exception_reason == ExceptionReason.PAID_AFTER_EXPIRY
    assert not CardKey.objects.filter(order=order).exists()


def test_notify_when_sandbox_is_disabled_is_refused(client, settings, pending_payment):
    _product, _keys, order, payment = pending_payment
    settings.PAYMENTS_SANDBOX_ENABLED = False

    response = post_notification(client, sandbox_notification(out_trade_no=payment.out_trade_no, amount="25.00"))

    assert response.status_code == 400  # a public order is never paid by a disabled gateway
    assert Payment.objects.get(pk=payment.pk).state == "created"


def test_notify_to_an_unknown_gateway_is_not_found(client):
    assert post_notification(client, {"a": "b"}, gateway="paypal").status_code == 404


def test_notify_get_is_not_allowed(client):
    assert client.get(reverse("payments:notify", args=["sandbox"])).status_code == 405


def test_notify_with_oversized_identifiers_is_refused_cleanly(client, pending_payment):
    _product, _keys, order, payment = pending_payment
    fields = sandbox_notification(out_trade_no=payment.out_trade_no, amount="25.00", trade_no="T" * 200)

    response = post_notification(client, fields)

    assert response.status_code == 400
    assert PaymentNotification.objects.get().reason == "identifier too long"


def test_notify_with_garbage_body_is_refused_cleanly(client):
    response = client.post(
        reverse("payments:notify", args=["sandbox"]), data=b"\xff\xfe<xml>", content_type="application/octet-stream"
    )

    assert response.status_code == 400 and response.content == b"fail"


def test_notify_with_a_form_that_is_not_utf8_is_refused_cleanly(client):
    response = client.post(
        reverse("payments:notify", args=["sandbox"]),
        data=b"sign=\xff\xfe&out_trade_no=%FF%FE",
        content_type="application/x-www-form-urlencoded",
    )

    assert response.status_code == 400 and response.content == b"fail"
    assert PaymentNotification.objects.get().reason.startswith("missing fields")


def test_notify_with_thousands_of_form_fields_is_refused_and_not_recorded(client):
    body = "&".join(f"field{n}=x" for n in range(5000))

    response = client.post(
        reverse("payments:notify", args=["sandbox"]), data=body, content_type="application/x-www-form-urlencoded"
    )

    assert response.status_code == 400
    assert not PaymentNotification.objects.exists()


def test_staff_test_mode_buys_with_the_sandbox_in_production_and_is_left_out_of_sales(
    admin_client, client, on_commit, settings
):
    settings.PAYMENTS_SANDBOX_ENABLED = False
    settings.PAYMENTS_SANDBOX_SECRET = ""
    product = ProductFactory(price=Decimal("20.00"))
    keys = stock_product(product, 2)
    buyer_order = checkout(client, product)
    assert "Sandbox" not in client.get(reverse("shop:order-pay", args=[buyer_order.access_token])).content.decode()
    staff_order = checkout(admin_client, product)

    page = sandbox_pay_page(admin_client, staff_order)
    with on_commit():
        response = post_notification(client, dict(page.context["fields"]))

    assert response.content == b"success"
    staff_order.refresh_from_db()
    assert staff_order.is_test and staff_order.status == OrderStatus.DELIVERED
    assert any(
        k in admin_client.get(reverse("shop:order", args=[staff_order.access_token])).content.decode() for k in keys
    )
    dashboard = admin_client.get(reverse("admin:index")).context["sales_figures"]
    assert dashboard["today"]["orders"] == 0


def test_sandbox_notification_for_a_public_order_is_refused_while_the_sandbox_is_off(admin_client, client, settings):
    settings.PAYMENTS_SANDBOX_ENABLED = False
    settings.PAYMENTS_SANDBOX_SECRET = ""
    product = ProductFactory()
    stock_product(product, 1)
    staff_order = checkout(admin_client, product)
    fields = dict(sandbox_pay_page(admin_client, staff_order).context["fields"])
    public = checkout(client, product)
    public_payment = Payment.objects.create(
        order=public, gateway="sandbox", out_trade_no="PUBLIC1", amount=public.total
    )

    forged = {**fields, "out_trade_no": public_payment.out_trade_no, "trade_no": "SBXOTHER"}
    forged["sign"] = sandbox_signature(forged, sandbox_secret())  # even with the server's own key

    assert post_notification(client, forged).status_code == 400
    assert PaymentNotification.objects.get(out_trade_no="PUBLIC1").reason == "gateway disabled"
    assert Order.objects.get(pk=public.pk).status == OrderStatus.PENDING
