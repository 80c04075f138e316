"""Handing keys to paid orders: reserve, email, retry, sweep, exception queue, stock alerts."""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from urllib.parse import urljoin

from django.conf import settings
from django.core import signing
from django.core.mail import EmailMultiAlternatives
from django.db import connection, transaction
from django.db.models import Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext_lazy as _lazy

from cardpool.models import CardKey, CardKeyStatus
from cardpool.selectors import available_counts, order_keys, product_has_stock
from cardpool.services import (
    ReservationContended,
    StockShortfall,
    cardkeys_add_sold_to_order,
    cardkeys_sell_to_order,
    cardkeys_shortfall_is_contention,
)
from delivery.channels import ChannelError, DeliveryContent, channel_get
from delivery.channels.base import DeliveredKey, ShopBrand
from delivery.channels.sms import sms_enabled
from delivery.models import AttemptState, DeliveryAttempt, DeliveryMessage, DeliveryRules, MessageState, StockAlert
from kameng.sql import sql_execute, statements_chained, statements_run
from shop.lock_objects import order_lock, order_with_product
from shop.models import ContactKind, ExceptionReason, Order, OrderEvent, OrderStatus
from shop.selectors import shop_settings
from shop.services import order_event_statement, order_exception_enter, order_transition

logger = logging.getLogger(__name__)


# Notices to the buyer (DeliveryMessage.notice); "" is the message with the keys.
NOTICE_EXCEPTION = "exception."
NOTICE_REFUNDED = "refunded"


class DeliveryRefused(Exception):
    """A staff action that does not apply to the order in its current state."""


def _order_fulfil(*, order: Order, actor: str, schedule_messages: bool = True) -> None:
    """Sell the order's keys and mark it delivered, on a locked order, in the caller's
    transaction. Raises StockShortfall: the caller rolls back and calls _order_short_of_stock."""
    threshold = order.product.low_stock_threshold
    sale = cardkeys_sell_to_order(order=order, stock_probe=threshold + 1)
    writes = []  # the order's writes go in one round trip with its message row
    order_transition(
        order=order,
        to=OrderStatus.DELIVERED,
        event_type="shop.order.delivered",
        message=f"{order.quantity} key(s)",
        actor=actor,
        statements=writes,
    )
    _order_messages_send(order=order, schedule=schedule_messages, statements=writes)
    if not sale.stock_left:  # at or below the threshold now, or not probed
        stock_alert_check(product_id=order.product_id, threshold=threshold)


def _order_short_of_stock(*, order_id: int, expected_status: str, actor: str) -> str:
    """After a rolled-back StockShortfall: queue the order as out_of_stock, or raise
    ReservationContended when the keys exist but are locked by concurrent deliveries."""
    with transaction.atomic(durable=True):
        order = order_lock(order_id)
        if order.status != expected_status:
            return order.status  # someone else finished it meanwhile
        if cardkeys_shortfall_is_contention(product_id=order.product_id, quantity=order.quantity):
            raise ReservationContended(f"order {order.number}: keys are locked by concurrent deliveries")
        note = f"needs {order.quantity}, the pool has fewer"
        if order.status == OrderStatus.EXCEPTION:
            OrderEvent.objects.create(order=order, type="delivery.retry.out_of_stock", message=note, actor=actor)
        else:
            order_exception_enter(order=order, reason=ExceptionReason.OUT_OF_STOCK, note=note, actor=actor)
        stock_alert_check(product_id=order.product_id, threshold=order.product.low_stock_threshold)
    return order.status


_RULES_TTL_SECONDS = 5.0
_rules_memo: tuple[float, DeliveryRules] | None = None


def delivery_rules() -> DeliveryRules:
    """The shop's delivery rules, read from the database at most every few seconds per process.

    Every delivery asks; a process-local memo keeps that off the network (the shared cache is
    Redis in production). An edit reaches other processes within _RULES_TTL_SECONDS."""
    global _rules_memo
    now = time.monotonic()
    if _rules_memo is None or _rules_memo[0] < now:
        _rules_memo = (now + _RULES_TTL_SECONDS, DeliveryRules.objects.filter(pk=1).first() or DeliveryRules(pk=1))
    return _rules_memo[1]


def delivery_rules_forget() -> None:
    """Drop this process's memo of the rules (after an edit, and between tests)."""
    global _rules_memo
    _rules_memo = None


def delivery_hold_reason(*, order: Order) -> str:
    """Why a paid order must wait for a person instead of being delivered now, or ""."""
    rules = delivery_rules()
    if not rules.auto_delivery:
        return "automatic delivery is switched off"
    if rules.review_amount is not None and order.total >= rules.review_amount:
        return f"total {order.total} is at or above {rules.review_amount}"
    if rules.review_orders_per_hour:
        hour_ago = timezone.now() - timedelta(hours=1)
        recent = Order.objects.filter(paid_at__gte=hour_ago).exclude(pk=order.pk)
        if recent.filter(contact=order.contact).count() >= rules.review_orders_per_hour:
            return f"{order.contact} placed more than {rules.review_orders_per_hour} orders in the last hour"
        if order.client_ip and recent.filter(client_ip=order.client_ip).count() >= rules.review_orders_per_hour:
            return f"{order.client_ip} placed more than {rules.review_orders_per_hour} orders in the last hour"
    return ""


def _delivery_delay_remaining(*, order: Order) -> float:
    delay = order.product.delivery_delay_minutes  # read with the order lock
    if not delay:
        return 0
    return (order.paid_at + timedelta(minutes=delay) - timezone.now()).total_seconds()


def _order_delivery_later(*, order_id: int, seconds: float) -> None:
    # Short waits ride on the broker; longer ones are picked up by the sweeper when due.
    if seconds <= settings.DELIVERY_MAX_COUNTDOWN_SECONDS:
        from delivery import tasks

        tasks.order_deliver.apply_async_on_commit(args=(order_id,), countdown=seconds)


def order_deliver(*, order_id: int) -> str:
    """Deliver a paid order: exactly ``quantity`` keys, once, in one transaction.

    Idempotent: any status but ``paid`` returns at once, so duplicate tasks, the sweeper and a
    redelivered message after a crash are harmless. Not enough keys: nothing is sold and the
    order goes to the exception queue (out_of_stock). Returns the order's status afterwards.
    Raises ReservationContended (transient).
    """
    _sends_claimed.pop(order_id, None)  # left by an attempt that rolled back
    try:
        with transaction.atomic(durable=True):
            try:
                order = order_lock(order_id)
            except Order.DoesNotExist:
                logger.warning("delivery task for unknown order %s dropped", order_id)
                return "missing"
            if order.status != OrderStatus.PAID:
                return order.status
            wait = _delivery_delay_remaining(order=order)
            if wait > 0:
                _order_delivery_later(order_id=order.pk, seconds=wait)
                return order.status
            held_because = delivery_hold_reason(order=order)
            if held_because:
                order_exception_enter(order=order, reason=ExceptionReason.HELD_FOR_REVIEW, note=held_because)
                return order.status
            # The task sends the message itself after this commit (order_messages_send_now).
            _order_fulfil(order=order, actor="system", schedule_messages=False)
    except StockShortfall:
        _sends_claimed.pop(order_id, None)
        return _order_short_of_stock(order_id=order_id, expected_status=OrderStatus.PAID, actor="system")
    return order.status


def order_retry_delivery(*, order_id: int, actor: str) -> str:
    """Staff action on an exception-queue order: try to deliver it again. Returns the new status.

    delivery_failed: the keys stay; the email is sent again. Other reasons: keys are reserved now
    (an order never gets a second set). Raises DeliveryRefused outside the exception queue.
    """
    with transaction.atomic(durable=True):
        order = order_lock(order_id)
        if order.status != OrderStatus.EXCEPTION:
            raise DeliveryRefused(f"order {order.number} is {order.status}, not in the exception queue")
        if CardKey.objects.filter(order=order).exists():
            order_transition(
                order=order, to=OrderStatus.DELIVERED, event_type="shop.order.delivery_retried", actor=actor
            )
            _order_messages_send(order=order)
        else:
            return _order_retry_fulfil(order=order, actor=actor)
    return order.status


def _order_retry_fulfil(*, order: Order, actor: str) -> str:
    try:
        with transaction.atomic():
            _order_fulfil(order=order, actor=actor)
    except StockShortfall:
        # The savepoint rolled back any keys marked; the order is still in the queue.
        OrderEvent.objects.create(
            order=order, type="delivery.retry.out_of_stock", message=f"needs {order.quantity}", actor=actor
        )
    return order.status


def out_of_stock_orders_schedule(*, product_id: int) -> None:
    """After keys were added to a product: deliver its out_of_stock orders, after commit."""
    from delivery import tasks

    tasks.out_of_stock_orders_deliver.delay_on_commit(product_id)


def out_of_stock_orders_deliver(*, product_id: int) -> int:
    """Deliver a product's out_of_stock exception-queue orders, oldest first, until the pool
    runs short again. Returns how many were delivered."""
    delivered = 0
    order_ids = (
        Order.objects.filter(
            product_id=product_id, status=OrderStatus.EXCEPTION, exception_reason=ExceptionReason.OUT_OF_STOCK
        )
        .order_by("exception_at", "id")
        .values_list("pk", flat=True)
    )
    for order_id in order_ids:
        try:
            status = order_retry_delivery(order_id=order_id, actor="system:restock")
        except DeliveryRefused:
            continue  # staff handled it meanwhile
        if status != OrderStatus.DELIVERED:
            break  # the new keys are used up; the rest keep waiting in order
        delivered += 1
    return delivered


def _message_schedule(*, message_id: int, countdown: float | None = None) -> None:
    from delivery import tasks

    if countdown:
        tasks.message_send.apply_async_on_commit(args=(message_id,), countdown=countdown)
    else:
        tasks.message_send.delay_on_commit(message_id)


def order_deliver_manually(*, order_id: int, secrets: list[str], actor: str, user=None) -> Order:
    """Staff deliver an exception-queue order by typing or pasting its keys (out of stock at the
    supplier, say). The keys are stored encrypted, sold to the order; it becomes delivered and
    the email goes out. Raises DeliveryRefused, ManualKeysRefused."""
    with transaction.atomic(durable=True):
        order = order_lock(order_id)
        if order.status != OrderStatus.EXCEPTION:
            raise DeliveryRefused(f"order {order.number} is {order.status}, not in the exception queue")
        held = CardKey.objects.filter(order=order, status=CardKeyStatus.SOLD).count()
        if held + len([s for s in secrets if s.strip()]) != order.quantity:
            raise DeliveryRefused(f"order {order.number} needs exactly {order.quantity - held} more key(s)")
        cardkeys_add_sold_to_order(order=order, secrets=secrets, batch_note=f"manual delivery {order.number}", created_by=user)
        order_transition(
            order=order, to=OrderStatus.DELIVERED, event_type="shop.order.delivered_manually",
            message=f"{order.quantity - held} key(s) typed by staff", actor=actor,
        )
        _order_messages_send(order=order)
    return order


def cardkey_replace_defective(*, key_id: int, reason: str, actor: str) -> str:
    """A buyer reports a delivered key as defective: void it (kept on the order for the record)
    and sell a replacement from the pool to the same order, then email the keys again. With no
    replacement in stock the order goes to the exception queue (defective_key). Returns the
    order's status. Raises DeliveryRefused for a key that is not sold to an order."""
    key = CardKey.objects.get(pk=key_id)
    if key.status != CardKeyStatus.SOLD or key.order_id is None:
        raise DeliveryRefused(f"key {key.mask} is {key.status}, not a delivered key")
    try:
        with transaction.atomic(durable=True):
            order = order_lock(key.order_id)
            if not CardKey.objects.filter(pk=key.pk, status=CardKeyStatus.SOLD).update(status=CardKeyStatus.VOID):
                raise DeliveryRefused(f"key {key.mask} was already replaced")
            OrderEvent.objects.create(order=order, type="cardpool.key.defective", message=f"{key.mask}: {reason}", actor=actor)
            cardkeys_sell_to_order(order=order, quantity=1)
            OrderEvent.objects.create(order=order, type="cardpool.key.replaced", message=key.mask, actor=actor)
            if order.status == OrderStatus.EXCEPTION and order.exception_reason == ExceptionReason.DEFECTIVE_KEY:
                order_transition(order=order, to=OrderStatus.DELIVERED, event_type="shop.order.delivered", actor=actor)
            _order_messages_send(order=order)
    except StockShortfall:
        with transaction.atomic(durable=True):
            order = order_lock(key.order_id)
            CardKey.objects.filter(pk=key.pk, status=CardKeyStatus.SOLD).update(status=CardKeyStatus.VOID)
            OrderEvent.objects.create(order=order, type="cardpool.key.defective", message=f"{key.mask}: {reason}", actor=actor)
            note = f"{key.mask} defective ({reason}); no replacement in stock"
            if order.status == OrderStatus.EXCEPTION:
                OrderEvent.objects.create(order=order, type="cardpool.key.replacement_missing", message=note, actor=actor)
            else:
                order_exception_enter(order=order, reason=ExceptionReason.DEFECTIVE_KEY, note=note, actor=actor)
    return order.status


# One message per order, channel and notice ("" for the keys): a notice is recorded once
# however often its transition is replayed, and the keys message is reused by every resend.
_MESSAGE_INSERT_SQL = """
    INSERT INTO {table} (order_id, channel, recipient, notice, state, tries, last_error, created_at, updated_at)
    VALUES (%s, %s, %s, %s, %s, %s, '', %s, %s)
    ON CONFLICT (order_id, channel, notice) DO NOTHING
    RETURNING id
"""

# Sends this process claimed inside a delivery transaction and carries out right after its
# commit (order_messages_send_now): order id → [(message id, attempt id, channel, recipient,
# the order as the transaction left it)].
# Process-local and short-lived: order_deliver clears an order's entry before it starts, so a
# rolled-back transaction leaves nothing behind that could be sent.
_sends_claimed: dict[int, list[tuple[int, int, str, str, Order]]] = {}


def message_channel(*, order: Order) -> str | None:
    """How the buyer is reached: email for an email address, SMS for a mobile number; None when
    the shop sends no SMS (SMS_PROVIDER=none: the order page is all there is)."""
    channel = "email" if order.contact_kind == ContactKind.EMAIL else "sms"
    return None if channel == "sms" and not sms_enabled() else channel


def order_notice_record(*, order: Order, notice: str) -> None:
    """Record a notice to the buyer (``exception.<reason>``, ``refunded``) in the caller's
    transaction; it is sent after the commit, retried like any message, and re-driven by the
    sweeper. Recorded once per order, channel and notice, so replays add nothing. Carries no
    key."""
    channel = message_channel(order=order)
    if channel is None:
        return
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    insert = (
        _MESSAGE_INSERT_SQL.format(table=DeliveryMessage._meta.db_table),
        [order.pk, channel, order.contact, notice, MessageState.PENDING, 0, now, now],
    )
    # A savepoint: should the INSERT fail, PostgreSQL would otherwise abort the whole
    # transaction, and with it the move the notice is about (delivery.receivers).
    with transaction.atomic():
        statements_run([insert])
    from delivery import tasks

    tasks.order_notices_send.delay_on_commit(order.pk)


def order_notices_send(*, order_id: int) -> None:
    """Send an order's pending notices now (the task the notice's commit sends)."""
    for message_id in DeliveryMessage.objects.filter(order_id=order_id, state=MessageState.PENDING).exclude(
        notice=""
    ).values_list("pk", flat=True):
        message_send(message_id=message_id)


def _order_messages_send(*, order: Order, schedule: bool = True, statements: list | None = None) -> int | None:
    """(Re)send an order's message after its keys changed: email to an email address, SMS to a
    mobile number (the page always has the keys). Creates the row on first use, in one
    statement (every delivery passes here). ``schedule=False`` leaves the send to the caller
    (the delivery task sends it inline after commit). ``statements``: the caller's writes, run
    in the same round trip. Returns the message id, or None when the shop sends no SMS
    (SMS_PROVIDER=none)."""
    writes = list(statements or [])
    channel = message_channel(order=order)
    if channel is None:
        if writes:
            statements_run(writes)
        return None
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    # Sent by the caller right after commit: the row starts claimed, with its first attempt on
    # record, in this transaction (no claim round trips after it).
    claimed = not schedule
    message = (
        _MESSAGE_INSERT_SQL.format(table=DeliveryMessage._meta.db_table),
        [order.pk, channel, order.contact, "", MessageState.SENDING if claimed else MessageState.PENDING, int(claimed), now, now],
    )
    with connection.cursor() as cursor:
        if claimed and connection.vendor == "postgresql":
            # One round trip: the caller's writes, the message row and its first attempt.
            first_attempt = (_ATTEMPT_FIRST_SQL.format(table=DeliveryAttempt._meta.db_table), [AttemptState.SENDING, now])
            sql_execute(cursor, *statements_chained(writes, first_attempt, named=[("message", *message)]))
            row = cursor.fetchone()
            if row is not None:
                _sends_claimed.setdefault(order.pk, []).append((row[0], row[1], channel, order.contact, order))
                return row[0]
        else:
            if writes:
                statements_run(writes)
            sql_execute(cursor, *message)
            row = cursor.fetchone()
            if row is not None and claimed:
                sql_execute(
                    cursor, _ATTEMPT_INSERT_SQL.format(table=DeliveryAttempt._meta.db_table), [row[0], 1, AttemptState.SENDING, now]
                )
                _sends_claimed.setdefault(order.pk, []).append((row[0], cursor.fetchone()[0], channel, order.contact, order))
                return row[0]
    if row is not None:
        message_id = row[0]
    else:
        message_id = DeliveryMessage.objects.get(order=order, channel=channel, notice="").pk
        DeliveryMessage.objects.filter(pk=message_id).update(state=MessageState.PENDING, tries=0, next_try_at=None, last_error="")
    if schedule:
        _message_schedule(message_id=message_id)
    return message_id


def order_messages_send_now(*, order_id: int) -> None:
    """Send an order's pending messages in this process (the delivery task, right after its
    commit): one broker hop less between payment and the buyer's inbox. A send that fails or
    never happens is retried or re-driven like any other (a claimed one left "sending" by a
    crash is given back by the sweeper)."""
    claimed = _sends_claimed.pop(order_id, None)
    if claimed:
        for message_id, attempt_id, channel_name, recipient, order in claimed:
            message = DeliveryMessage(pk=message_id, order_id=order_id, channel=channel_name, recipient=recipient, tries=1)
            # The order as the delivery transaction left it (locked, then delivered): no re-read.
            _message_deliver(message=message, attempt=DeliveryAttempt(pk=attempt_id, message_id=message_id, number=1), order=order)
        return
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {DeliveryMessage._meta.db_table} WHERE order_id = %s AND state = %s",
            [order_id, MessageState.PENDING],
        )
        message_ids = [row[0] for row in cursor.fetchall()]
    for message_id in message_ids:
        message_send(message_id=message_id)


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
        if order.events.filter(type="delivery.resend", created_at__gte=hour_ago).count() >= settings.DELIVERY_RESEND_PER_ORDER_PER_HOUR:
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


# --- Email ---------------------------------------------------------------------------------


def shop_brand() -> ShopBrand:
    """The shop's name, logo (an absolute URL) and support contacts, for messages to buyers."""
    shop = shop_settings()
    logo_url = ""
    if shop.logo:
        # Absolute for mail readers: a storage URL that is only a path hangs off SITE_URL.
        logo_url = urljoin(settings.SITE_URL + "/", shop.logo.url)
    contacts = [
        (_lazy("Email"), shop.support_email), (_lazy("QQ"), shop.support_qq),
        (_lazy("WeChat"), shop.support_wechat), (_lazy("Telegram"), shop.support_telegram),
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
# The first attempt of a message inserted in the same statement (CTE "message", PostgreSQL).
_ATTEMPT_FIRST_SQL = """
    INSERT INTO {table} (message_id, number, state, provider_message_id, error, permanent, started_at)
    SELECT id, 1, %s, '', '', false, %s FROM message
    RETURNING message_id, id
"""
_ATTEMPT_SENT_SQL = "UPDATE {table} SET state = %s, finished_at = %s, provider_message_id = %s WHERE id = %s"
_MESSAGE_SENT_SQL = "UPDATE {table} SET state = %s, sent_at = %s, last_error = '' WHERE id = %s"


def _message_sent(*, message: DeliveryMessage, attempt_id: int, provider_message_id: str) -> None:
    """Record a sent message: its attempt, its state and the order's event, in one transaction
    (one statement on PostgreSQL)."""
    at = timezone.now()
    now = connection.ops.adapt_datetimefield_value(at)
    statements = [
        (_ATTEMPT_SENT_SQL.format(table=DeliveryAttempt._meta.db_table), [AttemptState.SENT, now, provider_message_id, attempt_id]),
        (_MESSAGE_SENT_SQL.format(table=DeliveryMessage._meta.db_table), [MessageState.SENT, now, message.pk]),
        order_event_statement(
            order_id=message.order_id,
            event_type=f"delivery.{message.channel}.{'notice_sent' if message.notice else 'sent'}",
            message=f"{message.notice} to {message.recipient}" if message.notice else message.recipient,
            actor="system", at=at,
        ),
    ]
    statements_run(statements)


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
    except Exception as exc:  # noqa: BLE001 - a bug here must reach staff, not loop forever
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
            order_id=message.order_id, type=f"delivery.{message.channel}.notice_skipped",
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
        delay = round(base * 2 ** (message.tries - 1) * random.uniform(0.8, 1.2))
        with transaction.atomic():
            DeliveryMessage.objects.filter(pk=message.pk).update(
                state=MessageState.PENDING, next_try_at=timezone.now() + timedelta(seconds=delay), last_error=str(failure)
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
                order_id=message.order_id, type=f"delivery.{message.channel}.notice_failed",
                message=f"{message.notice} to {message.recipient} failed after {message.tries} tries: {failure}",
            )
        return MessageState.FAILED
    with transaction.atomic():
        DeliveryMessage.objects.filter(pk=message.pk).update(state=MessageState.FAILED, last_error=str(failure))
        order = order_lock(message.order_id)
        note = f"{message.channel} to {message.recipient} failed after {message.tries} tries: {failure}"
        if order.status == OrderStatus.DELIVERED:
            order_exception_enter(order=order, reason=ExceptionReason.DELIVERY_FAILED, note=note)
            if settings.ALERT_EMAILS:
                from delivery import tasks

                tasks.staff_alert_email.delay_on_commit(order.pk)
        else:
            OrderEvent.objects.create(order=order, type=f"delivery.{message.channel}.failed", message=note)
    return MessageState.FAILED


# --- Sweeper -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepReport:
    orders: int
    messages: int


def _paid_orders_due(*, cutoff) -> list[int]:
    """Paid, undelivered orders whose delivery was due before ``cutoff``. Orders of products with
    a delivery delay count from paid_at + delay, so they are not re-driven on every sweep while
    they wait."""
    undelayed = Order.objects.filter(status=OrderStatus.PAID, paid_at__lte=cutoff, product__delivery_delay_minutes=0)
    due = list(undelayed.order_by("paid_at").values_list("pk", flat=True)[:1000])
    # Few products delay delivery; their waiting orders are checked here rather than in SQL
    # (SQLite cannot multiply an interval by a column).
    delayed = Order.objects.filter(status=OrderStatus.PAID, product__delivery_delay_minutes__gt=0).values_list(
        "pk", "paid_at", "product__delivery_delay_minutes"
    )
    due += [pk for pk, paid_at, delay in delayed[:5000] if paid_at + timedelta(minutes=delay) <= cutoff]
    return due


def paid_orders_send(*, cutoff) -> list[int]:
    """Send the delivery task of every paid order whose delivery was due before ``cutoff`` (the
    sweeper; a dispatch listener taking over, with ``cutoff`` now). Returns their ids."""
    from delivery import tasks

    order_ids = _paid_orders_due(cutoff=cutoff)
    for order_id in order_ids:
        tasks.order_deliver.send_quietly(order_id)
    return order_ids


def delivery_sweep() -> SweepReport:
    """Re-drive whatever the broker may have lost: paid orders still undelivered and messages
    not sent, both older than DELIVERY_SWEEP_AFTER_SECONDS. Safe to run any number of times."""
    from delivery import tasks

    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.DELIVERY_SWEEP_AFTER_SECONDS)
    order_ids = paid_orders_send(cutoff=cutoff)
    # A worker that died mid-send leaves its try in "sending"; give it back to the queue (the
    # retry is a new attempt; the dead one is closed as failed).
    stuck = list(DeliveryMessage.objects.filter(state=MessageState.SENDING, updated_at__lte=cutoff).values_list("pk", flat=True))
    DeliveryAttempt.objects.filter(message_id__in=stuck, state=AttemptState.SENDING).update(
        state=AttemptState.FAILED, finished_at=now, error="the worker stopped during the send"
    )
    DeliveryMessage.objects.filter(pk__in=stuck, state=MessageState.SENDING).update(state=MessageState.PENDING, next_try_at=now)
    message_ids = list(
        DeliveryMessage.objects.filter(state=MessageState.PENDING)
        .filter(Q(next_try_at__isnull=True, updated_at__lte=cutoff) | Q(next_try_at__lte=cutoff) | Q(next_try_at=now))
        .values_list("pk", flat=True)[:1000]
    )
    for message_id in message_ids:
        tasks.message_send.send_quietly(message_id)
    if order_ids or message_ids:
        logger.info("sweeper re-drove %d orders and %d messages", len(order_ids), len(message_ids))
    return SweepReport(orders=len(order_ids), messages=len(message_ids))


# --- Stock alerts --------------------------------------------------------------------------


_STOCK_ALERT_INSERT_SQL = """
    INSERT INTO {table} (product_id, available, threshold, created_at)
    VALUES (%s, %s, %s, %s)
    ON CONFLICT DO NOTHING
    RETURNING id
"""


def stock_alert_check(*, product_id: int, threshold: int) -> None:
    """Raise one StockAlert when available stock is at or below the product's threshold, and
    email ALERT_EMAILS after commit. It is raised again only after a restock above the
    threshold resolved it. The partial unique index (one open alert per product) makes
    concurrent sales raise it once."""
    if product_has_stock(product_id=product_id, quantity=threshold + 1):
        return
    available = available_counts(product_ids=[product_id]).get(product_id, 0)
    with connection.cursor() as cursor:
        cursor.execute(
            _STOCK_ALERT_INSERT_SQL.format(table=StockAlert._meta.db_table),
            [product_id, available, threshold, connection.ops.adapt_datetimefield_value(timezone.now())],
        )
        row = cursor.fetchone()
    if row is not None and settings.ALERT_EMAILS:
        from delivery import tasks

        tasks.stock_alert_email.delay_on_commit(row[0])


def staff_alert_email(*, order_id: int) -> None:
    """Tell ALERT_EMAILS that an order's delivery failed for good and waits in the exception queue."""
    order = Order.objects.select_related("product").get(pk=order_id)
    context = {"order": order, "admin_url": settings.SITE_URL + reverse("admin:shop_exceptionorder_change", args=[order.pk])}
    with translation.override(settings.LANGUAGE_CODE):
        subject = " ".join(render_to_string("delivery/email/staff_alert_subject.txt", context).split())
        body = render_to_string("delivery/email/staff_alert_body.txt", context)
    EmailMultiAlternatives(subject=subject, body=body, to=settings.ALERT_EMAILS).send()


def stock_alert_email(*, alert_id: int) -> None:
    """Email a low-stock alert, with days of cover at the last 7 days' sales rate, to ALERT_EMAILS."""
    alert = StockAlert.objects.select_related("product").get(pk=alert_id)
    context = {"alert": alert, "cover": stock_cover(product_id=alert.product_id, available=alert.available)}
    with translation.override(settings.LANGUAGE_CODE):
        subject = " ".join(render_to_string("delivery/email/stock_alert_subject.txt", context).split())
        body = render_to_string("delivery/email/stock_alert_body.txt", context)
    EmailMultiAlternatives(subject=subject, body=body, to=settings.ALERT_EMAILS).send()


@dataclass(frozen=True)
class StockCover:
    sold_last_7_days: int
    days: Decimal | None  # None: nothing sold in 7 days


def stock_cover(*, product_id: int, available: int) -> StockCover:
    """How long ``available`` keys last at the last 7 days' sales rate."""
    sold = CardKey.objects.filter(
        product_id=product_id, status=CardKeyStatus.SOLD, sold_at__gte=timezone.now() - timedelta(days=7)
    ).count()
    if not sold:
        return StockCover(sold_last_7_days=0, days=None)
    return StockCover(sold_last_7_days=sold, days=(Decimal(available) * 7 / sold).quantize(Decimal("0.1")))


def stock_alerts_resolve(*, product) -> int:
    """Close a product's open alert once its stock is above the threshold again (after an import)."""
    if not product_has_stock(product_id=product.pk, quantity=product.low_stock_threshold + 1):
        return 0
    return StockAlert.objects.filter(product=product, resolved_at__isnull=True).update(resolved_at=timezone.now())
