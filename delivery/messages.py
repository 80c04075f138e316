"""Messages to the buyer: the email or SMS with the keys, and notices of what happened to an
order. Rows, sends, retries with backoff, and the resend button.

One message row per order, channel and notice (``""`` for the keys): a notice is recorded once
however often its event is handled, and the keys message is reused by every resend. Every try
is a ``DeliveryAttempt`` written before the outside call.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urljoin

from django.conf import settings
from django.core import signing
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _lazy

from cardpool.models import CardKey
from cardpool.selectors import order_keys
from delivery import tasks
from delivery.channels import ChannelError, DeliveryContent, channel_get
from delivery.channels.base import DeliveredKey, ShopBrand
from delivery.channels.sms import sms_enabled
from delivery.models import AttemptState, DeliveryAttempt, DeliveryMessage, MessageState
from kameng.sql import Statement, row_source, sql_literal, statements_run
from shop.lock_objects import order_lock, order_with_product
from shop.models import ContactKind, ExceptionReason, Order, OrderEvent, OrderStatus
from shop.selectors import shop_settings
from shop.services import order_exception_enter
from shop.transitions import order_event_insert

logger = logging.getLogger(__name__)

# Notices to the buyer (DeliveryMessage.notice); "" is the message with the keys.
NOTICE_EXCEPTION = "exception."
NOTICE_REFUNDED = "refunded"


@dataclass(frozen=True)
class ClaimedSend:
    """A message's first try, claimed inside the delivery's transaction (the row is "sending",
    its attempt on record): the delivery task carries it out right after the commit."""

    message_id: int
    attempt_id: int
    channel: str
    recipient: str
    order: Order  # as the delivery transaction left it (locked, then delivered): no re-read


def message_channel(*, order: Order) -> str | None:
    """How the buyer is reached: email for an email address, SMS for a mobile number; None when
    the shop sends no SMS (SMS_PROVIDER=none: the order page is all there is)."""
    channel = "email" if order.contact_kind == ContactKind.EMAIL else "sms"
    return None if channel == "sms" and not sms_enabled() else channel


def message_first_try(*, channel: str, recipient: str, at: datetime, source: str = "target") -> tuple[Statement, ...]:
    """The keys message of the order in ``source``, created claimed with its first attempt on
    record, returning (message id, attempt id); no row when the order already has one (a
    resend reuses that). For the delivery's batch: no claim round trip after the commit."""
    message = Statement(
        f"INSERT INTO {DeliveryMessage._meta.db_table}"
        " (order_id, channel, recipient, notice, state, tries, last_error, created_at, updated_at)"
        f" SELECT order_id, %(message_channel)s, %(message_recipient)s, '', {sql_literal(MessageState.SENDING)}, 1, '',"
        f" %(at)s, %(at)s FROM {source} WHERE true"
        " ON CONFLICT (order_id, channel, notice) DO NOTHING RETURNING id",
        {"message_channel": channel, "message_recipient": recipient, "at": at},
        name="message",
    )
    attempt = Statement(
        f"INSERT INTO {DeliveryAttempt._meta.db_table}"
        " (message_id, number, state, provider_message_id, error, permanent, started_at)"
        f" SELECT id, 1, {sql_literal(AttemptState.SENDING)}, '', '', false, %(at)s FROM message"
        " RETURNING message_id, id",
        {"at": at},
        name="attempt",
    )
    return message, attempt, Statement("SELECT message_id, id FROM attempt")


def order_notice_record(*, order: Order, notice: str) -> None:
    """Record a notice to the buyer (``exception.<reason>``, ``refunded``) and send it after
    the commit, retried like any message and re-driven by the sweeper. Recorded once per
    order, channel and notice, so a replay adds nothing. Carries no key."""
    channel = message_channel(order=order)
    if channel is None:
        return
    message, created = DeliveryMessage.objects.get_or_create(
        order=order,
        channel=channel,
        notice=notice,
        defaults={"recipient": order.contact, "state": MessageState.PENDING},
    )
    if created:
        _message_schedule(message_id=message.pk)


def order_messages_send(*, order: Order) -> int | None:
    """(Re)send an order's keys message after its keys changed (a retry, a manual delivery, a
    replaced key), after commit: email to an email address, SMS to a mobile number (the page
    always has the keys). Creates the row on first use. Returns the message id, or None when
    the shop sends no SMS (SMS_PROVIDER=none)."""
    channel = message_channel(order=order)
    if channel is None:
        return None
    message, created = DeliveryMessage.objects.get_or_create(
        order=order, channel=channel, notice="", defaults={"recipient": order.contact, "state": MessageState.PENDING}
    )
    if not created:
        DeliveryMessage.objects.filter(pk=message.pk).update(
            state=MessageState.PENDING, tries=0, next_try_at=None, last_error=""
        )
    _message_schedule(message_id=message.pk)
    return message.pk


def messages_send_claimed(*, sends: tuple[ClaimedSend, ...]) -> None:
    """Carry out the first tries a delivery claimed (``order_deliver``'s result), in this
    process, right after its commit: one broker hop less between payment and the buyer's inbox.
    A send that fails is retried like any other; one left "sending" by a crash is given back by
    the sweeper."""
    for send in sends:
        message = DeliveryMessage(
            pk=send.message_id, order_id=send.order.pk, channel=send.channel, recipient=send.recipient, tries=1
        )
        attempt = DeliveryAttempt(pk=send.attempt_id, message_id=send.message_id, number=1)
        _message_deliver(message=message, attempt=attempt, order=send.order)


def _message_schedule(*, message_id: int, countdown: float | None = None) -> None:
    if countdown:
        tasks.message_send.apply_async_on_commit(args=(message_id,), countdown=countdown)
    else:
        tasks.message_send.delay_on_commit(message_id)


class ResendRefused(Exception):
    """The buyer cannot have the message sent again now; the text says why."""


def delivery_resend(*, order_id: int) -> None:
    """Buyer self-service: send an order's email or SMS again, at most
    DELIVERY_RESEND_PER_ORDER_PER_HOUR times an hour for the order and
    DELIVERY_RESEND_PER_RECIPIENT_PER_HOUR for its recipient across all their orders (someone
    holding many order links cannot flood one inbox or phone, nor run up the SMS bill). Sends
    the same keys; moves no keys or money. Raises ResendRefused ("limit reached",
    "recipient limit reached", "already on its way", "nothing to send yet")."""
    with transaction.atomic(durable=True):
        order = order_lock(order_id)  # serialises concurrent clicks, so the limit holds
        message = DeliveryMessage.objects.filter(order=order, notice="").first()
        if message is None or not CardKey.objects.filter(order=order).exists():
            raise ResendRefused("nothing to send yet")
        if message.state in (MessageState.PENDING, MessageState.SENDING):
            raise ResendRefused("already on its way")
        hour_ago = timezone.now() - timedelta(hours=1)
        if (
            order.events.filter(type="delivery.resend", created_at__gte=hour_ago).count()
            >= settings.DELIVERY_RESEND_PER_ORDER_PER_HOUR
        ):
            raise ResendRefused("limit reached")
        # Counted through the contact index. Only this order is locked, so two of the same
        # buyer's orders resent at the same instant may both pass: the cap is off by at most the
        # number of simultaneous clicks, and each order still holds its own limit exactly.
        sent_to_recipient = OrderEvent.objects.filter(
            order__contact=order.contact, type="delivery.resend", created_at__gte=hour_ago
        ).count()
        if sent_to_recipient >= settings.DELIVERY_RESEND_PER_RECIPIENT_PER_HOUR:
            raise ResendRefused("recipient limit reached")
        DeliveryMessage.objects.filter(pk=message.pk).update(
            state=MessageState.PENDING, tries=0, next_try_at=None, last_error=""
        )
        OrderEvent.objects.create(order=order, type="delivery.resend", message=message.recipient, actor="buyer")
        _message_schedule(message_id=message.pk)


def shop_brand() -> ShopBrand:
    """The shop's name, logo (an absolute URL) and support contacts, for messages to buyers."""
    shop = shop_settings()
    logo_url = ""
    if shop.logo:
        # Absolute for mail readers: a storage URL that is only a path hangs off SITE_URL.
        logo_url = urljoin(settings.SITE_URL + "/", shop.logo.url)
    contacts = [
        (_lazy("Email"), shop.support_email),
        (_lazy("QQ"), shop.support_qq),
        (_lazy("WeChat"), shop.support_wechat),
        (_lazy("Telegram"), shop.support_telegram),
    ]
    return ShopBrand(
        name=shop.name, logo_url=logo_url, support=tuple((label, value) for label, value in contacts if value)
    )


def _order_links(order: Order) -> dict:
    # The links of this order only: the page's secret token, and the signed short link.
    return {
        "order_url": f"{settings.SITE_URL}/order/{order.access_token}/",
        "short_url": settings.SITE_URL + reverse("shop:order-short", args=[order_short_token(order=order)]),
    }


def notice_applies(*, order: Order, notice: str) -> bool:
    """Whether a notice still tells the truth: an out-of-stock notice for an order that was
    delivered before the notice went out is left unsent."""
    if notice == NOTICE_REFUNDED:
        return order.status == OrderStatus.REFUNDED
    return order.status == OrderStatus.EXCEPTION and notice == f"{NOTICE_EXCEPTION}{order.exception_reason}"


def notice_content(*, order: Order, notice: str) -> DeliveryContent:
    """What a notice carries: the order's number, product, state and links, never a key."""
    return DeliveryContent(
        order_number=order.number,
        product_name=order.product.name,
        quantity=order.quantity,
        keys=(),
        usage_instructions="",
        notice=notice,
        reason=notice.removeprefix(NOTICE_EXCEPTION) if notice.startswith(NOTICE_EXCEPTION) else "",
        total=order.total,
        language=order.language,
        brand=shop_brand(),
        **_order_links(order),
    )


def delivery_content(*, order: Order) -> DeliveryContent:
    """What a message for ``order`` carries, plaintext keys included. Never log it."""
    return DeliveryContent(
        order_number=order.number,
        product_name=order.product.name,
        quantity=order.quantity,
        keys=tuple(DeliveredKey(secret=secret, expires_at=expires) for secret, expires in order_keys(order=order)),
        usage_instructions=order.product.usage_instructions,
        email_subject=order.product.email_subject,
        email_text=order.product.email_text,
        email_html=order.product.email_html,
        # Held back by the exception queue before it was delivered: the message says sorry.
        delayed=order.exception_at is not None,
        total=order.total,
        language=order.language,
        brand=shop_brand(),
        **_order_links(order),
    )


def order_short_token(*, order: Order) -> str:
    """A short signed token for SMS links: the order number and an HMAC of it (``/s/<token>/``)."""
    return f"{order.number}.{signing.Signer(salt='kameng.sms-link').signature(order.number)[:16]}"


# Hand-written: every delivered order passes here once (bench/deliver.py); the ORM's query
# building cost more than the statements.
_MESSAGE_CLAIM_SQL = """
    UPDATE {table} SET state = %s, tries = tries + 1, updated_at = %s
     WHERE id = %s AND state = %s AND (next_try_at IS NULL OR next_try_at <= %s)
    RETURNING tries, order_id, channel, recipient, notice
"""
_ATTEMPT_INSERT_SQL = """
    INSERT INTO {table} (message_id, number, state, provider_message_id, error, permanent, started_at)
    VALUES (%s, %s, %s, '', '', false, %s)
    RETURNING id
"""


def _message_sent(*, message: DeliveryMessage, attempt_id: int, provider_message_id: str) -> None:
    """Record a sent message: its attempt, its state and the order's event, as one batch."""
    at = timezone.now()
    statements_run(
        [
            Statement(
                f"UPDATE {DeliveryAttempt._meta.db_table} SET state = {sql_literal(AttemptState.SENT)},"
                " finished_at = %(at)s,"
                " provider_message_id = %(provider_message_id)s WHERE id = %(attempt_id)s",
                {"at": at, "provider_message_id": provider_message_id, "attempt_id": attempt_id},
            ),
            Statement(
                f"UPDATE {DeliveryMessage._meta.db_table} SET state = {sql_literal(MessageState.SENT)},"
                " sent_at = %(at)s,"
                " last_error = '' WHERE id = %(message_id)s",
                {"at": at, "message_id": message.pk},
            ),
            row_source("target", order_id=message.order_id),
            order_event_insert(
                event_type=f"delivery.{message.channel}.{'notice_sent' if message.notice else 'sent'}",
                message=f"{message.notice} to {message.recipient}" if message.notice else message.recipient,
                actor="system",
                at=at,
            ),
        ]
    )


def message_send(*, message_id: int) -> str:
    """Send one delivery message if it is due. Returns its state afterwards.

    The row is claimed with a conditional UPDATE first, so two workers never send the same try.
    Transient failures are retried with exponential backoff up to DELIVERY_MAX_TRIES;
    permanent ones and the last failure put the order in the exception queue (delivery_failed).
    """
    ops = connection.ops
    now = ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(
            _MESSAGE_CLAIM_SQL.format(table=DeliveryMessage._meta.db_table),
            [MessageState.SENDING, now, message_id, MessageState.PENDING, now],
        )
        claimed = cursor.fetchone()
        if claimed is None:
            return "not-due"
        # The attempt is on record before the outside call: a crash leaves a visible "sending" try.
        cursor.execute(
            _ATTEMPT_INSERT_SQL.format(table=DeliveryAttempt._meta.db_table),
            [message_id, claimed[0], AttemptState.SENDING, now],
        )
        attempt = DeliveryAttempt(pk=cursor.fetchone()[0], message_id=message_id, number=claimed[0])
    tries, order_id, channel_name, recipient, notice = claimed
    message = DeliveryMessage(
        pk=message_id, order_id=order_id, channel=channel_name, recipient=recipient, notice=notice, tries=tries
    )
    return _message_deliver(message=message, attempt=attempt)


def _message_deliver(*, message: DeliveryMessage, attempt: DeliveryAttempt, order: Order | None = None) -> str:
    """Carry out a claimed try (the message is "sending", its attempt on record)."""
    if order is None:
        message.order = order_with_product(message.order_id)
    else:
        message.order = order  # locked by the delivery with its product (order_lock)
    if message.notice and not notice_applies(order=message.order, notice=message.notice):
        return _message_skipped(message=message, attempt=attempt)
    try:
        channel = channel_get(message.channel)
        if message.notice:
            content = notice_content(order=message.order, notice=message.notice)
        else:
            content = delivery_content(order=message.order)
    except Exception as exc:  # a bug here must reach staff, not loop forever
        logger.exception("could not prepare delivery message %s", message.pk)
        return _message_failed(
            message=message, attempt=attempt, failure=ChannelError(f"prepare: {type(exc).__name__}", permanent=True)
        )
    try:
        provider_message_id = channel.send(recipient=message.recipient, content=content)
    except ChannelError as failure:
        return _message_failed(message=message, attempt=attempt, failure=failure)
    _message_sent(message=message, attempt_id=attempt.pk, provider_message_id=provider_message_id[:255])
    return MessageState.SENT


def _message_skipped(*, message: DeliveryMessage, attempt: DeliveryAttempt) -> str:
    """A notice overtaken by events (the order moved on before it went out): not sent."""
    with transaction.atomic():
        DeliveryAttempt.objects.filter(pk=attempt.pk).update(
            state=AttemptState.FAILED, finished_at=timezone.now(), error="not sent: the order moved on"
        )
        DeliveryMessage.objects.filter(pk=message.pk).update(state=MessageState.SKIPPED)
        OrderEvent.objects.create(
            order_id=message.order_id,
            type=f"delivery.{message.channel}.notice_skipped",
            message=f"{message.notice}: the order is {message.order.status} now",
        )
    return MessageState.SKIPPED


def _message_failed(*, message: DeliveryMessage, attempt: DeliveryAttempt, failure: ChannelError) -> str:
    logger.warning("delivery message %s try %s failed: %s", message.pk, message.tries, failure)
    DeliveryAttempt.objects.filter(pk=attempt.pk).update(
        state=AttemptState.FAILED, finished_at=timezone.now(), error=str(failure), permanent=failure.permanent
    )
    product = message.order.product
    max_tries = product.delivery_max_tries or settings.DELIVERY_MAX_TRIES
    base = product.delivery_retry_base_seconds
    base = settings.DELIVERY_RETRY_BASE_SECONDS if base is None else base
    if not failure.permanent and message.tries < max_tries:
        # Exponential backoff with ±20 % jitter, so a provider outage is not hit by every
        # queued message at the same second when it returns.
        delay = round(base * 2 ** (message.tries - 1) * random.uniform(0.8, 1.2))  # noqa: S311 - jitter, not a secret
        with transaction.atomic():
            DeliveryMessage.objects.filter(pk=message.pk).update(
                state=MessageState.PENDING,
                next_try_at=timezone.now() + timedelta(seconds=delay),
                last_error=str(failure),
            )
            OrderEvent.objects.create(
                order_id=message.order_id,
                type=f"delivery.{message.channel}.retry_scheduled",
                message=f"try {message.tries} failed ({failure}); next in {delay}s",
            )
            if delay <= settings.DELIVERY_MAX_COUNTDOWN_SECONDS:
                _message_schedule(message_id=message.pk, countdown=delay)
            # else: next_try_at holds it; the sweeper sends it when it is due.
        return MessageState.PENDING
    if message.notice:
        # A notice that cannot be sent leaves the order as it is: the page says the same thing.
        with transaction.atomic():
            DeliveryMessage.objects.filter(pk=message.pk).update(state=MessageState.FAILED, last_error=str(failure))
            OrderEvent.objects.create(
                order_id=message.order_id,
                type=f"delivery.{message.channel}.notice_failed",
                message=f"{message.notice} to {message.recipient} failed after {message.tries} tries: {failure}",
            )
        return MessageState.FAILED
    with transaction.atomic():
        DeliveryMessage.objects.filter(pk=message.pk).update(state=MessageState.FAILED, last_error=str(failure))
        order = order_lock(message.order_id)
        note = f"{message.channel} to {message.recipient} failed after {message.tries} tries: {failure}"
        if order.status == OrderStatus.DELIVERED:
            # Staff hear of it from the event's handler (delivery.handlers).
            order_exception_enter(order=order, reason=ExceptionReason.DELIVERY_FAILED, note=note)
        else:
            OrderEvent.objects.create(order=order, type=f"delivery.{message.channel}.failed", message=note)
    return MessageState.FAILED
