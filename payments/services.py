"""Payment attempts and notifications: verify first, then confirm once under a row lock."""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from delivery.services import order_delivery_schedule
from payments.gateways.base import NotificationRejected, PaymentAction, PaymentGateway, PaymentRequest, VerifiedNotification
from payments.models import NotificationVerdict, Payment, PaymentNotification, PaymentState
from shop.models import Order, OrderEvent, OrderStatus
from shop.services import order_payment_received

logger = logging.getLogger(__name__)

RAW_PAYLOAD_LIMIT = 8000


class PaymentRefused(Exception):
    """The order cannot be paid now (not pending, or expired)."""


def payment_start(
    *, order: Order, gateway: PaymentGateway, mobile: bool = False, client_ip: str = ""
) -> tuple[Payment, PaymentAction]:
    """Create a payment attempt for a pending order and ask the gateway how the buyer pays.

    Raises PaymentRefused when the order is no longer payable, GatewayError when the platform
    cannot be reached or refuses (the attempt row stays, unused).
    """
    if order.status != OrderStatus.PENDING or order.expires_at <= timezone.now():
        raise PaymentRefused(order.status)
    with transaction.atomic():
        payment = Payment.objects.create(
            order=order,
            gateway=gateway.identifier,
            out_trade_no=f"{order.number}{secrets.token_hex(4).upper()}",
            amount=order.total,
        )
        OrderEvent.objects.create(order=order, type="payments.payment.started", message=gateway.identifier, actor="buyer")
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
        payment.save(update_fields=["qr_content"])
    return payment, action


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
    with transaction.atomic(durable=True):
        payment = (
            Payment.objects.select_for_update()
            .filter(out_trade_no=notice.out_trade_no, gateway=gateway.identifier)
            .first()
        )
        if payment is None:
            return _rejected(gateway=gateway, raw=raw, reason="unknown out_trade_no", out_trade_no=notice.out_trade_no)
        ledger, created = PaymentNotification.objects.get_or_create(
            gateway=gateway.identifier,
            transaction_id=notice.transaction_id,
            defaults={
                "out_trade_no": notice.out_trade_no,
                "payment": payment,
                "raw_payload": raw,
                "verdict": NotificationVerdict.ACCEPTED,
            },
        )
        if not created:
            PaymentNotification.objects.filter(pk=ledger.pk).update(times_received=ledger.times_received + 1)
            return NotificationOutcome(accepted=True, verdict=NotificationVerdict.DUPLICATE)
        if notice.paid:
            payment_confirm(payment=payment, notice=notice)
    return NotificationOutcome(accepted=True, verdict=NotificationVerdict.ACCEPTED)


def payment_confirm(*, payment: Payment, notice: VerifiedNotification, actor: str = "system") -> str:
    """Confirm a locked payment from a verified notice; idempotent. Returns the payment's state.

    Equal amount → succeeded and the order is paid (delivery is sent after commit).
    A different amount → mismatched and the order goes to the exception queue.
    An already-confirmed payment is left as it is.
    """
    if payment.state != PaymentState.CREATED:
        return payment.state
    payment.paid_amount = notice.amount
    payment.transaction_id = notice.transaction_id
    payment.confirmed_at = timezone.now()
    payment.state = PaymentState.SUCCEEDED if notice.amount == payment.amount else PaymentState.MISMATCHED
    payment.save(update_fields=["paid_amount", "transaction_id", "confirmed_at", "state"])
    received = order_payment_received(
        order_id=payment.order_id, amount=notice.amount, gateway=payment.gateway, actor=actor
    )
    if received.needs_delivery:
        order_delivery_schedule(order_id=payment.order_id)
    return payment.state
