"""An order's moves, as pure builders: what each move writes, returned as statements.

Nothing here touches the database or has side effects. The services (``shop.services``,
``payments.services``, ``delivery.services``) lock the row, decide, compose these builders
into one batch and run it once (``kameng.sql.statements_run``). The statements read the
order's id from a named row (``target`` by default): ids the caller locked
(``kameng.sql.row_source``), or the row a guarded lock returned (the fast confirmation of
``payments.confirmation``), so both run the very same writes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol, cast

from django.db import connection
from django.db.models import Field

from kameng.sql import Statement, sql_literal
from shop.events import ORDER_PAID, event_has_handlers, order_exception_event
from shop.models import ExceptionReason, Order, OrderEvent, OrderStatus
from shop.outbox import announce_returning

S = OrderStatus
# The only moves an order's status may make. Anything else raises InvalidTransition.
ORDER_TRANSITIONS: dict[str, frozenset[str]] = {
    S.PENDING: frozenset({S.PAID, S.EXPIRED, S.CANCELLED, S.EXCEPTION}),
    S.PAID: frozenset({S.DELIVERED, S.EXCEPTION}),
    # Keys are on the order page, but the email could not be sent after every retry.
    S.DELIVERED: frozenset({S.EXCEPTION}),
    # Money arrived for an order that had already expired or been cancelled.
    S.EXPIRED: frozenset({S.EXCEPTION}),
    S.CANCELLED: frozenset({S.EXCEPTION}),
    S.EXCEPTION: frozenset({S.DELIVERED, S.REFUNDED}),
    S.REFUNDED: frozenset(),
}


class InvalidTransition(Exception):
    """An order was asked to make a status move the table does not allow."""


class OrderState(Protocol):
    """What the builders read of an order: an ``Order`` as its caller locked and read it, or the
    state a guarded statement assumes (``payments.confirmation``)."""

    number: str
    status: str
    total: Decimal
    delivered_at: datetime | None


@dataclass
class AssumedOrder:
    """An order in the state a guarded statement selects, for the builders to decide on."""

    number: str
    status: str
    total: Decimal
    delivered_at: datetime | None = None


@dataclass(frozen=True)
class OrderMove:
    """A move of one order: the columns it changes and the statements that write them (the
    order's row and its event)."""

    to: str
    event_type: str
    changes: dict[str, object]
    writes: tuple[Statement, ...]


def order_move(
    *,
    order: OrderState,
    to: str,
    event_type: str,
    at: datetime,
    message: str = "",
    actor: str = "system",
    reason: str = "",
    key: str = "move",
    source: str = "target",
) -> OrderMove:
    """Move ``order`` (as its caller locked and read it) to ``to``, writing an event of
    ``event_type``. ``reason``: the exception reason of a move to the exception queue (then
    ``message`` is its note). ``key`` prefixes the statements' parameters, so two builders can
    share a batch. Raises InvalidTransition."""
    if to not in ORDER_TRANSITIONS[order.status]:
        raise InvalidTransition(f"order {order.number}: {order.status} → {to} is not allowed")
    changes: dict[str, object] = {"status": to, "updated_at": at}
    if to == S.PAID:
        changes["paid_at"] = at
    elif to == S.DELIVERED:
        changes["delivered_at"] = order.delivered_at or at
        changes["exception_reason"] = ""
    elif to == S.EXCEPTION:
        changes["exception_at"] = at
        changes["exception_reason"] = reason
        changes["exception_note"] = message
    at_valued = tuple(name for name, value in changes.items() if value is at and name != "status")
    params = {f"{key}_{name}": value for name, value in changes.items() if name != "status" and name not in at_valued}
    update = Statement(_move_sql(to, tuple(changes), at_valued, key, source), {**params, "at": at})
    event = order_event_insert(event_type=event_type, message=message, actor=actor, at=at, key=key, source=source)
    return OrderMove(to=to, event_type=event_type, changes=changes, writes=(update, event))


@functools.lru_cache(maxsize=128)
def _move_sql(to: str, columns: tuple[str, ...], at_valued: tuple[str, ...], key: str, source: str) -> str:
    """The UPDATE of a move, built once per shape (it runs for every payment and delivery)."""
    quote = connection.ops.quote_name
    assignments = []
    for name in columns:
        column = quote(cast(Field, Order._meta.get_field(name)).column)
        if name == "status":
            # A literal: the statement's text then says which move it is (one prepared
            # statement per move, and a generic plan that still uses the partial indexes).
            assignments.append(f"{column} = {sql_literal(to)}")
        elif name in at_valued:
            assignments.append(f"{column} = %(at)s")
        else:
            assignments.append(f"{column} = %({key}_{name})s")
    table = Order._meta.db_table
    return f"UPDATE {table} SET {', '.join(assignments)} FROM {source} WHERE {table}.id = {source}.order_id"


def order_event_insert(
    *, event_type: str, message: str, actor: str, at: datetime, key: str = "event", source: str = "target"
) -> Statement:
    """The INSERT of one order event for the order in ``source``. An event that has handlers
    is written undispatched, and on PostgreSQL in listen mode announces itself in the same
    statement (``shop.outbox``); the announcement commits or rolls back with it."""
    return Statement(
        _event_insert_sql(
            announce_returning(event_has_handlers(event_type)), event_has_handlers(event_type), key, source
        ),
        {f"{key}_type": event_type, f"{key}_message": message, f"{key}_actor": actor, "at": at},
    )


@functools.lru_cache(maxsize=64)
def _event_insert_sql(announce: str, handled: bool, key: str, source: str) -> str:
    return (
        f"INSERT INTO {OrderEvent._meta.db_table} (order_id, type, message, actor, created_at, dispatched_at)"
        f" SELECT order_id, %({key}_type)s, %({key}_message)s, %({key}_actor)s, %(at)s,"
        f" {'NULL' if handled else '%(at)s'} FROM {source} RETURNING id{announce}"
    )


# --- What a payment does to its order --------------------------------------------------------

ORDER_PAYMENT_DUPLICATE_EVENT = "shop.order.payment_duplicate"


def order_paid_note(*, gateway: str, amount: Decimal) -> str:
    """The message of a payment's events: which gateway, how much."""
    return f"{gateway}: {amount}"


@dataclass(frozen=True)
class PaymentOutcome:
    """What a confirmed payment did to its order. ``moves`` is empty for a second payment of
    an order still being delivered (``duplicate``: its payment is kept for a refund)."""

    duplicate: bool
    writes: tuple[Statement, ...]
    moves: tuple[OrderMove, ...] = field(default=())


# The common case of ``order_payment`` in SQL, for the guarded one-statement confirmation
# (``payments.confirmation``): an order in it (alias ``o``) is one this rule moves to paid for
# ``%(amount)s``. The parity test (tests/test_payments_confirmation.py) holds the two together.
ORDER_PAYABLE_SQL = f"o.status = {sql_literal(S.PENDING)} AND o.total = %(amount)s"


def order_payment(*, order: OrderState, amount: Decimal, gateway: str, actor: str, at: datetime) -> PaymentOutcome:
    """The rule for money arriving for ``order`` (locked by the caller): what "paid" means.

    Pending, for exactly its total → paid (and delivered by the outbox's handler). Pending for
    another amount → exception ``amount_mismatch``. Expired or cancelled → exception
    ``paid_after_expiry``. Already paid by another payment → a ``payment_duplicate`` event; a
    delivered order also enters the exception queue (``duplicate_payment``) for a refund, one
    still being delivered is queued once it is (``payments.services.duplicate_payments_queue``).
    """
    note = order_paid_note(gateway=gateway, amount=amount)
    if order.status == S.PENDING and amount == order.total:
        move = order_move(order=order, to=S.PAID, event_type=ORDER_PAID, message=note, actor=actor, at=at)
        return PaymentOutcome(duplicate=False, writes=move.writes, moves=(move,))
    if order.status == S.PENDING:
        reason, message = ExceptionReason.AMOUNT_MISMATCH, f"paid {amount}, expected {order.total} ({gateway})"
    elif order.status in (S.EXPIRED, S.CANCELLED):
        reason, message = (
            ExceptionReason.PAID_AFTER_EXPIRY,
            f"paid {amount} after the order was {order.status} ({gateway})",
        )
    else:
        event = order_event_insert(
            event_type=ORDER_PAYMENT_DUPLICATE_EVENT,
            message=f"another payment of {note}; refund it",
            actor=actor,
            at=at,
            key="duplicate",
        )
        moves: tuple[OrderMove, ...] = ()
        if order.status == S.DELIVERED:
            moves = (order_duplicate_payment_move(order=order, note=f"second payment of {note}", at=at),)
        return PaymentOutcome(
            duplicate=True, writes=(event, *(st for move in moves for st in move.writes)), moves=moves
        )
    move = order_exception_move(order=order, reason=reason, note=message, actor=actor, at=at)
    return PaymentOutcome(duplicate=False, writes=move.writes, moves=(move,))


def order_exception_move(
    *, order: OrderState, reason: str, note: str, at: datetime, actor: str = "system"
) -> OrderMove:
    """The order enters the exception queue for ``reason`` (``note`` says what staff need to
    know); its event is ``shop.order.exception.<reason>``. Keys and money do not move."""
    return order_move(
        order=order,
        to=S.EXCEPTION,
        event_type=order_exception_event(reason),
        message=note,
        actor=actor,
        at=at,
        reason=reason,
    )


def order_duplicate_payment_move(*, order: OrderState, note: str, at: datetime, actor: str = "system") -> OrderMove:
    """A delivered order paid twice enters the exception queue, so staff refund the extra."""
    return order_exception_move(order=order, reason=ExceptionReason.DUPLICATE_PAYMENT, note=note, actor=actor, at=at)
