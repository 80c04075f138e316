"""补单, expiry against the platform, refunds and double payments, through the public paths."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

import psycopg2
import pytest
from django.db import connection, connections, transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from cardpool.models import CardKey
from payments.gateways.base import GatewayError
from payments.models import Payment, PaymentNotification, PaymentState, Refund, RefundState
from payments.services import RefundRefused, refund_request
from payments.tasks import orders_expire, payments_reconcile
from shop.lock_objects import order_lock
from shop.models import ExceptionReason, Order, OrderStatus
from shop.services import order_transition
from tests.support.factories import ProductFactory, stock_product
from tests.support.races import run_together
from tests.support.storefront import checkout, post_notification
from tests.support.waiting import wait_until

pytestmark = pytest.mark.django_db


@pytest.fixture
def product():
    product = ProductFactory(price=Decimal("30.00"))
    stock_product(product, 5)
    return product


def start(client, order, gateway="alipay") -> Payment:
    response = client.post(reverse("shop:order-pay", args=[order.access_token]), {"gateway": gateway})
    assert response.status_code == 302
    return Payment.objects.filter(order=order, gateway=gateway).latest("created_at")


def age(payment, minutes=5):
    Payment.objects.filter(pk=payment.pk).update(created_at=timezone.now() - timedelta(minutes=minutes))


def paid_at_alipay(alipay, payment, trade_no="2026TRADE1"):
    alipay.trades[payment.out_trade_no] = {
        "trade_status": "TRADE_SUCCESS",
        "total_amount": f"{payment.amount:.2f}",
        "trade_no": trade_no,
    }


def queue_action(admin_client, on_commit, action, order):
    with on_commit():
        return admin_client.post(
            reverse("admin:shop_exceptionorder_changelist"),
            {"action": action, "_selected_action": [order.pk]},
            follow=True,
        )


def test_lost_notification_is_recovered_by_asking_the_platform(client, on_commit, alipay, product):
    order = checkout(client, product)
    payment = start(client, order)
    paid_at_alipay(alipay, payment)
    assert payments_reconcile()["paid"] == 0  # too young: the notification may still come
    age(payment)

    with on_commit():
        assert payments_reconcile()["paid"] == 1

    order.refresh_from_db()
    assert order.status == OrderStatus.DELIVERED and CardKey.objects.filter(order=order).count() == 1
    assert PaymentNotification.objects.get().transaction_id == "2026TRADE1"


def test_notification_after_reconciliation_delivers_nothing_more(client, on_commit, alipay, product):
    order = checkout(client, product)
    payment = start(client, order)
    paid_at_alipay(alipay, payment)
    age(payment)
    with on_commit():
        payments_reconcile()

    with on_commit():
        fields = alipay.notification(out_trade_no=payment.out_trade_no, amount="30.00", trade_no="2026TRADE1")
        assert post_notification(client, fields, "alipay").content == b"success"

    assert CardKey.objects.filter(order=order).count() == 1
    assert PaymentNotification.objects.get().times_received == 2


def test_order_paid_at_the_platform_is_delivered_not_expired(client, on_commit, wechat, product):
    order = checkout(client, product)
    payment = start(client, order, "wechatpay")
    wechat.trades[payment.out_trade_no] = {
        "trade_state": "SUCCESS",
        "transaction_id": "4200X",
        "amount": {"total": 3000},
    }
    Order.objects.filter(pk=order.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    with on_commit():
        assert orders_expire() == 0

    order.refresh_from_db()
    assert order.status == OrderStatus.DELIVERED


def test_unpaid_order_expires_and_its_trade_is_closed(client, on_commit, alipay, wechat, product):
    order = checkout(client, product)
    ali = start(client, order, "alipay")
    wx = start(client, order, "wechatpay")
    alipay.trades[ali.out_trade_no] = {"trade_status": "WAIT_BUYER_PAY", "total_amount": "30.00", "trade_no": "T1"}
    Order.objects.filter(pk=order.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    with on_commit():
        assert orders_expire() == 1

    order.refresh_from_db()
    assert order.status == OrderStatus.EXPIRED
    assert set(Payment.objects.values_list("state", flat=True)) == {PaymentState.CLOSED}
    assert ali.out_trade_no in alipay.closed and wx.out_trade_no in wechat.closed


def test_expiry_waits_while_the_platform_cannot_answer(client, on_commit, alipay, product, settings):
    order = checkout(client, product)
    start(client, order)
    alipay.down = True
    Order.objects.filter(pk=order.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert orders_expire() == 0
    Order.objects.filter(pk=order.pk).update(
        expires_at=timezone.now() - timedelta(minutes=settings.ORDER_EXPIRE_GRACE_MINUTES + 1)
    )
    assert orders_expire() == 1


def test_payment_after_expiry_is_queued_then_refunded_once(admin_client, client, on_commit, alipay, product):
    order = checkout(client, product)
    payment = start(client, order)
    Order.objects.filter(pk=order.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    orders_expire()
    fields = alipay.notification(out_trade_no=payment.out_trade_no, amount="30.00", trade_no="LATE1")
    paid_at_alipay(alipay, payment, trade_no="LATE1")
    with on_commit():
        assert post_notification(client, fields, "alipay").content == b"success"
    order.refresh_from_db()
    assert order.status == OrderStatus.EXCEPTION and order.exception_reason == ExceptionReason.PAID_AFTER_EXPIRY

    queue_action(admin_client, on_commit, "refund", order)
    second = queue_action(admin_client, on_commit, "refund", order)

    order.refresh_from_db()
    assert order.status == OrderStatus.REFUNDED
    assert len(alipay.refunds) == 1 and Refund.objects.get().state == RefundState.SUCCEEDED
    assert second.status_code == 200 and Refund.objects.count() == 1
    assert list(order.events.filter(type__startswith="payments.refund").values_list("type", flat=True)) == [
        "payments.refund.requested",
        "payments.refund.succeeded",
    ]


def test_payment_after_expiry_can_be_delivered_anyway(admin_client, client, on_commit, alipay, product):
    order = checkout(client, product)
    payment = start(client, order)
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.EXPIRED)
    with on_commit():
        post_notification(client, alipay.notification(out_trade_no=payment.out_trade_no, amount="30.00"), "alipay")

    queue_action(admin_client, on_commit, "retry_delivery", order)

    order.refresh_from_db()
    assert order.status == OrderStatus.DELIVERED and CardKey.objects.filter(order=order).count() == 1


def test_refund_is_never_issued_twice(client, on_commit, wechat, product):
    order = checkout(client, product)
    payment = start(client, order, "wechatpay")
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.EXPIRED)
    with on_commit():
        assert post_notification_wechat(client, wechat, payment).status_code == 204

    refund_request(payment_id=payment.pk, actor="staff")
    with pytest.raises(RefundRefused):
        refund_request(payment_id=payment.pk, actor="staff")

    assert len(wechat.refunds) == 1 and Refund.objects.count() == 1
    assert Order.objects.get(pk=order.pk).status == OrderStatus.REFUNDED


def test_failed_refund_is_retried_with_the_same_refund_number(client, on_commit, alipay, product):
    order = checkout(client, product)
    payment = start(client, order)
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.EXPIRED)
    paid_at_alipay(alipay, payment)
    with on_commit():
        post_notification(client, alipay.notification(out_trade_no=payment.out_trade_no, amount="30.00"), "alipay")
    alipay.down = True
    with pytest.raises(GatewayError):
        refund_request(payment_id=payment.pk, actor="staff")
    alipay.down = False

    refund = refund_request(payment_id=payment.pk, actor="staff")

    attempts = list(Refund.objects.order_by("created_at").values_list("state", "out_refund_no"))
    assert attempts == [(RefundState.FAILED, refund.out_refund_no), (RefundState.SUCCEEDED, refund.out_refund_no)]
    assert list(alipay.refunds) == [refund.out_refund_no]


def post_notification_wechat(client, wechat, payment, amount=None):
    headers, body = wechat.notification(out_trade_no=payment.out_trade_no, amount=amount or payment.amount)
    return client.post(
        reverse("payments:notify", args=["wechatpay"]), body, content_type="application/json", headers=headers
    )


def test_paid_by_alipay_and_wechat_delivers_once_and_queues_the_second_for_refund(
    admin_client, client, on_commit, alipay, wechat, product
):
    order = checkout(client, product)
    ali = start(client, order, "alipay")
    wx = start(client, order, "wechatpay")
    with on_commit():
        post_notification(client, alipay.notification(out_trade_no=ali.out_trade_no, amount="30.00"), "alipay")
    with on_commit():
        assert post_notification_wechat(client, wechat, wx).status_code == 204

    order.refresh_from_db()
    assert CardKey.objects.filter(order=order).count() == 1
    assert order.status == OrderStatus.EXCEPTION and order.exception_reason == ExceptionReason.DUPLICATE_PAYMENT
    assert Payment.objects.get(pk=wx.pk).state == PaymentState.DUPLICATE

    queue_action(admin_client, on_commit, "refund", order)

    order.refresh_from_db()
    assert order.status == OrderStatus.DELIVERED
    assert list(wechat.refunds) == [f"R{wx.out_trade_no}"] and not alipay.refunds
    assert Payment.objects.get(pk=ali.pk).state == PaymentState.SUCCEEDED


def test_staff_query_the_platform_now_confirms_a_paid_order(admin_client, client, on_commit, alipay, product):
    order = checkout(client, product)
    payment = start(client, order)
    paid_at_alipay(alipay, payment)

    with on_commit():
        admin_client.post(
            reverse("admin:shop_order_changelist"), {"action": "query_platform", "_selected_action": [order.pk]}
        )

    order.refresh_from_db()
    assert order.status == OrderStatus.DELIVERED


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_notification_racing_the_reconciliation_query_confirms_once(alipay, product):
    client = Client()
    order = checkout(client, product)
    payment = start(client, order)
    paid_at_alipay(alipay, payment, trade_no="RACE1")
    age(payment)
    fields = alipay.notification(out_trade_no=payment.out_trade_no, amount="30.00", trade_no="RACE1")

    answer, _ = run_together(lambda: post_notification(Client(), fields, "alipay").content, payments_reconcile)

    assert answer == b"success"
    order.refresh_from_db()
    assert order.status == OrderStatus.DELIVERED
    assert CardKey.objects.filter(order=order).count() == 1
    assert order.events.filter(type="shop.order.paid").count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_same_alipay_notification_ten_times_concurrently_delivers_once(alipay, product):
    client = Client()
    order = checkout(client, product)
    payment = start(client, order)
    fields = alipay.notification(out_trade_no=payment.out_trade_no, amount="30.00")

    answers = run_together(*[lambda: post_notification(Client(), fields, "alipay").content] * 10)

    assert answers == [b"success"] * 10
    assert CardKey.objects.filter(order=order).count() == 1
    assert PaymentNotification.objects.get().times_received == 10


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_wechat_notification_racing_the_expiry_task_ends_delivered_or_queued(wechat):
    product = ProductFactory(price=Decimal("30.00"))
    stock_product(product, 10)
    outcomes = []
    for _ in range(8):
        client = Client()
        order = checkout(client, product)
        payment = start(client, order, "wechatpay")
        Order.objects.filter(pk=order.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
        headers, body = wechat.notification(out_trade_no=payment.out_trade_no, amount=payment.amount)
        notify_url = reverse("payments:notify", args=["wechatpay"])

        status, _expired = run_together(
            lambda url=notify_url, body=body, headers=headers: (
                Client().post(url, body, content_type="application/json", headers=headers).status_code
            ),
            orders_expire,
        )

        assert status == 204
        order.refresh_from_db()
        keys = CardKey.objects.filter(order=order).count()
        if order.status == OrderStatus.DELIVERED:
            assert keys == order.quantity
        else:
            assert (order.status, order.exception_reason, keys) == (
                OrderStatus.EXCEPTION,
                ExceptionReason.PAID_AFTER_EXPIRY,
                0,
            )
        outcomes.append(order.status)
    assert set(outcomes) <= {OrderStatus.DELIVERED, OrderStatus.EXCEPTION}


def test_buyer_cancels_an_unpaid_order_and_a_late_payment_is_still_kept(client, on_commit, alipay, product):
    order = checkout(client, product)
    payment = start(client, order)
    alipay.trades[payment.out_trade_no] = {"trade_status": "WAIT_BUYER_PAY", "total_amount": "30.00", "trade_no": "C1"}

    page = client.post(
        reverse("shop:order-cancel", args=[order.access_token]), follow=True, headers={"accept-language": "en"}
    )

    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED and "was cancelled" in page.content.decode()
    assert payment.out_trade_no in alipay.closed
    with on_commit():
        post_notification(client, alipay.notification(out_trade_no=payment.out_trade_no, amount="30.00"), "alipay")
    order.refresh_from_db()
    assert order.status == OrderStatus.EXCEPTION and order.exception_reason == ExceptionReason.PAID_AFTER_EXPIRY


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_payment_landing_while_the_buyer_cancels_is_kept_for_the_exception_queue(alipay, product):
    """The notification reads the order as pending, but the buyer's cancel commits before its
    write: nothing of the first decision is written, and the notice is decided again on the
    cancelled order."""
    client = Client()
    order = checkout(client, product)
    payment = start(client, order)
    fields = alipay.notification(out_trade_no=payment.out_trade_no, amount="30.00")
    watcher = psycopg2.connect(**connection.get_connection_params())
    watcher.autocommit = True

    def notification_waits_for_the_order():
        with watcher.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
            return cursor.fetchone()[0] > 0

    with ThreadPoolExecutor(max_workers=1) as pool:
        with transaction.atomic():
            order_transition(
                order=order_lock(order.pk), to=OrderStatus.CANCELLED, event_type="shop.order.cancelled", actor="buyer"
            )
            answer = pool.submit(lambda: _post_and_close(fields))
            wait_until(notification_waits_for_the_order, message="the notification to wait for the cancel")
        assert answer.result(timeout=30) == b"success"
    watcher.close()

    order.refresh_from_db()
    assert (order.status, order.exception_reason) == (OrderStatus.EXCEPTION, ExceptionReason.PAID_AFTER_EXPIRY)
    assert not CardKey.objects.filter(order=order).exists()
    assert order.events.filter(type="shop.order.paid").count() == 0
    assert Payment.objects.get(pk=payment.pk).state == PaymentState.SUCCEEDED
    assert PaymentNotification.objects.get().times_received == 1


def _post_and_close(fields) -> bytes:
    try:
        return post_notification(Client(), fields, "alipay").content
    finally:
        connections.close_all()
