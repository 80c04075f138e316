"""Handing keys to paid orders: deliver, hold for review, retry, deliver by hand, replace a
defective key. Messages are ``delivery.messages``; the sweeper ``delivery.sweeper``; stock
alerts ``delivery.stock_alerts``; what delivery does when an order event commits
``delivery.handlers``."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from cardpool.models import CardKey, CardKeyStatus
from cardpool.services import (
    ReservationContended,
    StockShortfall,
    cardkeys_add_sold_to_order,
    cardkeys_sell_to_order,
    cardkeys_shortfall_is_contention,
)
from delivery import tasks
from delivery.messages import ClaimedSend, message_channel, message_first_try, order_messages_send
from delivery.models import DeliveryRules
from delivery.stock_alerts import stock_alert_check
from kameng.sql import row_source, statements_run
from shop.events import ORDER_DELIVERED
from shop.lock_objects import order_lock
from shop.models import ExceptionReason, Order, OrderEvent, OrderStatus
from shop.selectors import orders_paid_since_count
from shop.services import order_exception_enter, order_moves_applied, order_transition
from shop.transitions import order_move

logger = logging.getLogger(__name__)


class DeliveryRefused(Exception):
    """A staff action that does not apply to the order in its current state."""


@dataclass(frozen=True)
class Delivery:
    """What ``order_deliver`` did: the order's status afterwards, and the first tries of its
    messages it claimed, for the caller to carry out after the commit
    (``delivery.messages.messages_send_claimed``)."""

    status: str
    sends: tuple[ClaimedSend, ...] = ()


def _order_fulfil(*, order: Order, actor: str, claim_messages: bool = False) -> tuple[ClaimedSend, ...]:
    """Sell the order's keys and mark it delivered, on a locked order, in the caller's
    transaction. ``claim_messages``: create its keys message already claimed in the same batch
    as the move and return the claimed sends (the delivery task sends them right after the
    commit); otherwise the message is scheduled. Raises StockShortfall: the caller rolls back
    and calls _order_short_of_stock."""
    threshold = order.product.low_stock_threshold
    sale = cardkeys_sell_to_order(order=order, stock_probe=threshold + 1)
    at = timezone.now()
    move = order_move(
        order=order,
        to=OrderStatus.DELIVERED,
        event_type=ORDER_DELIVERED,
        message=f"{order.quantity} key(s)",
        actor=actor,
        at=at,
    )
    channel = message_channel(order=order) if claim_messages else None
    first_try = message_first_try(channel=channel, recipient=order.contact, at=at) if channel else ()
    rows = statements_run([row_source("target", order_id=order.pk), *move.writes, *first_try])
    order_moves_applied(order=order, moves=[move])
    sends: tuple[ClaimedSend, ...] = ()
    if channel:
        sends = tuple(
            ClaimedSend(
                message_id=message_id, attempt_id=attempt_id, channel=channel, recipient=order.contact, order=order
            )
            for message_id, attempt_id in rows
        )
    if not sends:
        order_messages_send(order=order)  # scheduled; reuses a message row an earlier delivery left
    if not sale.stock_left:  # at or below the threshold now, or not probed
        stock_alert_check(product_id=order.product_id, threshold=threshold)
    return sends


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
    limit = rules.review_orders_per_hour
    if limit:
        recent = orders_paid_since_count(
            contact=order.contact,
            client_ip=order.client_ip,
            since=timezone.now() - timedelta(hours=1),
            exclude_id=order.pk,
            up_to=limit,
        )
        if recent.by_contact >= limit:
            return f"{order.contact} placed more than {limit} orders in the last hour"
        if recent.by_client_ip >= limit:
            return f"{order.client_ip} placed more than {limit} orders in the last hour"
    return ""


def _delivery_delay_remaining(*, order: Order) -> float:
    delay = order.product.delivery_delay_minutes  # read with the order lock
    if not delay or order.paid_at is None:
        return 0
    return (order.paid_at + timedelta(minutes=delay) - timezone.now()).total_seconds()


def _order_delivery_later(*, order_id: int, seconds: float) -> None:
    # Short waits ride on the broker; longer ones are picked up by the sweeper when due.
    if seconds <= settings.DELIVERY_MAX_COUNTDOWN_SECONDS:
        tasks.order_deliver.apply_async_on_commit(args=(order_id,), countdown=seconds)


def order_deliver(*, order_id: int) -> Delivery:
    """Deliver a paid order: exactly ``quantity`` keys, once, in one transaction. Returns the
    order's status afterwards and the message tries it claimed (``Delivery``).

    Idempotent: any status but ``paid`` returns at once, so duplicate tasks, the sweeper and a
    redelivered message after a crash are harmless. Not enough keys: nothing is sold and the
    order goes to the exception queue (out_of_stock). Raises ReservationContended (transient).
    """
    try:
        with transaction.atomic(durable=True):
            try:
                order = order_lock(order_id)
            except Order.DoesNotExist:
                logger.warning("delivery task for unknown order %s dropped", order_id)
                return Delivery(status="missing")
            if order.status != OrderStatus.PAID:
                return Delivery(status=order.status)
            wait = _delivery_delay_remaining(order=order)
            if wait > 0:
                _order_delivery_later(order_id=order.pk, seconds=wait)
                return Delivery(status=order.status)
            held_because = delivery_hold_reason(order=order)
            if held_because:
                order_exception_enter(order=order, reason=ExceptionReason.HELD_FOR_REVIEW, note=held_because)
                return Delivery(status=order.status)
            sends = _order_fulfil(order=order, actor="system", claim_messages=True)
    except StockShortfall:
        return Delivery(
            status=_order_short_of_stock(order_id=order_id, expected_status=OrderStatus.PAID, actor="system")
        )
    return Delivery(status=order.status, sends=sends)


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
            order_messages_send(order=order)
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
        cardkeys_add_sold_to_order(
            order=order, secrets=secrets, batch_note=f"manual delivery {order.number}", created_by=user
        )
        order_transition(
            order=order,
            to=OrderStatus.DELIVERED,
            event_type="shop.order.delivered_manually",
            message=f"{order.quantity - held} key(s) typed by staff",
            actor=actor,
        )
        order_messages_send(order=order)
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
            OrderEvent.objects.create(
                order=order, type="cardpool.key.defective", message=f"{key.mask}: {reason}", actor=actor
            )
            cardkeys_sell_to_order(order=order, quantity=1)
            OrderEvent.objects.create(order=order, type="cardpool.key.replaced", message=key.mask, actor=actor)
            if order.status == OrderStatus.EXCEPTION and order.exception_reason == ExceptionReason.DEFECTIVE_KEY:
                order_transition(order=order, to=OrderStatus.DELIVERED, event_type=ORDER_DELIVERED, actor=actor)
            order_messages_send(order=order)
    except StockShortfall:
        with transaction.atomic(durable=True):
            order = order_lock(key.order_id)
            CardKey.objects.filter(pk=key.pk, status=CardKeyStatus.SOLD).update(status=CardKeyStatus.VOID)
            OrderEvent.objects.create(
                order=order, type="cardpool.key.defective", message=f"{key.mask}: {reason}", actor=actor
            )
            note = f"{key.mask} defective ({reason}); no replacement in stock"
            if order.status == OrderStatus.EXCEPTION:
                OrderEvent.objects.create(
                    order=order, type="cardpool.key.replacement_missing", message=note, actor=actor
                )
            else:
                order_exception_enter(order=order, reason=ExceptionReason.DEFECTIVE_KEY, note=note, actor=actor)
    return order.status


# One message per order, channel and notice ("" for the keys): a notice is recorded once
# however often its transition is replayed, and the keys message is reused by every resend.
