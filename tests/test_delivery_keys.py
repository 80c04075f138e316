"""Delivery of keys: exactly what was paid for, once, by email, SMS or the order page."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from cardpool.models import CardKey, CardKeyStatus
from delivery.models import DeliveryMessage
from delivery.services import order_deliver
from shop.models import ExceptionReason, Order, OrderStatus
from tests.support.factories import ProductFactory, stock_product
from tests.support.platforms import sandbox_notification
from tests.support.storefront import checkout, order_page, pay, post_notification, start_sandbox_payment

pytestmark = pytest.mark.django_db


def test_delivery_sells_exactly_the_quantity_paid_for(client, on_commit):
    product = ProductFactory()
    keys = stock_product(product, 5)

    order = pay(client, on_commit, product, quantity=3)

    assert order.status == OrderStatus.DELIVERED
    sold = CardKey.objects.filter(order=order, status=CardKeyStatus.SOLD)
    assert sold.count() == 3
    page = order_page(client, order)
    assert sum(k in page for k in keys) == 3
    assert list(order.events.values_list("type", flat=True)) == [
        "shop.order.created",
        "payments.payment.started",
        "shop.order.paid",
        "shop.order.delivered",
        "delivery.email.sent",
    ]


def test_not_enough_keys_delivers_nothing_and_queues_the_order(client, on_commit):
    product = ProductFactory()
    stock_product(product, 2)
    order = checkout(client, product, quantity=2)
    payment = start_sandbox_payment(client, order)
    CardKey.objects.filter(pk=CardKey.objects.first().pk).update(status=CardKeyStatus.VOID)  # stock fell meanwhile

    with on_commit():
        post_notification(client, sandbox_notification(out_trade_no=payment.out_trade_no, amount=order.total))

    order.refresh_from_db()
    assert order.status == OrderStatus.EXCEPTION and order.exception_reason == ExceptionReason.OUT_OF_STOCK
    assert not CardKey.objects.filter(order=order).exists()
    assert CardKey.objects.filter(status=CardKeyStatus.AVAILABLE).count() == 1
    assert [m.subject for m in mail.outbox] == [
        f"您的订单 {order.number} 已付款，发货还需要一点时间"
    ]  # a notice, no key


def test_mobile_contact_gets_keys_on_the_page_and_an_sms_link(client, on_commit, capsys, settings):
    settings.DEBUG = True  # the console SMS provider shows its text only while DEBUG is on
    product = ProductFactory()
    keys = stock_product(product, 1)

    order = pay(client, on_commit, product, contact="13900139000")

    assert order.status == OrderStatus.DELIVERED
    assert keys[0] in order_page(client, order)
    assert not mail.outbox
    sms = capsys.readouterr().out
    assert f"SMS to 13900139000: order {order.number}: http://testserver/s/{order.number}." in sms
    assert keys[0] not in sms  # SMS_CONTENT=link by default
    link = sms.split(": ")[-1].strip().removeprefix("http://testserver")
    assert client.get(link)["Location"] == reverse("shop:order", args=[order.access_token])
    assert client.get(link[:-3] + "xyz/").status_code == 404


def test_email_carries_keys_and_usage_instructions_in_chinese(client, on_commit):
    product = ProductFactory(name="Steam & 充值卡", usage_instructions="登录后兑换")
    keys = stock_product(product, 2)

    order = pay(client, on_commit, product, quantity=2)

    email = mail.outbox[0]
    assert email.subject == f"您购买的 Steam & 充值卡 卡密（订单 {order.number}）"
    assert all(k in email.body for k in keys) and "登录后兑换" in email.body
    html = email.alternatives[0][0]
    assert all(k in html for k in keys) and "Steam &amp; 充值卡" in html
    assert f"/order/{order.access_token}/" in email.body


def test_running_delivery_twice_delivers_once(client, on_commit):
    product = ProductFactory()
    stock_product(product, 3)
    order = pay(client, on_commit, product)

    assert order_deliver(order_id=order.pk).status == OrderStatus.DELIVERED
    assert CardKey.objects.filter(order=order).count() == 1
    assert len(mail.outbox) == 1


def test_delivery_task_for_an_unknown_order_is_dropped():
    from delivery.tasks import order_deliver as order_deliver_task

    assert order_deliver_task.delay(987654).get() == "missing"


def test_product_email_template_and_key_validity(admin_client, client, on_commit):
    product = ProductFactory(
        email_subject="【{{ content.product_name }}】卡密到了",
        email_text=(
            "{% for key in content.keys %}KEY={{ key.secret }} until {{ key.expires_at|date:'Y-m-d' }}\n{% endfor %}"
        ),
    )
    keys = stock_product(product, 1)
    CardKey.objects.filter(product=product).update(expires_at=timezone.now() + timedelta(days=30))

    order = pay(client, on_commit, product)

    email = mail.outbox[-1]
    expiry = (timezone.localtime() + timedelta(days=30)).strftime("%Y-%m-%d")
    assert email.subject == f"【{product.name}】卡密到了"
    assert f"KEY={keys[0]} until {expiry}" in email.body
    assert keys[0] in email.alternatives[0][0]  # no HTML template of its own: the default one
    assert expiry in order_page(client, order)


def test_product_email_template_with_a_syntax_error_is_refused_in_admin(admin_client):
    product = ProductFactory()

    response = admin_client.post(
        reverse("admin:shop_product_change", args=[product.pk]),
        {
            "category": product.category_id,
            "name": product.name,
            "slug": product.slug,
            "price": "10.00",
            "sort_order": 0,
            "min_quantity": 1,
            "max_quantity": 10,
            "low_stock_threshold": 0,
            "delivery_delay_minutes": 0,
            "email_text": "{% for key in content.keys %}",
            "is_active": "on",
        },
        headers={"accept-language": "en"},
    )

    assert response.status_code == 200 and "Template error" in response.content.decode()


def test_console_sms_outside_debug_keeps_the_text_out_of_the_output(client, on_commit, capsys, settings):
    settings.DEBUG, settings.SMS_CONTENT = False, "key"
    product = ProductFactory()
    keys = stock_product(product, 1)

    order = pay(client, on_commit, product, contact="13900139000")

    printed = capsys.readouterr().out
    assert f"SMS to 13900139000: order {order.number}" in printed
    assert keys[0] not in printed and "/s/" not in printed


def test_without_an_sms_provider_a_mobile_buyer_finds_the_keys_on_the_page(client, on_commit, settings):
    settings.SMS_PROVIDER = "none"
    product = ProductFactory()
    keys = stock_product(product, 1)

    order = pay(client, on_commit, product, contact="13900139000")

    assert order.status == OrderStatus.DELIVERED and keys[0] in order_page(client, order)
    assert not DeliveryMessage.objects.filter(order=order).exists()


@pytest.mark.postgres
def test_a_column_added_by_a_migration_while_processes_run_does_not_break_payment_or_delivery(client, on_commit):
    from django.db import connection

    product = ProductFactory()
    stock_product(product, 2)
    first, second = checkout(client, product), checkout(client, product)
    payment = start_sandbox_payment(client, first)
    with on_commit():
        post_notification(client, sandbox_notification(out_trade_no=payment.out_trade_no, amount=first.total))
    # The hot statements are now prepared on this connection; a deploy's migration adds columns.
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the test's open transaction has deferred checks
        for table in ("shop_order", "shop_product", "payments_payment"):
            cursor.execute(f"ALTER TABLE {table} ADD COLUMN added_later integer")

    payment = start_sandbox_payment(client, second)
    with on_commit():
        answer = post_notification(client, sandbox_notification(out_trade_no=payment.out_trade_no, amount=second.total))

    assert answer.content == b"success"
    assert Order.objects.get(pk=second.pk).status == OrderStatus.DELIVERED
