"""The two ways a paid notice is confirmed write the same rows (payments/confirmation.py).

The locked path decides on the rows it locked; the guarded one-statement path assumes the
common case and lets a guarded FOR UPDATE find it. For every state a payment and its order can
be in, the guarded path either writes exactly what the locked path writes, or matches nothing
and writes nothing; and it matches exactly when the rule (shop.transitions.order_payment)
says the order is paid.
"""

from __future__ import annotations

import secrets
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone

from payments.gateways.base import VerifiedNotification
from payments.lock_objects import payment_lock
from payments.models import Payment, PaymentNotification, PaymentState
from payments.registry import gateway_get
from payments.services import payment_confirm, payment_confirm_guarded
from shop.models import Order, OrderEvent, OrderStatus
from tests.support.factories import OrderFactory, ProductFactory

pytestmark = pytest.mark.django_db

TOTAL = Decimal("25.00")

# (order status, amount paid): every state the rule distinguishes.
SCENARIOS = [
    ("pending", TOTAL),
    ("pending", Decimal("24.99")),
    ("expired", TOTAL),
    ("cancelled", TOTAL),
    ("paid", TOTAL),
    ("delivered", TOTAL),
    ("exception", TOTAL),
]


def _world(status: str, amount: Decimal) -> tuple[Payment, VerifiedNotification]:
    """An order in ``status`` with an unconfirmed payment of its total, and a verified notice
    paying ``amount`` for it."""
    order = OrderFactory(product=ProductFactory(price=Decimal("12.50")), quantity=2, status=status)
    if status in (OrderStatus.PAID, OrderStatus.DELIVERED, OrderStatus.EXCEPTION):
        Order.objects.filter(pk=order.pk).update(paid_at=timezone.now())
    payment = Payment.objects.create(
        order=order, gateway="sandbox", out_trade_no=f"{order.number}{secrets.token_hex(4).upper()}", amount=TOTAL
    )
    notice = VerifiedNotification(
        out_trade_no=payment.out_trade_no, transaction_id="SBX" + secrets.token_hex(8), amount=amount, paid=True
    )
    return payment, notice


def _written(payment: Payment) -> dict:
    """What a user of the admin sees of a payment, its order, its events and its ledger."""
    payment = Payment.objects.get(pk=payment.pk)
    order = Order.objects.get(pk=payment.order_id)
    return {
        "payment": (payment.state, payment.paid_amount, payment.confirmed_at is not None, bool(payment.transaction_id)),
        "order": (
            order.status,
            order.exception_reason,
            order.exception_note,
            order.paid_at is not None,
            order.exception_at is not None,
        ),
        "events": [
            (e.type, e.message, e.actor, e.dispatched_at is None)
            for e in OrderEvent.objects.filter(order=order).order_by("id")
        ],
        "ledger": [
            (n.gateway, n.paid, n.verdict, n.times_received, n.out_trade_no == payment.out_trade_no)
            for n in PaymentNotification.objects.filter(payment=payment)
        ],
    }


def _confirm_locked(payment: Payment, notice: VerifiedNotification) -> None:
    with transaction.atomic():
        locked_payment, locked_order = payment_lock(out_trade_no=notice.out_trade_no, gateway="sandbox")
        payment_confirm(payment=locked_payment, order=locked_order, notice=notice, raw="{}")


@pytest.mark.postgres
@pytest.mark.parametrize("status, amount", SCENARIOS)
def test_guarded_confirmation_writes_what_the_locked_one_writes_or_nothing(status, amount):
    locked_payment, locked_notice = _world(status, amount)
    guarded_payment, guarded_notice = _world(status, amount)
    before = _written(guarded_payment)

    _confirm_locked(locked_payment, locked_notice)
    matched = payment_confirm_guarded(gateway=gateway_get("sandbox"), notice=guarded_notice, raw="{}", actor="system")

    locked = _written(locked_payment)
    assert matched == (locked["order"][0] == OrderStatus.PAID and status == OrderStatus.PENDING)
    if matched:
        assert _written(guarded_payment) == locked
    else:
        assert _written(guarded_payment) == before
        _confirm_locked(guarded_payment, guarded_notice)  # what the notification view does next
        assert _written(guarded_payment) == locked


@pytest.mark.parametrize("status, amount", SCENARIOS)
def test_locked_confirmation_follows_the_payment_rule(status, amount):
    payment, notice = _world(status, amount)

    _confirm_locked(payment, notice)

    written = _written(payment)
    expected_state = {
        ("pending", TOTAL): PaymentState.SUCCEEDED,
        ("pending", Decimal("24.99")): PaymentState.MISMATCHED,
        ("expired", TOTAL): PaymentState.SUCCEEDED,
        ("cancelled", TOTAL): PaymentState.SUCCEEDED,
    }.get((status, amount), PaymentState.DUPLICATE)
    expected_order = {
        ("pending", TOTAL): (OrderStatus.PAID, ""),
        ("pending", Decimal("24.99")): (OrderStatus.EXCEPTION, "amount_mismatch"),
        ("expired", TOTAL): (OrderStatus.EXCEPTION, "paid_after_expiry"),
        ("cancelled", TOTAL): (OrderStatus.EXCEPTION, "paid_after_expiry"),
        ("delivered", TOTAL): (OrderStatus.EXCEPTION, "duplicate_payment"),
    }.get((status, amount), (status, ""))
    assert written["payment"][0] == expected_state
    assert written["order"][:2] == expected_order
    assert written["ledger"] == [("sandbox", True, "accepted", 1, True)]
    # The move's event waits in the outbox for its handlers (delivery, the buyer's notice);
    # a second payment's note has none.
    waiting = [event_type for event_type, _message, _actor, undispatched in written["events"] if undispatched]
    moved = written["order"][0] != status
    assert waiting == (
        [f"shop.order.{'paid' if written['order'][0] == 'paid' else 'exception.' + written['order'][1]}"]
        if moved
        else []
    )
