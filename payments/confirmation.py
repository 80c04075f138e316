"""Confirming a payment from a verified paid notice, as pure builders: the ledger row, the
payment's row and what the payment does to its order (``shop.transitions.order_payment``).

``payments.services`` runs them one of two ways, with the same statements:

- locked (every case, both databases): lock the payment and its order (``payment_lock``),
  decide with ``payment_confirmation`` on the rows as read, run the batch on those ids;
- guarded (PostgreSQL, the common case, one statement): ``guarded_confirmation`` assumes the
  payment awaits exactly this amount and its order is pending for it, decides with the same
  ``payment_confirmation`` on that assumption, and runs the batch on the rows a guarded lock
  (``FOR UPDATE`` of exactly such a payment and order) returns, or on none, writing nothing.
  The parity test (tests/test_payments_confirmation.py) runs both side by side.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from kameng.sql import Statement, sql_literal
from payments.gateways.base import VerifiedNotification
from payments.models import AWAITING_MONEY, NotificationVerdict, Payment, PaymentNotification, PaymentState
from shop.models import Order, OrderStatus
from shop.transitions import ORDER_PAYABLE_SQL, AssumedOrder, OrderState, PaymentOutcome, order_payment

LEDGER_COLUMNS = (
    "gateway, transaction_id, paid, out_trade_no, payment_id, raw_payload, verdict, reason, times_received,"
    " received_at, last_received_at"
)


class PaymentLike(Protocol):
    """What the builders read of a payment: a locked ``Payment``, or ``AssumedPayment``."""

    gateway: str
    out_trade_no: str
    amount: Decimal
    state: str


@dataclass
class AssumedPayment:
    """A payment in the state the guarded statement selects (a plain value: building a model
    instance costs more than the rest of the builders together, on every notification)."""

    gateway: str
    out_trade_no: str
    amount: Decimal
    state: str


@dataclass(frozen=True)
class Confirmation:
    """A payment's confirmation: its new state, what it did to the order, and the writes."""

    state: str
    outcome: PaymentOutcome
    writes: tuple[Statement, ...]


def payment_confirmation(
    *,
    payment: PaymentLike,
    order: OrderState,
    notice: VerifiedNotification,
    raw: str,
    actor: str,
    at: datetime,
    source: str = "target",
) -> Confirmation:
    """Confirm ``payment`` (awaiting money) from a verified paid ``notice``, for ``order`` as
    read under the payment's lock. The statements read the payment's and the order's ids from
    ``source``. Raises ValueError for a payment not awaiting money.

    Equal amount → succeeded, a different one → mismatched; money for an order another payment
    already paid → duplicate (kept for a refund). The order follows ``order_payment``.
    """
    if payment.state not in AWAITING_MONEY:
        raise ValueError(f"payment {payment.out_trade_no} is {payment.state}, not awaiting money")
    outcome = order_payment(order=order, amount=notice.amount, gateway=payment.gateway, actor=actor, at=at)
    if outcome.duplicate:
        state = PaymentState.DUPLICATE
    elif notice.amount == payment.amount:
        state = PaymentState.SUCCEEDED
    else:
        state = PaymentState.MISMATCHED
    ledger = Statement(
        f"INSERT INTO {PaymentNotification._meta.db_table} ({LEDGER_COLUMNS})"
        f" SELECT %(gateway)s, %(transaction_id)s, TRUE, %(out_trade_no)s, payment_id, %(raw)s,"
        f" {sql_literal(NotificationVerdict.ACCEPTED)}, '', 1, %(at)s, %(at)s FROM {source}",
        {
            "gateway": payment.gateway,
            "transaction_id": notice.transaction_id,
            "out_trade_no": notice.out_trade_no,
            "raw": raw,
            "at": at,
        },
    )
    table = Payment._meta.db_table
    confirmed = Statement(
        f"UPDATE {table} SET paid_amount = %(amount)s, transaction_id = %(transaction_id)s, confirmed_at = %(at)s,"
        f" state = {sql_literal(state)} FROM {source} WHERE {table}.id = {source}.payment_id",
        {"amount": notice.amount, "transaction_id": notice.transaction_id, "at": at},
    )
    return Confirmation(state=state, outcome=outcome, writes=(ledger, confirmed, *outcome.writes))


def guarded_confirmation(
    *, gateway: str, notice: VerifiedNotification, raw: str, actor: str, at: datetime
) -> tuple[Statement, ...]:
    """The common case of a paid notice as one batch: a guarded lock named ``target`` that
    finds the payment only if it awaits exactly ``notice.amount`` and its order is payable for
    it (``ORDER_PAYABLE_SQL``), then ``payment_confirmation``'s writes for that very state, then
    the order's id. Under concurrency FOR UPDATE re-checks the guard on the newest row
    versions, so one copy of a notice at most can match; no row means nothing was written."""
    assumed_payment = AssumedPayment(
        gateway=gateway, out_trade_no=notice.out_trade_no, amount=notice.amount, state=PaymentState.CREATED
    )
    assumed_order = AssumedOrder(number=notice.out_trade_no, status=OrderStatus.PENDING, total=notice.amount)
    confirmation = payment_confirmation(
        payment=assumed_payment, order=assumed_order, notice=notice, raw=raw, actor=actor, at=at
    )
    awaiting = ", ".join(sql_literal(state) for state in sorted(AWAITING_MONEY))
    target = Statement(
        f"SELECT p.id AS payment_id, o.id AS order_id FROM {Payment._meta.db_table} p"
        f" JOIN {Order._meta.db_table} o ON o.id = p.order_id"
        f" WHERE p.out_trade_no = %(out_trade_no)s AND p.gateway = %(gateway)s AND p.state IN ({awaiting})"
        f" AND p.amount = %(amount)s AND {ORDER_PAYABLE_SQL} FOR UPDATE OF p, o",
        {"out_trade_no": notice.out_trade_no, "gateway": gateway, "amount": notice.amount},
        name="target",
        materialized=True,
    )
    return (target, *confirmation.writes, Statement("SELECT order_id FROM target"))


def ledger_upsert(*, gateway: str, notice: VerifiedNotification, payment_id: int, raw: str, at: datetime) -> Statement:
    """Record a verified notice that confirms nothing, or count it once more when its
    transaction and kind were seen before; returns ``times_received``."""
    table = PaymentNotification._meta.db_table
    return Statement(
        f"INSERT INTO {table} ({LEDGER_COLUMNS}) VALUES (%(gateway)s, %(transaction_id)s, %(paid)s, %(out_trade_no)s,"
        f" %(payment_id)s, %(raw)s, {sql_literal(NotificationVerdict.ACCEPTED)}, '', 1, %(at)s, %(at)s)"
        f" ON CONFLICT (gateway, transaction_id, paid) DO UPDATE"
        f" SET times_received = {table}.times_received + 1, last_received_at = EXCLUDED.last_received_at"
        " RETURNING times_received",
        {
            "gateway": gateway,
            "transaction_id": notice.transaction_id,
            "paid": notice.paid,
            "out_trade_no": notice.out_trade_no,
            "payment_id": payment_id,
            "raw": raw,
            "at": at,
        },
    )
