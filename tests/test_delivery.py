"""Delivery: reservation, email with retries, the exception queue, the sweeper, stock alerts."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from cardpool.importing import cardkeys_import_text
from cardpool.models import CardKey, CardKeyStatus
from delivery.models import DeliveryMessage, MessageState, StockAlert
from delivery.services import delivery_sweep, order_deliver
from shop.models import ExceptionReason, Order, OrderStatus
from tests.support.email_backends import PERMANENT, TEMPORARY, fail_next
from tests.support.factories import ProductFactory, stock_product
from tests.support.operators import admin_import
from tests.support.platforms import sandbox_notification
from tests.support.storefront import checkout, post_notification, start_sandbox_payment

pytestmark = pytest.mark.django_db


def pay(client, on_commit, product, quantity=1, contact="buyer@example.com"):
    order = checkout(client, product, quantity=quantity, contact=contact)
    payment = start_sandbox_payment(client, order)
    with on_commit():
        response = post_notification(client, sandbox_notification(out_trade_no=payment.out_trade_no, amount=order.total))
    assert response.content == b"success"
    order.refresh_from_db()
    return order


def order_page(client, order) -> str:
    return client.get(reverse("shop:order", args=[order.access_token])).content.decode()


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
    assert [m.subject for m in mail.outbox] == [f"您的订单 {order.number} 已付款，发货还需要一点时间"]  # a notice, no key


def paid_while_sold_out(client, on_commit):
    """An order paid after its product sold out (its only key voided between checkout and payment)."""
    product = ProductFactory()
    stock_product(product, 1)
    order = checkout(client, product)
    payment = start_sandbox_payment(client, order)
    CardKey.objects.filter(product=product).update(status=CardKeyStatus.VOID)
    with on_commit():
        post_notification(client, sandbox_notification(out_trade_no=payment.out_trade_no, amount=order.total))
    order.refresh_from_db()
    return product, order


def retry_from_the_queue(admin_client, on_commit, order):
    with on_commit():
        admin_client.post(
            reverse("admin:shop_exceptionorder_changelist"), {"action": "retry_delivery", "_selected_action": [order.pk]}
        )
    order.refresh_from_db()


def test_exception_queue_retry_after_restock_delivers(admin_client, client, on_commit):
    product, order = paid_while_sold_out(client, on_commit)
    queue = admin_client.get(reverse("admin:shop_exceptionorder_changelist")).content.decode()
    assert order.number in queue
    new_keys = stock_product(product, 1, prefix="RESTOCK")

    retry_from_the_queue(admin_client, on_commit, order)

    assert order.status == OrderStatus.DELIVERED
    assert new_keys[0] in order_page(client, order)
    assert order.events.filter(type="shop.order.delivered", actor="admin").exists()
    assert order.number not in admin_client.get(reverse("admin:shop_exceptionorder_changelist")).content.decode()


def test_exception_queue_retry_while_still_out_of_stock_keeps_the_order_queued(admin_client, client, on_commit):
    _product, order = paid_while_sold_out(client, on_commit)

    retry_from_the_queue(admin_client, on_commit, order)

    assert order.status == OrderStatus.EXCEPTION
    assert order.events.filter(type="delivery.retry.out_of_stock").exists()


def test_email_failing_temporarily_is_retried_with_backoff_then_sent(client, on_commit, scripted_smtp, settings):
    product = ProductFactory()
    stock_product(product, 1)
    fail_next(TEMPORARY)

    order = pay(client, on_commit, product)

    message = DeliveryMessage.objects.get(order=order)
    assert message.state == MessageState.PENDING and message.tries == 1
    assert timedelta(seconds=23) < message.next_try_at - timezone.now() <= timedelta(seconds=36)  # 30 s ± 20 %
    assert not mail.outbox
    # The backoff elapses; the sweeper (or the countdown task) sends the next try.
    DeliveryMessage.objects.filter(pk=message.pk).update(next_try_at=timezone.now() - timedelta(seconds=120))
    with on_commit():
        delivery_sweep()

    message.refresh_from_db()
    assert message.state == MessageState.SENT and message.tries == 2
    assert len(mail.outbox) == 1
    order.refresh_from_db()
    assert order.status == OrderStatus.DELIVERED


def test_email_failing_every_try_lands_in_the_exception_queue_with_keys_kept(client, on_commit, scripted_smtp, settings):
    settings.DELIVERY_RETRY_BASE_SECONDS = 0
    product = ProductFactory()
    keys = stock_product(product, 1)
    fail_next(TEMPORARY, TEMPORARY, TEMPORARY)

    order = pay(client, on_commit, product)

    message = DeliveryMessage.objects.get(order=order)
    assert message.state == MessageState.FAILED and message.tries == 3
    assert order.status == OrderStatus.EXCEPTION and order.exception_reason == ExceptionReason.DELIVERY_FAILED
    assert keys[0] in order_page(client, order)
    assert CardKey.objects.filter(order=order).count() == 1


def test_email_refused_permanently_goes_to_the_queue_at_once(client, on_commit, scripted_smtp):
    product = ProductFactory()
    stock_product(product, 1)
    fail_next(PERMANENT)

    order = pay(client, on_commit, product)

    message = DeliveryMessage.objects.get(order=order)
    assert message.state == MessageState.FAILED and message.tries == 1
    assert order.exception_reason == ExceptionReason.DELIVERY_FAILED


def test_retry_of_a_failed_email_resends_the_same_keys(admin_client, client, on_commit, scripted_smtp):
    product = ProductFactory()
    keys = stock_product(product, 2)
    fail_next(PERMANENT)
    order = pay(client, on_commit, product)

    retry_from_the_queue(admin_client, on_commit, order)

    assert order.status == OrderStatus.DELIVERED
    assert CardKey.objects.filter(order=order).count() == 1
    assert len(mail.outbox) == 1 and sum(k in mail.outbox[0].body for k in keys) == 1


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

    assert order_deliver(order_id=order.pk) == OrderStatus.DELIVERED
    assert CardKey.objects.filter(order=order).count() == 1
    assert len(mail.outbox) == 1


def test_sweeper_redrives_a_paid_order_whose_task_was_lost(client, settings):
    product = ProductFactory()
    keys = stock_product(product, 1)
    order = checkout(client, product)
    payment = start_sandbox_payment(client, order)
    # No on-commit execution: the delivery task is never sent, as if the broker lost it.
    post_notification(client, sandbox_notification(out_trade_no=payment.out_trade_no, amount=order.total))
    order.refresh_from_db()
    assert order.status == OrderStatus.PAID
    assert delivery_sweep().orders == 0  # too young: the task may still be on its way
    Order.objects.filter(pk=order.pk).update(paid_at=timezone.now() - timedelta(seconds=61))

    report = delivery_sweep()

    assert report.orders == 1
    order.refresh_from_db()
    assert order.status == OrderStatus.DELIVERED and keys[0] in order_page(client, order)


def test_sweeper_gives_back_a_send_left_hanging_by_a_dead_worker(client, on_commit):
    product = ProductFactory()
    stock_product(product, 1)
    order = pay(client, on_commit, product)
    mail.outbox.clear()
    long_ago = timezone.now() - timedelta(minutes=5)
    DeliveryMessage.objects.filter(order=order).update(state=MessageState.SENDING, updated_at=long_ago, sent_at=None)

    with on_commit():
        delivery_sweep()

    assert DeliveryMessage.objects.get(order=order).state == MessageState.SENT
    assert len(mail.outbox) == 1


def test_stock_alert_is_raised_once_when_stock_falls_to_the_threshold(admin_client, client, on_commit):
    product = ProductFactory(low_stock_threshold=2)
    stock_product(product, 5)

    pay(client, on_commit, product)  # 4 left
    assert not StockAlert.objects.exists()
    pay(client, on_commit, product, quantity=2)  # 2 left: at the threshold
    pay(client, on_commit, product)  # 1 left: still the same alert

    alert = StockAlert.objects.get()
    assert (alert.available, alert.threshold, alert.resolved_at) == (2, 2, None)
    banner = admin_client.get(reverse("admin:index"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert f"Low stock: {product.name} has 2 keys left" in banner


def test_restocking_above_the_threshold_resolves_the_alert(client, on_commit):
    product = ProductFactory(low_stock_threshold=1)
    stock_product(product, 2)
    pay(client, on_commit, product)
    assert StockAlert.objects.filter(resolved_at__isnull=True).count() == 1

    cardkeys_import_text(product=product, text="NEW-1\nNEW-2\n")

    assert StockAlert.objects.get().resolved_at is not None
    assert client.get("/").status_code == 200


def test_delivery_task_for_an_unknown_order_is_dropped():
    from delivery.tasks import order_deliver as order_deliver_task

    assert order_deliver_task.delay(987654).get() == "missing"


def _decoded(content: str) -> str:
    import email
    from email import policy

    message = email.message_from_string(content, policy=policy.default)
    return "".join(part.get_content() for part in message.walk() if part.get_content_type() == "text/plain")


def test_real_smtp_server_refusing_then_accepting_gets_the_email_once(client, on_commit, smtp, settings):
    settings.DELIVERY_RETRY_BASE_SECONDS = 0
    smtp.data_replies = ["451 4.3.0 try again later", "421 4.7.0 too busy"]
    product = ProductFactory()
    keys = stock_product(product, 1)

    order = pay(client, on_commit, product)

    message = DeliveryMessage.objects.get(order=order)
    assert message.state == MessageState.SENT and message.tries == 3
    assert smtp.attempts == 3 and len(smtp.received) == 1
    assert smtp.received[0]["to"] == ["buyer@example.com"] and keys[0] in _decoded(smtp.received[0]["content"])
    assert order.status == OrderStatus.DELIVERED


def test_real_smtp_server_refusing_the_mailbox_lands_in_delivery_failed(client, on_commit, smtp):
    smtp.refuse_recipients = {"buyer@example.com"}
    product = ProductFactory()
    keys = stock_product(product, 1)

    order = pay(client, on_commit, product)

    message = DeliveryMessage.objects.get(order=order)
    assert message.state == MessageState.FAILED and message.tries == 1
    assert "550" in message.last_error
    assert order.status == OrderStatus.EXCEPTION and order.exception_reason == ExceptionReason.DELIVERY_FAILED
    assert keys[0] in order_page(client, order) and not smtp.received


def test_buyer_has_the_email_sent_again_three_times_an_hour(client, on_commit):
    product = ProductFactory()
    keys = stock_product(product, 1)
    order = pay(client, on_commit, product)
    resend_url = reverse("shop:order-resend", args=[order.access_token])
    assert "Email the keys again" in client.get(reverse("shop:order", args=[order.access_token]), headers={"accept-language": "en"}).content.decode()

    for _ in range(3):
        with on_commit():
            page = client.post(resend_url, follow=True, headers={"accept-language": "en"}).content.decode()
        assert "on its way to buyer@example.com" in page
    with on_commit():
        page = client.post(resend_url, follow=True, headers={"accept-language": "en"}).content.decode()

    assert "sent again 3 times in the last hour" in page
    assert len(mail.outbox) == 4 and all(keys[0] in m.body for m in mail.outbox)
    assert CardKey.objects.filter(order=order).count() == 1


def test_resend_before_delivery_sends_nothing(client):
    product = ProductFactory()
    stock_product(product, 1)
    order = checkout(client, product)

    page = client.post(reverse("shop:order-resend", args=[order.access_token]), follow=True, headers={"accept-language": "en"})

    assert "nothing to send yet" in page.content.decode()
    assert not mail.outbox


def test_importing_keys_delivers_out_of_stock_orders_oldest_first(admin_client, client, on_commit):
    product = ProductFactory()
    stock_product(product, 3)
    orders = [checkout(client, product) for _ in range(3)]
    payments = [start_sandbox_payment(client, order) for order in orders]
    CardKey.objects.update(status=CardKeyStatus.VOID)  # sold out while the buyers were paying
    for order, payment in zip(orders, payments):
        with on_commit():
            post_notification(client, sandbox_notification(out_trade_no=payment.out_trade_no, amount=order.total))
    assert set(Order.objects.values_list("exception_reason", flat=True)) == {ExceptionReason.OUT_OF_STOCK}

    admin_import(admin_client, on_commit, {"product": product.pk, "text": "NEW-A\nNEW-B\n"})

    statuses = [Order.objects.get(pk=o.pk).status for o in orders]
    assert statuses == [OrderStatus.DELIVERED, OrderStatus.DELIVERED, OrderStatus.EXCEPTION]
    assert Order.objects.get(pk=orders[0].pk).events.filter(type="shop.order.delivered", actor="system:restock").exists()


def test_low_stock_alert_emails_once_and_again_only_after_a_restock(client, on_commit, settings):
    settings.ALERT_EMAILS = ["ops@example.com"]
    product = ProductFactory(low_stock_threshold=1, name="Steam 50")
    stock_product(product, 3)

    pay(client, on_commit, product)  # 2 left
    pay(client, on_commit, product)  # 1 left: alert
    pay(client, on_commit, product)  # 0 left: same alert
    alerts = [m for m in mail.outbox if m.to == ["ops@example.com"]]
    assert len(alerts) == 1
    # Raised by the second sale: 1 key left, 2 sold in the last 7 days → 3.5 days of cover.
    assert "Steam 50" in alerts[0].subject and "3.5" in alerts[0].body

    with on_commit():
        cardkeys_import_text(product=product, text="R1\nR2\nR3\n")  # above the threshold: resolved
    pay(client, on_commit, product)  # 2 left
    pay(client, on_commit, product)  # 1 left: a new alert

    assert len([m for m in mail.outbox if m.to == ["ops@example.com"]]) == 2
    assert StockAlert.objects.filter(resolved_at__isnull=True).count() == 1


def test_every_try_is_an_attempt_row_visible_to_staff(admin_client, client, on_commit, scripted_smtp, settings):
    settings.DELIVERY_RETRY_BASE_SECONDS = 0
    product = ProductFactory()
    stock_product(product, 1)
    fail_next(TEMPORARY)

    order = pay(client, on_commit, product)

    message = DeliveryMessage.objects.get(order=order)
    attempts = list(message.attempts.values_list("number", "state", "permanent"))
    assert attempts == [(1, "failed", False), (2, "sent", False)]
    assert message.attempts.get(number=2).provider_message_id.startswith("<")
    page = admin_client.get(reverse("admin:delivery_deliverymessage_change", args=[message.pk])).content.decode()
    assert "Connection unexpectedly closed" in page


def test_staff_take_an_entry_keep_notes_and_see_its_age(admin_client, admin_user, client, on_commit, settings):
    settings.EXCEPTION_SLA_MINUTES = 30
    _product, order = paid_while_sold_out(client, on_commit)
    Order.objects.filter(pk=order.pk).update(exception_at=timezone.now() - timedelta(minutes=45))
    queue_url = reverse("admin:shop_exceptionorder_changelist")
    assert "kameng-overdue" in admin_client.get(queue_url).content.decode()

    admin_client.post(queue_url, {"action": "assign_to_me", "_selected_action": [order.pk]})
    saved = admin_client.post(
        reverse("admin:shop_exceptionorder_change", args=[order.pk]),
        {"assignee": admin_user.pk, "staff_note": "supplier restocks at 18:00"},
    )
    assert saved.status_code == 302, saved.context["adminform"].form.errors if saved.context else saved

    order.refresh_from_db()
    assert order.assignee == admin_user and order.staff_note == "supplier restocks at 18:00"
    assert order.status == OrderStatus.EXCEPTION
    assert list(order.events.filter(type="shop.order.exception.worked").values_list("message", flat=True)) == [
        "assigned to admin", "notes updated",
    ]


def test_resolve_only_takes_orders_that_hold_their_keys(admin_client, client, on_commit, scripted_smtp):
    fail_next(PERMANENT)
    product = ProductFactory()
    stock_product(product, 1)
    failed_email = pay(client, on_commit, product)
    _product, sold_out = paid_while_sold_out(client, on_commit)

    admin_client.post(
        reverse("admin:shop_exceptionorder_changelist"), {"action": "resolve", "_selected_action": [failed_email.pk, sold_out.pk]}
    )

    assert Order.objects.get(pk=failed_email.pk).status == OrderStatus.DELIVERED
    assert Order.objects.get(pk=sold_out.pk).status == OrderStatus.EXCEPTION


def test_staff_deliver_manually_with_typed_keys_stored_encrypted(admin_client, client, on_commit):
    _product, order = paid_while_sold_out(client, on_commit)
    url = reverse("admin:shop_exceptionorder_deliver_manually", args=[order.pk])
    assert admin_client.get(url).status_code == 200

    with on_commit():
        response = admin_client.post(url, {"keys": "  MANUAL-KEY-0001  \n"})

    assert response.status_code == 302
    order.refresh_from_db()
    assert order.status == OrderStatus.DELIVERED
    key = CardKey.objects.get(order=order, status=CardKeyStatus.SOLD)
    assert b"MANUAL-KEY-0001" not in bytes(key.ciphertext) and key.mask == "MA***********01"
    assert "MANUAL-KEY-0001" in order_page(client, order) and "MANUAL-KEY-0001" in mail.outbox[-1].body
    assert order.events.filter(type="shop.order.delivered_manually", actor="admin").exists()


@pytest.mark.parametrize(
    "typed, problem",
    [("", "This field is required"), ("K-1\nK-2", "needs exactly 1 more"), ("KEY-IN-POOL", "already in the pool")],
    ids=["nothing", "too-many", "duplicate-of-pool"],
)
def test_manual_delivery_refuses_bad_keys_and_changes_nothing(admin_client, client, on_commit, typed, problem):
    product, order = paid_while_sold_out(client, on_commit)
    cardkeys_import_text(product=product, text="KEY-IN-POOL")
    CardKey.objects.filter(product=product, status=CardKeyStatus.AVAILABLE).update(status=CardKeyStatus.VOID)
    url = reverse("admin:shop_exceptionorder_deliver_manually", args=[order.pk])

    page = admin_client.post(url, {"keys": typed}, follow=True, headers={"accept-language": "en"}).content.decode()

    assert problem in page
    order.refresh_from_db()
    assert order.status == OrderStatus.EXCEPTION and not CardKey.objects.filter(order=order, status="sold").exists()


def test_staff_deliver_manually_page_of_an_order_that_does_not_exist_is_404(admin_client):
    url = reverse("admin:shop_exceptionorder_deliver_manually", args=[999999])

    assert admin_client.get(url).status_code == 404
    assert admin_client.post(url, {"keys": "MANUAL-KEY-0001"}).status_code == 404


def test_staff_deliver_manually_refuses_an_order_that_is_not_in_the_queue(admin_client, client, on_commit):
    product = ProductFactory()
    stock_product(product, 1)
    order = pay(client, on_commit, product)
    url = reverse("admin:shop_exceptionorder_deliver_manually", args=[order.pk])

    response = admin_client.post(url, {"keys": "MANUAL-KEY-0001"}, follow=True)

    assert response.status_code == 200
    assert not CardKey.objects.filter(order=order, mask__startswith="MA").exists()


def test_defective_key_is_replaced_from_the_pool_and_emailed(admin_client, client, on_commit):
    product = ProductFactory()
    keys = stock_product(product, 2)
    order = pay(client, on_commit, product)
    bad = CardKey.objects.get(order=order, status=CardKeyStatus.SOLD)

    with on_commit():
        admin_client.post(reverse("admin:cardpool_cardkey_changelist"), {"action": "replace_defective", "_selected_action": [bad.pk]})

    page = order_page(client, order)
    sold = CardKey.objects.filter(order=order, status=CardKeyStatus.SOLD)
    assert sold.count() == 1 and sold.get().pk != bad.pk
    assert CardKey.objects.get(pk=bad.pk).status == CardKeyStatus.VOID
    assert sum(k in page for k in keys) == 1
    assert len(mail.outbox) == 2 and all(k not in mail.outbox[-1].body for k in keys if k not in page)
    assert list(order.events.filter(type__startswith="cardpool.key").values_list("type", flat=True)) == [
        "cardpool.key.defective", "cardpool.key.replaced",
    ]


def test_defective_key_with_nothing_in_stock_goes_to_the_queue_and_imports_fix_it(admin_client, client, on_commit):
    product = ProductFactory()
    stock_product(product, 1)
    order = pay(client, on_commit, product)
    bad = CardKey.objects.get(order=order)

    with on_commit():
        admin_client.post(reverse("admin:cardpool_cardkey_changelist"), {"action": "replace_defective", "_selected_action": [bad.pk]})

    order.refresh_from_db()
    assert order.status == OrderStatus.EXCEPTION and order.exception_reason == ExceptionReason.DEFECTIVE_KEY
    assert not CardKey.objects.filter(order=order, status=CardKeyStatus.SOLD).exists()


def test_retry_policy_comes_from_the_product_and_long_waits_stay_in_the_database(client, on_commit, scripted_smtp, settings):
    settings.DELIVERY_RETRY_BASE_SECONDS = 300
    settings.DELIVERY_MAX_COUNTDOWN_SECONDS = 600
    product = ProductFactory(delivery_max_tries=5, delivery_retry_base_seconds=1000)
    stock_product(product, 1)
    fail_next(TEMPORARY)

    order = pay(client, on_commit, product)

    message = DeliveryMessage.objects.get(order=order)
    wait = (message.next_try_at - timezone.now()).total_seconds()
    assert message.state == MessageState.PENDING and 790 <= wait <= 1200  # 1000 s ± 20 % jitter
    assert delivery_sweep().messages == 0  # not due yet; no broker message carries it either
    DeliveryMessage.objects.filter(pk=message.pk).update(next_try_at=timezone.now() - timedelta(seconds=61))
    with on_commit():
        delivery_sweep()
    assert DeliveryMessage.objects.get(pk=message.pk).state == MessageState.SENT


def test_staff_are_alerted_when_a_delivery_fails_for_good(client, on_commit, scripted_smtp, settings):
    settings.ALERT_EMAILS = ["support@example.com"]
    fail_next(PERMANENT)
    product = ProductFactory()
    stock_product(product, 1)

    order = pay(client, on_commit, product)

    alerts = [m for m in mail.outbox if m.to == ["support@example.com"] and order.number in m.subject]
    assert len(alerts) == 1
    assert f"/admin/shop/exceptionorder/{order.pk}/change/" in alerts[0].body


@pytest.fixture
def rules(admin_client):
    from delivery.models import DeliveryRules

    def set_rules(**values):
        admin_client.post(
            reverse("admin:delivery_deliveryrules_change", args=[1]),
            {"auto_delivery": "on", "review_amount": "", "review_orders_per_hour": "", **values},
        )
        return DeliveryRules.objects.get(pk=1)

    admin_client.get(reverse("admin:delivery_deliveryrules_changelist"))
    return set_rules


def test_switching_automatic_delivery_off_holds_paid_orders_for_review(admin_client, client, on_commit, rules):
    rules(auto_delivery="")
    product = ProductFactory()
    stock_product(product, 1)

    order = pay(client, on_commit, product)

    assert order.status == OrderStatus.EXCEPTION and order.exception_reason == ExceptionReason.HELD_FOR_REVIEW
    assert not CardKey.objects.filter(order=order).exists()
    retry_from_the_queue(admin_client, on_commit, order)  # staff approve it
    assert order.status == OrderStatus.DELIVERED


def test_orders_from_a_total_or_a_busy_contact_are_held(client, on_commit, rules):
    rules(review_amount="50.00", review_orders_per_hour="2")
    cheap, dear = ProductFactory(price=Decimal("10.00")), ProductFactory(price=Decimal("60.00"))
    stock_product(cheap, 5)
    stock_product(dear, 1)

    assert pay(Client(REMOTE_ADDR="10.0.0.9"), on_commit, dear).exception_reason == ExceptionReason.HELD_FOR_REVIEW
    assert pay(client, on_commit, cheap, contact="a@example.com").status == OrderStatus.DELIVERED
    assert pay(client, on_commit, cheap, contact="a@example.com").status == OrderStatus.DELIVERED
    third = pay(client, on_commit, cheap, contact="a@example.com")
    assert third.exception_reason == ExceptionReason.HELD_FOR_REVIEW and "a@example.com" in third.exception_note


def test_delayed_delivery_waits_for_the_product_delay(client, on_commit):
    product = ProductFactory(delivery_delay_minutes=30)
    stock_product(product, 1)

    order = pay(client, on_commit, product)

    assert order.status == OrderStatus.PAID and not CardKey.objects.filter(order=order).exists()
    Order.objects.filter(pk=order.pk).update(paid_at=timezone.now() - timedelta(minutes=5))
    assert delivery_sweep().orders == 0  # still waiting: the sweeper leaves it alone
    Order.objects.filter(pk=order.pk).update(paid_at=timezone.now() - timedelta(minutes=31))
    with on_commit():
        delivery_sweep()
    order.refresh_from_db()
    assert order.status == OrderStatus.DELIVERED


def test_product_email_template_and_key_validity(admin_client, client, on_commit):
    product = ProductFactory(
        email_subject="【{{ content.product_name }}】卡密到了",
        email_text="{% for key in content.keys %}KEY={{ key.secret }} until {{ key.expires_at|date:'Y-m-d' }}\n{% endfor %}",
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
        {"category": product.category_id, "name": product.name, "slug": product.slug, "price": "10.00", "sort_order": 0,
         "min_quantity": 1, "max_quantity": 10, "low_stock_threshold": 0, "delivery_delay_minutes": 0,
         "email_text": "{% for key in content.keys %}", "is_active": "on"},
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


def test_resend_is_limited_per_recipient_across_their_orders(client, on_commit, settings):
    settings.DELIVERY_RESEND_PER_RECIPIENT_PER_HOUR = 2
    product = ProductFactory()
    stock_product(product, 3)
    orders = [pay(client, on_commit, product) for _ in range(3)]
    sent_before = len(mail.outbox)

    pages = []
    for order in orders:
        with on_commit():
            pages.append(client.post(reverse("shop:order-resend", args=[order.access_token]), follow=True, headers={"accept-language": "en"}).content.decode())

    assert "on its way to buyer@example.com" in pages[0] and "on its way to buyer@example.com" in pages[1]
    assert "We have sent several messages to buyer@example.com in the last hour" in pages[2]
    assert len(mail.outbox) == sent_before + 2
