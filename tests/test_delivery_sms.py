"""SMS delivery through the official Aliyun and Tencent Cloud SDKs, against loopback providers."""

from __future__ import annotations

import pytest

from delivery.models import DeliveryMessage, MessageState
from shop.models import ExceptionReason, OrderStatus
from tests.support.factories import ProductFactory, stock_product
from tests.support.platforms import sandbox_notification
from tests.support.sms_platforms import SilentServer, SmsProviderServer, use_provider
from tests.support.storefront import checkout, post_notification, start_sandbox_payment

pytestmark = pytest.mark.django_db


def pay_by_phone(client, on_commit, product, phone="13800138000"):
    order = checkout(client, product, contact=phone)
    payment = start_sandbox_payment(client, order)
    with on_commit():
        post_notification(client, sandbox_notification(out_trade_no=payment.out_trade_no, amount=order.total))
    order.refresh_from_db()
    return order


@pytest.mark.parametrize("flavour", ["aliyun", "tencent"])
def test_sms_carries_the_keys_when_the_operator_chooses_so(client, on_commit, settings, flavour):
    server = SmsProviderServer(flavour)
    try:
        use_provider(settings, flavour, server.endpoint)
        settings.SMS_CONTENT = "key"
        product = ProductFactory()
        keys = stock_product(product, 2)

        order = pay_by_phone(client, on_commit, product)

        message = DeliveryMessage.objects.get(order=order)
        assert message.channel == "sms" and message.state == MessageState.SENT
        assert len(server.sent) == 1
        sent = server.sent[0]
        assert sent["phone"] in ("13800138000", "+8613800138000")
        order_param, content = (
            (sent["params"]["order"], sent["params"]["content"]) if flavour == "aliyun" else sent["params"]
        )
        assert order_param == order.number and sum(k in content for k in keys) == 1
        assert message.attempts.get().provider_message_id
    finally:
        server.close()


@pytest.mark.parametrize("flavour", ["aliyun", "tencent"])
def test_sms_provider_that_never_answers_is_retried_then_queued(client, on_commit, settings, flavour):
    server = SilentServer()
    try:
        use_provider(settings, flavour, server.endpoint)
        settings.DELIVERY_RETRY_BASE_SECONDS = 0
        product = ProductFactory()
        keys = stock_product(product, 1)

        order = pay_by_phone(client, on_commit, product)

        message = DeliveryMessage.objects.get(order=order)
        assert message.state == MessageState.FAILED and message.tries == 3
        assert [a.permanent for a in message.attempts.all()] == [False, False, False]
        assert order.status == OrderStatus.EXCEPTION and order.exception_reason == ExceptionReason.DELIVERY_FAILED
        page = client.get(f"/order/{order.access_token}/").content.decode()
        assert keys[0] in page
    finally:
        server.close()


def test_sms_number_rejected_by_the_provider_is_permanent(client, on_commit, settings):
    server = SmsProviderServer("aliyun")
    server.reply_code = "isv.MOBILE_NUMBER_ILLEGAL"
    try:
        use_provider(settings, "aliyun", server.endpoint)
        product = ProductFactory()
        stock_product(product, 1)

        order = pay_by_phone(client, on_commit, product)

        message = DeliveryMessage.objects.get(order=order)
        assert message.state == MessageState.FAILED and message.tries == 1
        assert "isv.MOBILE_NUMBER_ILLEGAL" in message.last_error
    finally:
        server.close()
