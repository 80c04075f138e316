"""Buyer notices: the buyer hears, in the language they ordered in, when a paid order waits in the
exception queue, when it is delivered later and when it is refunded; the sold-out re-check when a
payment starts; what the order page says will happen next."""

from __future__ import annotations

import email as email_lib
from datetime import timedelta
from email import policy

import pytest
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone
from django.utils.html import strip_tags

from cardpool.models import CardKey, CardKeyStatus
from delivery.models import DeliveryMessage, MessageState
from delivery.sweeper import delivery_sweep
from payments.models import Payment
from shop.models import ExceptionReason, Order, OrderStatus, ShopSettings
from shop.selectors import order_by_access_token
from tests.support.email_backends import TEMPORARY, fail_next
from tests.support.factories import ProductFactory, stock_product
from tests.support.operators import admin_import
from tests.support.platforms import sandbox_notification
from tests.support.sms_platforms import SmsProviderServer, use_provider
from tests.support.storefront import post_notification, sandbox_pay, start_sandbox_payment

pytestmark = pytest.mark.django_db

OUT_OF_STOCK_SUBJECTS = {
    "en": "Your order {number}: payment received, delivery needs a little more time",
    "zh-hans": "您的订单 {number} 已付款，发货还需要一点时间",
    "zh-hant": "您的訂單 {number} 已付款，出貨還需要一點時間",
}


def checkout_in(client, product, *, language: str, contact: str = "buyer@example.com", quantity: int = 1) -> Order:
    """Checkout as a browser asking for ``language`` does."""
    response = client.post(
        reverse("shop:product", args=[product.slug]),
        {"quantity": quantity, "contact": contact, "query_password": "secret-pw"},
        headers={"accept-language": language},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    return order_by_access_token(token=response["Location"].rstrip("/").split("/")[-2])


def paid_after_selling_out(client, on_commit, *, language: str = "zh-hans", contact: str = "buyer@example.com"):
    """A buyer starts paying while a key is left; the key goes to someone else before the money
    arrives. The notification then puts the order in the queue as out_of_stock."""
    product = ProductFactory(name="Steam 50")
    stock_product(product, 1)
    order = checkout_in(client, product, language=language, contact=contact)
    payment = start_sandbox_payment(client, order)
    CardKey.objects.filter(product=product).update(status=CardKeyStatus.VOID)
    with on_commit():
        assert (
            post_notification(
                client, sandbox_notification(out_trade_no=payment.out_trade_no, amount=order.total)
            ).content
            == b"success"
        )
    order.refresh_from_db()
    assert order.status == OrderStatus.EXCEPTION and order.exception_reason == ExceptionReason.OUT_OF_STOCK
    return product, order


def text_of(received: dict) -> tuple[str, str, str]:
    """(subject, text part, HTML part) of a message the SMTP simulator received."""
    message = email_lib.message_from_string(received["content"], policy=policy.default)
    parts = {part.get_content_type(): part.get_content() for part in message.walk() if not part.is_multipart()}
    return str(message["subject"]), parts.get("text/plain", ""), parts.get("text/html", "")


def test_checkout_records_the_language_the_buyer_shopped_in(client):
    product = ProductFactory()
    stock_product(product, 3)

    orders = {language: checkout_in(client, product, language=language) for language in ("en", "zh-hant", "fr")}

    assert orders["en"].language == "en" and orders["zh-hant"].language == "zh-hant"
    assert orders["fr"].language == "zh-hans"  # a language the shop does not speak: its default


def test_out_of_stock_payment_tells_the_buyer_in_english(client, on_commit, smtp):
    _product, order = paid_after_selling_out(client, on_commit, language="en")

    assert order.language == "en"
    assert len(smtp.received) == 1 and smtp.received[0]["to"] == ["buyer@example.com"]
    subject, text, html = text_of(smtp.received[0])
    assert subject == OUT_OF_STOCK_SUBJECTS["en"].format(number=order.number)
    assert "sold out just before your payment arrived" in text and "You do not need to pay again" in text
    assert f"http://testserver/order/{order.access_token}/" in text and f"/order/{order.access_token}/" in html
    assert "Steam 50" in html
    message = DeliveryMessage.objects.get(order=order)
    assert message.notice == "exception.out_of_stock" and message.state == MessageState.SENT
    assert order.events.filter(type="delivery.email.notice_sent").exists()


@pytest.mark.parametrize("language", ["zh-hans", "zh-hant", "en"])
def test_notice_speaks_the_language_of_the_order_not_of_the_worker(client, on_commit, language):
    _product, order = paid_after_selling_out(client, on_commit, language=language)

    (notice,) = mail.outbox
    assert notice.subject == OUT_OF_STOCK_SUBJECTS[language].format(number=order.number)
    html = notice.alternatives[0][0]
    assert f'<html lang="{language}">' in html and order.number in html


def test_notice_never_carries_a_key_nor_another_orders_link(client, on_commit):
    product = ProductFactory()
    other_keys = stock_product(product, 2)
    other = checkout_in(client, product, language="en", contact="other@example.com")
    other_payment = start_sandbox_payment(client, other)
    with on_commit():
        post_notification(client, sandbox_notification(out_trade_no=other_payment.out_trade_no, amount=other.total))
    _product, order = paid_after_selling_out(client, on_commit)

    notice = mail.outbox[-1]
    assert notice.to == ["buyer@example.com"]
    everything = notice.subject + notice.body + notice.alternatives[0][0]
    assert not any(key in everything for key in other_keys)
    assert other.number not in everything and other.access_token not in everything
    assert not CardKey.objects.filter(order=order).exists()


def test_replayed_notification_and_retries_while_sold_out_notify_once(admin_client, client, on_commit):
    _product, order = paid_after_selling_out(client, on_commit)
    payment = Payment.objects.get(order=order)
    notification = sandbox_notification(out_trade_no=payment.out_trade_no, amount=order.total)

    for _ in range(3):
        with on_commit():
            post_notification(client, notification)
        with on_commit():
            admin_client.post(
                reverse("admin:shop_exceptionorder_changelist"),
                {"action": "retry_delivery", "_selected_action": [order.pk]},
            )

    for _ in range(5):  # the buyer's "send again" is for keys only
        client.post(reverse("shop:order-resend", args=[order.access_token]))

    assert len(mail.outbox) == 1 and DeliveryMessage.objects.filter(order=order).count() == 1


def test_paid_twice_notice_by_sms_carries_no_key_even_when_sms_carry_keys(client, on_commit, settings):
    server = SmsProviderServer("aliyun")
    try:
        use_provider(settings, "aliyun", server.endpoint)
        settings.SMS_CONTENT = "key"
        product = ProductFactory()
        keys = stock_product(product, 2)
        order = checkout_in(client, product, language="en", contact="13800138000")
        first, second = start_sandbox_payment(client, order), start_sandbox_payment(client, order, phone=True)
        for payment in (first, second):
            with on_commit():
                post_notification(client, sandbox_notification(out_trade_no=payment.out_trade_no, amount=order.total))

        order.refresh_from_db()
        assert order.exception_reason == ExceptionReason.DUPLICATE_PAYMENT
        texts = [sent["params"]["content"] for sent in server.sent]
        assert len(texts) == 2 and sum(key in texts[0] for key in keys) == 1  # the delivery itself
        assert not any(key in texts[1] for key in keys) and texts[1].startswith(
            "We received a second payment for your order"
        )
    finally:
        server.close()


def test_restock_delivers_and_emails_the_keys_with_an_apology(admin_client, client, on_commit):
    product, order = paid_after_selling_out(client, on_commit, language="zh-hant")

    admin_import(admin_client, on_commit, {"product": product.pk, "text": "RESTOCK-KEY-0001\n"})

    order.refresh_from_db()
    assert order.status == OrderStatus.DELIVERED
    keys_email = mail.outbox[-1]
    assert len(mail.outbox) == 2 and keys_email.subject == f"您購買的 Steam 50 卡密（訂單 {order.number}）"
    assert "RESTOCK-KEY-0001" in keys_email.body and "抱歉讓您久等了" in keys_email.body
    assert "RESTOCK-KEY-0001" not in mail.outbox[0].body  # the earlier notice carried none


def test_staff_delivery_emails_the_keys_and_a_notice_of_the_wait(admin_client, client, on_commit, smtp):
    _product, order = paid_after_selling_out(client, on_commit, language="en")
    url = reverse("admin:shop_exceptionorder_deliver_manually", args=[order.pk])

    with on_commit():
        assert admin_client.post(url, {"keys": "MANUAL-KEY-0001\n"}).status_code == 302

    assert len(smtp.received) == 2
    notice_subject, notice_text, _html = text_of(smtp.received[0])
    subject, text, html = text_of(smtp.received[1])
    assert "MANUAL-KEY-0001" not in notice_text
    assert subject == f"Your keys for Steam 50 (order {order.number})"
    assert "MANUAL-KEY-0001" in text and "MANUAL-KEY-0001" in html
    assert "Sorry for the wait: your order needed a little extra time, and it is delivered now." in text


def test_held_order_released_by_staff_gets_its_keys_with_an_apology(admin_client, client, on_commit):
    from delivery.models import DeliveryRules

    DeliveryRules.objects.create(pk=1, auto_delivery=False)
    product = ProductFactory()
    keys = stock_product(product, 1)
    order = checkout_in(client, product, language="en")
    sandbox_pay(client, on_commit, order)
    assert "checked by a person before delivery" in mail.outbox[0].body and keys[0] not in mail.outbox[0].body

    with on_commit():
        admin_client.post(
            reverse("admin:shop_exceptionorder_changelist"),
            {"action": "retry_delivery", "_selected_action": [order.pk]},
        )

    assert len(mail.outbox) == 2 and keys[0] in mail.outbox[1].body and "Sorry for the wait" in mail.outbox[1].body


@pytest.mark.parametrize("flavour", ["aliyun", "tencent"])
def test_refund_texts_the_buyer_a_short_link_in_their_language(admin_client, client, on_commit, settings, flavour):
    server = SmsProviderServer(flavour)
    try:
        use_provider(settings, flavour, server.endpoint)
        _product, order = paid_after_selling_out(client, on_commit, language="zh-hant", contact="13800138000")

        with on_commit():
            admin_client.post(
                reverse("admin:shop_exceptionorder_changelist"), {"action": "refund", "_selected_action": [order.pk]}
            )

        order.refresh_from_db()
        assert order.status == OrderStatus.REFUNDED
        assert len(server.sent) == 2  # the sold-out notice, then the refund
        sent = [
            (s["params"]["order"], s["params"]["content"]) if flavour == "aliyun" else tuple(s["params"])
            for s in server.sent
        ]
        assert sent[0][0] == sent[1][0] == order.number
        assert sent[0][1].startswith("已收到付款，出貨還需要一點時間")
        assert sent[1][1].startswith("您的訂單已退款，詳情：")
        link = sent[1][1].split()[-1]
        assert link.startswith(f"http://testserver/s/{order.number}.")
        assert client.get(link.removeprefix("http://testserver"))["Location"] == reverse(
            "shop:order", args=[order.access_token]
        )
        page = client.get(
            reverse("shop:order", args=[order.access_token]), headers={"accept-language": "en"}
        ).content.decode()
        assert "This order was refunded. The money goes back to the account you paid with" in page
    finally:
        server.close()


def test_refund_emails_the_buyer(admin_client, client, on_commit):
    _product, order = paid_after_selling_out(client, on_commit, language="en")

    with on_commit():
        admin_client.post(
            reverse("admin:shop_exceptionorder_changelist"), {"action": "refund", "_selected_action": [order.pk]}
        )

    refund = mail.outbox[-1]
    assert refund.subject == f"Your order {order.number} was refunded"
    assert "The money goes back to the account you paid with" in refund.body


def test_notice_that_fails_is_retried_and_never_moves_the_order(client, on_commit, scripted_smtp, settings):
    settings.DELIVERY_RETRY_BASE_SECONDS = 0
    fail_next(TEMPORARY, TEMPORARY, TEMPORARY)

    _product, order = paid_after_selling_out(client, on_commit)

    message = DeliveryMessage.objects.get(order=order)
    assert message.state == MessageState.FAILED and message.tries == 3 and not mail.outbox
    order.refresh_from_db()
    assert order.status == OrderStatus.EXCEPTION and order.exception_reason == ExceptionReason.OUT_OF_STOCK
    assert order.events.filter(type="delivery.email.notice_failed").exists()


def test_notice_that_failed_once_is_sent_on_its_retry(client, on_commit, scripted_smtp, settings):
    settings.DELIVERY_RETRY_BASE_SECONDS = 0
    fail_next(TEMPORARY)

    _product, order = paid_after_selling_out(client, on_commit)

    message = DeliveryMessage.objects.get(order=order)
    assert message.state == MessageState.SENT and message.tries == 2 and len(mail.outbox) == 1


def test_notice_overtaken_by_a_restock_is_not_sent(admin_client, client, on_commit, scripted_smtp):
    fail_next(TEMPORARY)  # the notice waits for its retry (30 s)
    product, order = paid_after_selling_out(client, on_commit)
    admin_import(admin_client, on_commit, {"product": product.pk, "text": "RESTOCK-KEY-0002\n"})
    notice = DeliveryMessage.objects.get(order=order, notice="exception.out_of_stock")
    DeliveryMessage.objects.filter(pk=notice.pk).update(next_try_at=timezone.now() - timedelta(seconds=120))

    with on_commit():
        delivery_sweep()

    assert DeliveryMessage.objects.get(pk=notice.pk).state == MessageState.SKIPPED
    assert [m.subject for m in mail.outbox] == [
        f"您购买的 Steam 50 卡密（订单 {Order.objects.get(pk=order.pk).number}）"
    ]


def test_delivery_emails_are_branded_with_the_shop(client, on_commit, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    shop = ShopSettings(name="星河卡铺", support_qq="12345678", support_email="help@example.com")
    shop.logo.save(
        "logo.png", SimpleUploadedFile("logo.png", b"\x89PNG\r\n\x1a\n", content_type="image/png"), save=False
    )
    shop.save()
    product = ProductFactory()
    keys = stock_product(product, 1)
    order = checkout_in(client, product, language="en")
    sandbox_pay(client, on_commit, order)

    email = mail.outbox[0]
    html = email.alternatives[0][0]
    assert keys[0] in email.body and "星河卡铺" in email.body and "QQ 12345678" in email.body
    assert f'<img src="http://testserver/media/{shop.logo.name}"' in html and "help@example.com" in html
    assert "Questions? Contact us:" in html


def test_sold_out_order_is_not_sent_to_a_platform_and_the_pay_page_says_so(client):
    product = ProductFactory()
    stock_product(product, 1)
    order = checkout_in(client, product, language="en")
    CardKey.objects.filter(product=product).update(status=CardKeyStatus.VOID)  # sold to someone else
    url = reverse("shop:order-pay", args=[order.access_token])

    page = client.get(url, headers={"accept-language": "en"}).content.decode()
    response = client.post(url, {"gateway": "sandbox"}, headers={"accept-language": "en"})

    assert response.status_code == 200 and not Payment.objects.filter(order=order).exists()
    for body in (page, response.content.decode()):
        assert "this product sold out while your order was waiting for payment" in body
        assert 'name="gateway"' not in body
        assert reverse("shop:order-cancel", args=[order.access_token]) in body
        assert reverse("shop:product", args=[product.slug]) in body
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING and not mail.outbox


def test_payment_started_before_the_stock_ran_out_still_lands_in_the_queue(client, on_commit):
    _product, order = paid_after_selling_out(client, on_commit)

    assert (
        order.exception_reason == ExceptionReason.OUT_OF_STOCK and Payment.objects.get(order=order).state == "succeeded"
    )


@pytest.mark.parametrize(
    "status, reason, expected",
    [
        ("paid", "", "Your keys appear here in a few seconds"),
        ("exception", "out_of_stock", "As soon as new stock comes in"),
        ("exception", "held_for_review", "Some orders are checked by a person before delivery"),
        ("exception", "paid_after_expiry", "It reached us after the order's payment time had ended"),
        ("exception", "amount_mismatch", "The amount that reached us differs from the order total"),
        ("exception", "delivery_failed", "could not be delivered to buyer@example.com"),
        ("exception", "duplicate_payment", "the extra payment will be refunded to you"),
        ("exception", "defective_key", "no replacement is in stock right now"),
        ("refunded", "", "This order was refunded"),
        ("expired", "", "Nothing was charged"),
        ("cancelled", "", "Nothing was charged"),
    ],
)
def test_order_page_says_what_happens_next(client, status, reason, expected):
    from tests.support.factories import OrderFactory

    order = OrderFactory(status=status, exception_reason=reason)
    url = reverse("shop:order", args=[order.access_token])

    pages = {
        language: client.get(url, headers={"accept-language": language}).content.decode()
        for language in ("en", "zh-hans", "zh-hant")
    }

    assert expected in pages["en"]
    assert all(
        page.count('class="waiting next-steps"') + page.count('class="next-steps"') == 1 for page in pages.values()
    )
    assert expected not in pages["zh-hans"] and expected not in pages["zh-hant"]  # translated
    shown = strip_tags("<section" + pages["en"].split("<section", 1)[1].split("</section>")[0])
    assert not [
        jargon for jargon in ("exception", "_", "queue", "mismatch", "your fault") if jargon in shown.lower()
    ], shown


def test_payment_of_another_amount_tells_the_buyer_staff_will_check_it(client, on_commit):
    product = ProductFactory()
    stock_product(product, 1)
    order = checkout_in(client, product, language="zh-hans")
    payment = start_sandbox_payment(client, order)

    with on_commit():
        post_notification(client, sandbox_notification(out_trade_no=payment.out_trade_no, amount=order.total - 1))

    order.refresh_from_db()
    assert order.exception_reason == ExceptionReason.AMOUNT_MISMATCH
    (notice,) = mail.outbox
    assert notice.subject == OUT_OF_STOCK_SUBJECTS["zh-hans"].format(number=order.number)
    assert "到账金额与订单金额不一致" in notice.body and "客服核对后会为您发货或退款" in notice.body


def test_payment_after_the_buyer_cancelled_tells_them_staff_will_deliver_or_refund(client, on_commit):
    product = ProductFactory()
    stock_product(product, 1)
    order = checkout_in(client, product, language="en")
    payment = start_sandbox_payment(client, order)
    client.post(reverse("shop:order-cancel", args=[order.access_token]))

    with on_commit():
        post_notification(client, sandbox_notification(out_trade_no=payment.out_trade_no, amount=order.total))

    order.refresh_from_db()
    assert order.exception_reason == ExceptionReason.PAID_AFTER_EXPIRY
    (notice,) = mail.outbox
    assert "It reached us after the order's payment time had ended" in notice.body
    assert "Our staff will deliver your keys or refund you" in notice.body
