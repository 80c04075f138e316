"""Payment attempts and notifications: verify first, then confirm once under a row lock."""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from kameng.sql import first_statement, row_locks, row_source, statements_run
from payments.confirmation import guarded_confirmation, ledger_upsert, payment_confirmation
from payments.gateways.base import (
    GatewayError,
    NotificationRejected,
    PaymentAction,
    PaymentGateway,
    PaymentRequest,
    VerifiedNotification,
)
from payments.lock_objects import payment_lock
from payments.models import (
    AWAITING_MONEY,
    MONEY_RECEIVED,
    NotificationVerdict,
    Payment,
    PaymentNotification,
    PaymentState,
    Refund,
    RefundState,
)
from payments.registry import GatewayNotFound, gateway_get
from payments.selectors import orders_with_duplicate_payment_ids, payments_awaiting_notification
from shop.events import ORDER_PAID
from shop.fulfilment import fulfilment
from shop.lock_objects import order_lock
from shop.models import ExceptionReason, Order, OrderEvent, OrderStatus
from shop.outbox import order_events_announce
from shop.selectors import orders_expired_ids
from shop.services import (
    order_cancel,
    order_duplicate_payment_queue,
    order_expire,
    order_mark_test,
    order_moves_applied,
    order_refunded,
    order_resolve,
)

logger = logging.getLogger(__name__)

RAW_PAYLOAD_LIMIT = 8000


class PaymentRefused(Exception):
    """The order cannot be paid now (not pending, or expired)."""


class PaymentRefusedSoldOut(PaymentRefused):
    """The order's product can no longer cover its quantity: no money is asked for."""


# One gateway call per order at a time (a cache lock, like the rate limits): a double click
# waits for the first click's call (the SDKs time out after 10 s) and then finds its attempt to
# reuse, instead of opening a second trade while the first is still being created.
PAYMENT_START_WAIT_SECONDS = 12.0
PAYMENT_START_LOCK_SECONDS = 30  # outlives any gateway call; a crashed request's lock expires


class PaymentInProgress(Exception):
    """Another click on this order's Pay button is still waiting for the gateway; try again soon."""


def payment_start(
    *, order: Order, gateway: PaymentGateway, mobile: bool = False, client_ip: str = ""
) -> tuple[Payment, PaymentAction]:
    """Create a payment attempt for a pending order and ask the gateway how the buyer pays.

    Clicking "Pay" again opens no second trade at the platform: an attempt of the same gateway and
    device kind that the gateway answered within the last PAYMENT_REUSE_SECONDS, still awaiting
    money, is returned again with its action. Clicks on one order take turns (a double click
    waits for the first one's gateway call, up to PAYMENT_START_WAIT_SECONDS).

    Raises PaymentRefused when the order is no longer payable, PaymentRefusedSoldOut when its
    product's stock cannot cover it any more (nothing is sent to a platform; a payment started
    earlier that still arrives lands in the exception queue as out_of_stock), PaymentInProgress
    when another click's gateway call did not finish in time, GatewayError when the platform
    cannot be reached or refuses (the attempt row stays, unused).
    """
    if order.status != OrderStatus.PENDING or order.expires_at <= timezone.now():
        raise PaymentRefused(order.status)
    if not fulfilment().units_available(product_id=order.product_id, quantity=order.quantity):
        raise PaymentRefusedSoldOut(order.number)
    lock_key, holder = f"kameng:payment-start:{order.pk}", secrets.token_hex(8)
    deadline = time.monotonic() + PAYMENT_START_WAIT_SECONDS
    while not cache.add(lock_key, holder, timeout=PAYMENT_START_LOCK_SECONDS):
        if time.monotonic() > deadline:
            raise PaymentInProgress(order.number)
        time.sleep(0.1)  # the other click's gateway call: a fraction of a second, usually
    try:
        return _payment_start_turn(order=order, gateway=gateway, mobile=mobile, client_ip=client_ip)
    finally:
        if cache.get(lock_key) == holder:
            cache.delete(lock_key)


def _payment_start_turn(
    *, order: Order, gateway: PaymentGateway, mobile: bool, client_ip: str
) -> tuple[Payment, PaymentAction]:
    with transaction.atomic():
        # Re-checked under the order's lock: the order may have been paid, cancelled or expired
        # while this click waited. Nothing else is locked, so the lock order (payment, order) holds.
        locked = order_lock(order.pk)
        now = timezone.now()
        if locked.status != OrderStatus.PENDING or locked.expires_at <= now:
            raise PaymentRefused(locked.status)
        recent = Payment.objects.filter(
            order=locked,
            gateway=gateway.identifier,
            mobile=mobile,
            state=PaymentState.CREATED,
            created_at__gt=now - timedelta(seconds=settings.PAYMENT_REUSE_SECONDS),
        ).order_by("-created_at", "-id")
        for candidate in recent[:5]:
            reused = _payment_action_recall(payment=candidate)
            if reused is not None:
                return candidate, reused
        if not gateway.is_enabled():  # staff test mode (registry only admits it for staff)
            order_mark_test(order=order, gateway=gateway.identifier)
        payment = Payment.objects.create(
            order=order,
            gateway=gateway.identifier,
            out_trade_no=f"{order.number}{secrets.token_hex(4).upper()}",
            amount=order.total,
            mobile=mobile,
        )
        OrderEvent.objects.create(
            order=order, type="payments.payment.started", message=gateway.identifier, actor="buyer"
        )
    action = gateway.create_payment(
        PaymentRequest(
            out_trade_no=payment.out_trade_no,
            amount=payment.amount,
            subject=f"{order.product.name} x{order.quantity}",
            notify_url=settings.SITE_URL + reverse("payments:notify", args=[gateway.identifier]),
            return_url=settings.SITE_URL + reverse("shop:order", args=[order.access_token]),
            mobile=mobile,
            client_ip=client_ip,
        )
    )
    if action.qr_content:
        payment.qr_content = action.qr_content[:512]
        Payment.objects.filter(pk=payment.pk).update(qr_content=payment.qr_content)
    if action.redirect_url:
        cache.set(_payment_action_key(payment.pk), action.redirect_url, timeout=settings.PAYMENT_REUSE_SECONDS)
    return payment, action


def _payment_action_key(payment_id: int) -> str:
    return f"kameng:payment-redirect:{payment_id}"


def _payment_action_recall(*, payment: Payment) -> PaymentAction | None:
    """The action the gateway gave ``payment``, or None when it never answered (or its redirect
    has left the cache). A redirect URL is kept in the cache only, never in the database: page
    and wap pay URLs carry the return URL, and with it the order page's token."""
    if payment.qr_content:
        return PaymentAction(qr_content=payment.qr_content)
    redirect_url = cache.get(_payment_action_key(payment.pk))
    return PaymentAction(redirect_url=redirect_url) if redirect_url else None


@dataclass(frozen=True)
class NotificationOutcome:
    accepted: bool
    verdict: str
    reason: str = ""


def _raw_payload(body: bytes, form: Mapping[str, str]) -> str:
    if form:
        text = json.dumps(dict(form.items()), ensure_ascii=False, sort_keys=True)
    else:
        text = body.decode("utf-8", errors="replace")
    # PostgreSQL text cannot hold NUL; a hostile body must still be recorded, not crash the view.
    return text.replace("\x00", "\ufffd")[:RAW_PAYLOAD_LIMIT]


def _rejected(*, gateway: PaymentGateway, raw: str, reason: str, out_trade_no: str = "") -> NotificationOutcome:
    PaymentNotification.objects.create(
        gateway=gateway.identifier,
        out_trade_no=out_trade_no[:64].replace("\x00", ""),
        raw_payload=raw,
        verdict=NotificationVerdict.REJECTED,
        reason=reason[:255],
    )
    logger.warning("rejected %s notification: %s", gateway.identifier, reason)
    return NotificationOutcome(accepted=False, verdict=NotificationVerdict.REJECTED, reason=reason)


def notification_receive(
    *, gateway: PaymentGateway, body: bytes, headers: Mapping[str, str], form: Mapping[str, str]
) -> NotificationOutcome:
    """Verify a gateway's notification and apply it once. Returns how to answer.

    A notification that fails verification is recorded as rejected and changes nothing else.
    A verified one is recorded once per gateway transaction id; the payment row is locked
    first, so duplicate, replayed and concurrent copies confirm the payment exactly once.
    """
    raw = _raw_payload(body, form)
    try:
        notice = gateway.parse_notification(body=body, headers=headers, form=form)
    except NotificationRejected as exc:
        return _rejected(gateway=gateway, raw=raw, reason=str(exc))
    return _notice_apply(gateway=gateway, notice=notice, raw=raw)


def _notice_apply(
    *, gateway: PaymentGateway, notice: VerifiedNotification, raw: str, actor: str = "system"
) -> NotificationOutcome:
    """Apply a verified notice (from a notification or a platform query) exactly once.

    With row locks (PostgreSQL), a paid notice of an enabled gateway is tried first as one
    guarded statement (``payments.confirmation.guarded_confirmation``): the common case, a
    payment awaiting exactly this amount whose order is payable for it. Every other case (a
    duplicate or replay, a notice that pays nothing, a wrong amount, an order no longer
    pending, a disabled gateway's test order), and every notice on SQLite, is decided with the
    payment and its order locked (``payment_lock``): concurrent copies queue there and see the
    payment as the one before them left it. Both run the same writes (``payment_confirmation``).
    """
    guarded = notice.paid and row_locks() and gateway.is_enabled()
    if guarded and payment_confirm_guarded(gateway=gateway, notice=notice, raw=raw, actor=actor):
        return NotificationOutcome(accepted=True, verdict=NotificationVerdict.ACCEPTED)
    with transaction.atomic(durable=True):
        found = payment_lock(out_trade_no=notice.out_trade_no, gateway=gateway.identifier)
        return _notice_decide(gateway=gateway, notice=notice, raw=raw, actor=actor, found=found)


def payment_confirm_guarded(*, gateway: PaymentGateway, notice: VerifiedNotification, raw: str, actor: str) -> bool:
    """Confirm a paid notice in one guarded statement (PostgreSQL; the common case, see
    ``payments.confirmation.guarded_confirmation``); False when it matched nothing, and then
    nothing was written and the caller decides under ``payment_lock``. As the request's first
    statement it also stands in for the connection's health
    check (``first_statement``): run twice, the second run finds the payment confirmed."""
    statements = guarded_confirmation(
        gateway=gateway.identifier, notice=notice, raw=raw, actor=actor, at=timezone.now()
    )
    rows = first_statement(lambda: statements_run(statements))
    if not rows:
        return False
    order_events_announce(order_id=rows[0][0], event_types=[ORDER_PAID])
    return True


def _notice_decide(
    *, gateway: PaymentGateway, notice: VerifiedNotification, raw: str, actor: str, found: tuple[Payment, Order] | None
) -> NotificationOutcome:
    """The rules for a verified notice, on its payment and order, both locked (``payment_lock``)."""
    if found is None:
        return _rejected(gateway=gateway, raw=raw, reason="unknown out_trade_no", out_trade_no=notice.out_trade_no)
    payment, order = found
    if not gateway.is_enabled() and not order.is_test:
        # Staff test mode only: a public order can never be paid by a disabled gateway.
        return _rejected(gateway=gateway, raw=raw, reason="gateway disabled", out_trade_no=notice.out_trade_no)
    if notice.paid and payment.state in AWAITING_MONEY:
        payment_confirm(payment=payment, order=order, notice=notice, raw=raw, actor=actor)
        return NotificationOutcome(accepted=True, verdict=NotificationVerdict.ACCEPTED)
    # A notice that confirms nothing only goes in the ledger (one upsert).
    upsert = ledger_upsert(gateway=gateway.identifier, notice=notice, payment_id=payment.pk, raw=raw, at=timezone.now())
    if statements_run([upsert])[0][0] != 1:
        return NotificationOutcome(accepted=True, verdict=NotificationVerdict.DUPLICATE)
    return NotificationOutcome(accepted=True, verdict=NotificationVerdict.ACCEPTED)


def payment_confirm(
    *, payment: Payment, order: Order, notice: VerifiedNotification, raw: str, actor: str = "system"
) -> str:
    """Confirm a payment awaiting money (``AWAITING_MONEY``) from a verified paid notice, and
    record the notice. The caller locked the payment and its order (``payment_lock``) and
    checked its state under that lock, so duplicate and concurrent notices confirm it once.
    Returns the payment's new state (``payments.confirmation.payment_confirmation`` decides).
    A paid order is delivered by the outbox's handler after commit. Raises ValueError."""
    at = timezone.now()
    confirmation = payment_confirmation(payment=payment, order=order, notice=notice, raw=raw, actor=actor, at=at)
    statements_run([row_source("target", payment_id=payment.pk, order_id=order.pk), *confirmation.writes])
    payment.paid_amount, payment.transaction_id, payment.confirmed_at = notice.amount, notice.transaction_id, at
    payment.state = confirmation.state
    order_moves_applied(order=order, moves=confirmation.outcome.moves)
    if confirmation.outcome.duplicate:
        logger.warning("order %s received a second payment of %s", order.number, notice.amount)
    return payment.state


# --- Reconciliation (补单) -------------------------------------------------------------------


def payment_reconcile(*, payment_id: int, actor: str = "system") -> str:
    """Ask the platform about a payment still waiting for its notification, and apply what it
    says exactly as a notification would (a lost notification still ends in delivery).

    Returns "paid", "unpaid" or "unknown". Raises GatewayError when the platform cannot answer.
    """
    payment = Payment.objects.get(pk=payment_id)
    if payment.state not in AWAITING_MONEY:
        return "paid" if payment.state in MONEY_RECEIVED else "unpaid"
    gateway = gateway_get(payment.gateway)
    status = gateway.query(out_trade_no=payment.out_trade_no)
    if status is None or not status.paid:
        return "unknown" if status is None else "unpaid"
    if status.amount is None or not status.transaction_id:
        raise GatewayError(f"{payment.gateway} query for {payment.out_trade_no} lacks amount or transaction id")
    notice = VerifiedNotification(
        out_trade_no=payment.out_trade_no, transaction_id=status.transaction_id, amount=status.amount, paid=True
    )
    raw = json.dumps({"source": "query", "transaction_id": status.transaction_id, "amount": str(status.amount)})
    _notice_apply(gateway=gateway, notice=notice, raw=raw, actor=actor)
    return "paid"


def payments_reconcile_due(*, now: datetime | None = None) -> int:
    """Query the platform for payments still unconfirmed a few minutes after they started.
    Returns how many were found paid. Platform errors are logged and retried next run."""
    now = now or timezone.now()
    found = 0
    for payment_id in payments_awaiting_notification(now=now):
        try:
            found += payment_reconcile(payment_id=payment_id) == "paid"
        except (GatewayError, GatewayNotFound):
            logger.warning("could not reconcile payment %s", payment_id, exc_info=True)
    return found


def order_expire_reconciled(*, order_id: int, now: datetime | None = None) -> bool:
    """Expire an unpaid order whose time is up — after asking the platform about each of its
    payments, so a payment whose notification was lost is never expired away. Unpaid trades
    are then closed at the platform. Returns True if the order expired.

    While a platform cannot answer, the order waits (up to ORDER_EXPIRE_GRACE_MINUTES past its
    time); a payment that still arrives later goes to the exception queue, never lost.
    """
    now = now or timezone.now()
    order = Order.objects.get(pk=order_id)
    if order.status != OrderStatus.PENDING or order.expires_at > now:
        return False
    unanswered = False
    for payment in order.payments.filter(state=PaymentState.CREATED):
        try:
            if payment_reconcile(payment_id=payment.pk) == "paid":
                return False
        except (GatewayError, GatewayNotFound):
            logger.warning("could not ask about payment %s before expiry", payment.out_trade_no, exc_info=True)
            unanswered = True
    if unanswered and now < order.expires_at + timedelta(minutes=settings.ORDER_EXPIRE_GRACE_MINUTES):
        return False
    if not order_expire(order_id=order_id):
        return False
    for payment in order.payments.filter(state=PaymentState.CREATED):
        payment_close(payment_id=payment.pk)
    return True


def orders_expire_due(*, now: datetime | None = None) -> int:
    now = now or timezone.now()
    return sum(order_expire_reconciled(order_id=pk, now=now) for pk in orders_expired_ids(now=now))


def payment_close(*, payment_id: int) -> bool:
    """Close an unpaid trade at the platform so it can no longer be paid. Best effort: a payment
    that still lands later goes to the exception queue (paid_after_expiry)."""
    payment = Payment.objects.get(pk=payment_id)
    try:
        gateway_get(payment.gateway).close(out_trade_no=payment.out_trade_no)
    except (GatewayError, GatewayNotFound):
        logger.warning("could not close %s at %s", payment.out_trade_no, payment.gateway, exc_info=True)
        return False
    closed = Payment.objects.filter(pk=payment_id, state=PaymentState.CREATED).update(state=PaymentState.CLOSED)
    return bool(closed)


def duplicate_payments_queue() -> int:
    """Put delivered orders holding an unrefunded duplicate payment into the exception queue
    (a second payment that arrived while the first was still being delivered)."""
    queued = 0
    for order_id in orders_with_duplicate_payment_ids():
        with transaction.atomic(durable=True):
            order = order_lock(order_id)
            queued += order_duplicate_payment_queue(order=order, note="second payment arrived during delivery")
    return queued


# --- Refunds -------------------------------------------------------------------------------


class RefundRefused(Exception):
    """This payment cannot be refunded (no money received, or a refund is live or done)."""


def refund_request(*, payment_id: int, actor: str, reason: str = "") -> Refund:
    """Refund a payment's money through its platform. Money moves.

    The attempt row is written (and the one-live-refund-per-payment constraint checked) before
    the platform is called; every attempt reuses the same out_refund_no, so a retry after a
    timeout cannot refund twice. On success the payment is refunded and, when it was the order's
    payment, the order leaves the exception queue as refunded; a refunded duplicate payment
    returns its delivered order to delivered. Raises RefundRefused, GatewayError.
    """
    with transaction.atomic(durable=True):
        payment = Payment.objects.select_for_update().get(pk=payment_id)
        if payment.state not in MONEY_RECEIVED or payment.paid_amount is None:
            raise RefundRefused(f"payment {payment.out_trade_no} is {payment.state}: nothing to refund")
        paid_amount = payment.paid_amount
        if payment.refunds.exclude(state=RefundState.FAILED).exists():
            raise RefundRefused(f"payment {payment.out_trade_no} already has a refund")
        refund = Refund.objects.create(
            payment=payment,
            out_refund_no=f"R{payment.out_trade_no}"[:64],
            amount=paid_amount,
            reason=reason[:255],
            requested_by=actor,
        )
        OrderEvent.objects.create(
            order_id=payment.order_id,
            type="payments.refund.requested",
            message=f"{payment.gateway} {refund.amount} ({refund.out_refund_no}) {reason}".strip(),
            actor=actor,
        )
    try:
        result = gateway_get(payment.gateway).refund(
            out_trade_no=payment.out_trade_no,
            out_refund_no=refund.out_refund_no,
            amount=refund.amount,
            total=paid_amount,
            reason=reason,
        )
    except (GatewayError, GatewayNotFound) as exc:
        with transaction.atomic(durable=True):
            Refund.objects.filter(pk=refund.pk).update(
                state=RefundState.FAILED, error=str(exc)[:2000], completed_at=timezone.now()
            )
            OrderEvent.objects.create(
                order_id=payment.order_id, type="payments.refund.failed", message=str(exc)[:500], actor=actor
            )
        raise
    with transaction.atomic(durable=True):
        payment = Payment.objects.select_for_update().get(pk=payment_id)
        was_duplicate = payment.state == PaymentState.DUPLICATE
        Refund.objects.filter(pk=refund.pk).update(
            state=RefundState.SUCCEEDED, platform_refund_id=result.refund_id[:64], completed_at=timezone.now()
        )
        Payment.objects.filter(pk=payment.pk).update(state=PaymentState.REFUNDED)
        OrderEvent.objects.create(
            order_id=payment.order_id, type="payments.refund.succeeded", message=refund.out_refund_no, actor=actor
        )
        order = order_lock(payment.order_id)
        if order.status == OrderStatus.EXCEPTION:
            if was_duplicate and order.exception_reason == ExceptionReason.DUPLICATE_PAYMENT:
                order_resolve(
                    order_id=order.pk, note=f"duplicate payment refunded ({refund.out_refund_no})", actor=actor
                )
            elif not was_duplicate:
                order_refunded(order_id=order.pk, note=refund.out_refund_no, actor=actor)
    refund.refresh_from_db()
    return refund


def order_refund(*, order_id: int, actor: str, reason: str = "") -> Refund:
    """Staff action on an exception-queue order: refund the payment that needs it — the
    duplicate one for ``duplicate_payment``, otherwise the order's own. Raises RefundRefused."""
    order = Order.objects.get(pk=order_id)
    if order.status != OrderStatus.EXCEPTION:
        raise RefundRefused(f"order {order.number} is {order.status}; only exception-queue orders are refunded here")
    wanted = (
        [PaymentState.DUPLICATE]
        if order.exception_reason == ExceptionReason.DUPLICATE_PAYMENT
        else [PaymentState.SUCCEEDED, PaymentState.MISMATCHED]
    )
    payment = order.payments.filter(state__in=wanted).order_by("confirmed_at").first()
    if payment is None:
        raise RefundRefused(f"order {order.number} has no payment to refund")
    return refund_request(payment_id=payment.pk, actor=actor, reason=reason)


def orders_query_platform(*, order_ids: list[int], actor: str) -> list[tuple[Order, str]]:
    """Staff action: ask the platform about each order's unconfirmed payments now."""
    results = []
    for order in Order.objects.filter(pk__in=order_ids):
        outcomes = []
        for payment in order.payments.filter(state__in=AWAITING_MONEY):
            try:
                outcomes.append(f"{payment.gateway} {payment_reconcile(payment_id=payment.pk, actor=actor)}")
            except (GatewayError, GatewayNotFound) as exc:
                outcomes.append(f"{payment.gateway} error: {exc}")
        results.append((order, ", ".join(outcomes) or "no unconfirmed payment"))
    return results


def order_cancel_by_buyer(*, order_id: int) -> bool:
    """Cancel an unpaid order and close its trades at the platforms (best effort)."""
    if not order_cancel(order_id=order_id, actor="buyer"):
        return False
    for payment_id in Payment.objects.filter(order_id=order_id, state=PaymentState.CREATED).values_list(
        "pk", flat=True
    ):
        payment_close(payment_id=payment_id)
    return True
