"""Delivery email retries: backoff, permanent refusals, attempt rows, a real SMTP server, staff alerts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from cardpool.models import CardKey
from delivery.models import DeliveryMessage, MessageState
from delivery.sweeper import delivery_sweep
from shop.models import ExceptionReason, OrderStatus
from tests.support.email_backends import PERMANENT, TEMPORARY, fail_next
from tests.support.factories import ProductFactory, stock_product
from tests.support.operators import retry_from_the_queue
from tests.support.storefront import order_page, pay

pytestmark = pytest.mark.django_db


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


def test_email_failing_every_try_lands_in_the_exception_queue_with_keys_kept(
    client, on_commit, scripted_smtp, settings
):
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


def test_retry_policy_comes_from_the_product_and_long_waits_stay_in_the_database(
    client, on_commit, scripted_smtp, settings
):
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
