"""Order lifecycle: creation, payment received, expiry, the exception queue.

Every status change goes through ``order_transition`` (the table below) on a locked row and
writes an ``OrderEvent`` in the same transaction.
"""

from __future__ import annotations

import functools
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.hashers import check_password, make_password
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import connection, transaction
from django.utils import timezone, translation
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext as _

from cardpool.selectors import product_has_stock
from kameng.sql import sql_literal, statements_run
from shop.lock_objects import order_lock
from shop.models import ContactKind, ExceptionReason, Order, OrderEvent, OrderStatus, Product
from shop.order_tokens import order_access_token_hash
from shop.signals import order_moved

logger = logging.getLogger(__name__)

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

MOBILE_RE = re.compile(r"^1[3-9]\d{9}$")
QUERY_PASSWORD_HASHER = "pbkdf2_sha256_query"


class InvalidTransition(Exception):
    """An order was asked to make a status move the table does not allow."""


class OrderRejected(ValidationError):
    """Checkout refused: a clear, buyer-facing message."""


def order_transition(
    *, order: Order, to: str, event_type: str, message: str = "", actor: str = "system", statements: list | None = None
) -> Order:
    """Move a locked order to ``to`` and write its event. Raises InvalidTransition.

    Callers lock the row (``order_lock``) and re-check state first; this only enforces the table.
    Hand-written, one round trip on PostgreSQL, because every delivery passes here (see
    bench/reserve.py). With ``statements`` the writes are appended there instead, for the caller
    to run in its own round trip (``statements_run``) within the same transaction.
    """
    if to not in ORDER_TRANSITIONS[order.status]:
        raise InvalidTransition(f"order {order.number}: {order.status} → {to} is not allowed")
    now = timezone.now()
    changed = _transition_changes(to=to, now=now, order=order)
    for name, value in changed.items():
        setattr(order, name, value)
    assignments, values = _assignments(changed)
    writes = [
        (f"UPDATE {Order._meta.db_table} SET {assignments} WHERE id = %s", [*values, order.pk]),
        order_event_statement(order_id=order.pk, event_type=event_type, message=message, actor=actor, at=now),
    ]
    if statements is None:
        statements_run(writes)
    else:
        statements.extend(writes)
    order_moved.send(sender=Order, order=order, event_type=event_type, statements=statements)
    return order


def _transition_changes(*, to: str, now: datetime, order: Order | None = None) -> dict:
    """The columns a move to ``to`` writes (``order``: the order's own values some moves keep)."""
    changed = {"status": to, "updated_at": now}
    if to == S.PAID:
        changed["paid_at"] = now
    elif to == S.DELIVERED:
        changed["delivered_at"] = order.delivered_at or now
        changed["exception_reason"] = ""
    elif to == S.EXCEPTION:
        changed["exception_at"] = now
        changed["exception_reason"] = order.exception_reason
        changed["exception_note"] = order.exception_note
    return changed


def _assignments(changed: dict) -> tuple[str, list]:
    ops = connection.ops
    values = [ops.adapt_datetimefield_value(value) if isinstance(value, datetime) else value for value in changed.values()]
    return ", ".join(f"{ops.quote_name(Order._meta.get_field(name).column)} = %s" for name in changed), values


ORDER_PAID_EVENT = "shop.order.paid"


@functools.lru_cache(maxsize=4)
def order_paid_assignments(*, at: str) -> str:
    """The SET list of a pending order's move to paid, for a hand-written statement that pays it
    (``payments.services._payment_confirm_pending``): the columns ``order_transition`` writes,
    the status as a literal and every time as the statement's named parameter ``at``. Built
    once per process."""
    quote = connection.ops.quote_name
    return ", ".join(
        f"{quote(Order._meta.get_field(name).column)} = "
        + (f"%({at})s" if isinstance(value, datetime) else sql_literal(value))
        for name, value in _transition_changes(to=S.PAID, now=timezone.now()).items()
    )


def order_paid_note(*, gateway: str, amount: Decimal) -> str:
    """The message of a payment's events: which gateway, how much."""
    return f"{gateway}: {amount}"


def order_event_statement(*, order_id: int, event_type: str, message: str, actor: str, at: datetime) -> tuple[str, list]:
    """The INSERT of one order event, for a caller's ``statements_run`` round trip (hot paths;
    elsewhere ``OrderEvent.objects.create``)."""
    return (
        f"INSERT INTO {OrderEvent._meta.db_table} (order_id, type, message, actor, created_at) VALUES (%s, %s, %s, %s, %s)",
        [order_id, event_type, message, actor, connection.ops.adapt_datetimefield_value(at)],
    )


def order_exception_enter(
    *, order: Order, reason: str, note: str = "", actor: str = "system", statements: list | None = None
) -> Order:
    """Put a locked order in the exception queue with a reason. Keys and money do not move.
    ``statements``: as for ``order_transition``."""
    order.exception_reason = reason
    order.exception_note = note
    return order_transition(
        order=order, to=S.EXCEPTION, event_type=f"shop.order.exception.{reason}", message=note, actor=actor,
        statements=statements,
    )


def contact_normalise(contact: str) -> tuple[str, str]:
    """A buyer's contact as orders store it (trimmed; an email lower-cased) and its ContactKind.
    Raises ValidationError."""
    contact = contact.strip()
    kind = contact_classify(contact)
    return (contact.lower() if kind == ContactKind.EMAIL else contact), kind


def contact_classify(contact: str) -> str:
    """Return the ContactKind of a buyer's contact, or raise ValidationError."""
    contact = contact.strip()
    if MOBILE_RE.match(contact):
        return ContactKind.MOBILE
    try:
        validate_email(contact)
    except ValidationError:
        raise ValidationError(_("Enter an email address or an 11-digit mainland mobile number."), code="contact")
    return ContactKind.EMAIL


def _order_number() -> str:
    # Date for support staff, then 12 random digits: not guessable, not enumerable.
    return timezone.localtime().strftime("%Y%m%d") + "".join(secrets.choice("0123456789") for _ in range(12))


def order_language(language: str | None = None) -> str:
    """One of settings.LANGUAGES for ``language`` (default: the active one, i.e. the request's),
    or "" when it is none of them."""
    language = (language or translation.get_language() or "").lower()
    return language if language in dict(settings.LANGUAGES) else ""


def order_create(
    *, product: Product, quantity: int, contact: str, query_password: str, client_ip: str | None,
    language: str | None = None,
) -> Order:
    """Create a pending order at the product's current price. Moves no keys and no money.
    ``language``: what the buyer's messages will speak (default: the request's active language).

    Raises OrderRejected when the product is inactive, the quantity is outside its limits or
    above the available stock.
    """
    if not product.is_active:
        raise OrderRejected(_("This product is not on sale."), code="inactive")
    if quantity < product.min_quantity or quantity > product.max_quantity:
        raise OrderRejected(
            _("Choose between %(min)d and %(max)d per order.") % {"min": product.min_quantity, "max": product.max_quantity},
            code="quantity",
        )
    if not product_has_stock(product_id=product.pk, quantity=quantity):
        raise OrderRejected(_("Not enough stock for this quantity."), code="stock")
    contact, kind = contact_normalise(contact)
    unit_price: Decimal = product.price
    with transaction.atomic():
        number = _order_number()
        order = Order.objects.create(
            number=number,
            access_token_hash=order_access_token_hash(number=number),
            product=product,
            quantity=quantity,
            unit_price=unit_price,
            total=unit_price * quantity,
            contact=contact,
            contact_kind=kind,
            query_password_hash=make_password(query_password, hasher=QUERY_PASSWORD_HASHER),
            lookup_digest=order_lookup_digests(contact=contact, password=query_password)[0],
            client_ip=client_ip,
            language=order_language(language),
            expires_at=timezone.now() + timedelta(minutes=settings.ORDER_EXPIRE_MINUTES),
        )
        OrderEvent.objects.create(order=order, type="shop.order.created", actor="buyer")
    return order


@dataclass(frozen=True)
class PaymentReceived:
    """What happened to an order when a confirmed payment arrived."""

    order_id: int
    status: str
    needs_delivery: bool
    duplicate: bool = False


def order_payment_received(
    *, order: Order, amount: Decimal, gateway: str, actor: str = "system", statements: list | None = None
) -> PaymentReceived:
    """Record that ``amount`` was paid for an order the caller locked (``payment_lock`` locks a
    payment and its order). Call inside the payment's transaction.

    pending and the amount equals the total → paid (the caller schedules delivery);
    amount differs → exception ``amount_mismatch``; expired or cancelled → exception
    ``paid_after_expiry``. An order another payment already paid gets ``duplicate=True``: a
    delivered one goes to the exception queue (``duplicate_payment``) for a refund; one still
    being delivered is queued by ``order_duplicate_payment_queue`` once it is delivered.
    ``statements``: as for ``order_transition`` (the rare duplicate case writes at once).
    """
    note = order_paid_note(gateway=gateway, amount=amount)
    if order.status == S.PENDING:
        if amount != order.total:
            order_exception_enter(
                order=order,
                reason=ExceptionReason.AMOUNT_MISMATCH,
                note=f"paid {amount}, expected {order.total} ({gateway})",
                actor=actor,
                statements=statements,
            )
        else:
            order_transition(
                order=order, to=S.PAID, event_type=ORDER_PAID_EVENT, message=note, actor=actor, statements=statements
            )
    elif order.status in (S.EXPIRED, S.CANCELLED):
        order_exception_enter(
            order=order,
            reason=ExceptionReason.PAID_AFTER_EXPIRY,
            note=f"paid {amount} after the order was {order.status} ({gateway})",
            actor=actor,
            statements=statements,
        )
    else:
        OrderEvent.objects.create(
            order=order, type="shop.order.payment_duplicate", message=f"another payment of {note}; refund it", actor=actor
        )
        logger.warning("order %s received a second payment of %s", order.number, note)
        order_duplicate_payment_queue(order=order, note=f"second payment of {note}")
        return PaymentReceived(order_id=order.pk, status=order.status, needs_delivery=False, duplicate=True)
    return PaymentReceived(order_id=order.pk, status=order.status, needs_delivery=order.status == S.PAID)


def order_duplicate_payment_queue(*, order: Order, note: str) -> bool:
    """Queue a locked, delivered order that was paid twice, so staff refund the extra payment.

    An order still in flight (paid) or already in the queue is left alone; returns True if queued.
    """
    if order.status != S.DELIVERED:
        return False
    order_exception_enter(order=order, reason=ExceptionReason.DUPLICATE_PAYMENT, note=note)
    return True


def order_refunded(*, order_id: int, note: str, actor: str) -> Order:
    """After the platform confirmed a refund of the order's payment: exception → refunded."""
    order = order_lock(order_id)
    order_transition(order=order, to=S.REFUNDED, event_type="shop.order.refunded", message=note, actor=actor)
    return order


def order_resolve(*, order_id: int, note: str, actor: str) -> Order:
    """Take a delivered order with keys back out of the exception queue (e.g. after its
    duplicate payment was refunded). Raises InvalidTransition from other states."""
    order = order_lock(order_id)
    if order.status != S.EXCEPTION:
        raise InvalidTransition(f"order {order.number} is not in the exception queue")
    return order_transition(order=order, to=S.DELIVERED, event_type="shop.order.resolved", message=note, actor=actor)


def order_expire(*, order_id: int) -> bool:
    """Expire an unpaid order whose time is up. Returns True if it expired it now."""
    with transaction.atomic(durable=True):
        order = order_lock(order_id)
        if order.status != S.PENDING or order.expires_at > timezone.now():
            return False
        order_transition(order=order, to=S.EXPIRED, event_type="shop.order.expired")
    return True


def order_mark_test(*, order: Order, gateway: str) -> None:
    """Staff test mode: the order is paid through a gateway closed to the public. It is marked so
    it stays out of sales figures; logged on the order."""
    Order.objects.filter(pk=order.pk).update(is_test=True)
    order.is_test = True
    OrderEvent.objects.create(order=order, type="shop.order.test_mode", message=gateway, actor="staff")


def order_cancel(*, order_id: int, actor: str = "buyer") -> bool:
    """The buyer gives up an unpaid order. Returns True if it was cancelled now. A payment that
    still arrives for it later lands in the exception queue (paid_after_expiry), never lost."""
    with transaction.atomic(durable=True):
        order = order_lock(order_id)
        if order.status != S.PENDING:
            return False
        order_transition(order=order, to=S.CANCELLED, event_type="shop.order.cancelled", actor=actor)
    return True


def order_check_query_password(*, order: Order, password: str) -> bool:
    return check_password(password, order.query_password_hash)


LOOKUP_DIGEST_SALT = "kameng.shop.order-lookup"


def order_lookup_digests(*, contact: str, password: str) -> tuple[str, ...]:
    """The keyed digests under which orders of a normalised ``contact`` with this query password
    are indexed: HMAC-SHA256 with a key derived from SECRET_KEY (the first, which new orders
    store), then from each of SECRET_KEY_FALLBACKS, so a rotated key still finds older orders.

    Keyed rather than a plain hash so a copy of the database alone cannot test guesses; fast
    rather than PBKDF2 because the per-IP and per-contact rate limits bound online guessing and
    the order's own PBKDF2 hash (``query_password_hash``) still guards lookups by number."""
    value = f"{contact}\x00{password}"
    secrets_ = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return tuple(salted_hmac(LOOKUP_DIGEST_SALT, value, secret=secret, algorithm="sha256").hexdigest() for secret in secrets_)


def order_lookup(*, number: str, password: str) -> Order | None:
    """Find an order by number and query password; None for either being wrong.

    Always hashes once, so an unknown number and a wrong password take the same time. An order
    from before contact lookup existed gets its lookup digest now (the password was just proven),
    so it can be found by contact from then on.
    """
    order = Order.objects.filter(number=number.strip()).first()
    if order is None:
        make_password(password, hasher=QUERY_PASSWORD_HASHER)
        return None
    if not order_check_query_password(order=order, password=password):
        return None
    if not order.lookup_digest:
        order.lookup_digest = order_lookup_digests(contact=order.contact, password=password)[0]
        Order.objects.filter(pk=order.pk, lookup_digest="").update(lookup_digest=order.lookup_digest)
    return order


def order_tokens_rekey(*, batch_size: int = 2000) -> int:
    """After ``ORDER_TOKEN_KEY`` (or ``SECRET_KEY`` while it is unset) changed: store the hash of
    every order's token under the new key, keeping the hash of its link under the old key in
    ``previous_token_hash`` (an order's older link, if it had one, stops working). Returns the
    number of orders changed; running it again changes none. Moves no keys and no money."""
    changed = 0
    batch: list[Order] = []
    rows = Order.objects.order_by("pk").values_list("pk", "number", "access_token_hash")
    for pk, number, stored in rows.iterator(chunk_size=batch_size):
        current = order_access_token_hash(number=number)
        if current != stored:
            batch.append(Order(pk=pk, access_token_hash=current, previous_token_hash=stored))
        if len(batch) == batch_size:
            changed += _order_token_hashes_write(batch)
            batch = []
    return changed + _order_token_hashes_write(batch)


def _order_token_hashes_write(batch: list[Order]) -> int:
    # Only the two hashes change, in one statement per batch: a request sees the old pair or the
    # new one, and the link it carries opens the page with either.
    if batch:
        Order.objects.bulk_update(batch, ["access_token_hash", "previous_token_hash"])
    return len(batch)


def order_exception_assign(*, order_id: int, assignee, note: str, actor: str) -> Order:
    """Staff take (or hand over) an exception-queue order and keep notes; logged on the order.

    Not durable: the admin's change form already runs inside a transaction."""
    with transaction.atomic():
        order = order_lock(order_id)
        changes = []
        if order.assignee_id != (assignee.pk if assignee else None):
            order.assignee = assignee
            changes.append(f"assigned to {assignee.get_username() if assignee else 'nobody'}")
        if note != order.staff_note:
            order.staff_note = note
            changes.append("notes updated")
        if changes:
            Order.objects.filter(pk=order.pk).update(assignee=assignee, staff_note=note)
            OrderEvent.objects.create(order=order, type="shop.order.exception.worked", message="; ".join(changes), actor=actor)
    return order


def order_exception_resolve(*, order_id: int, actor: str, note: str = "") -> Order:
    """Staff mark an exception-queue order as handled. Only an order that holds its keys can
    leave as delivered (keys are never taken back here); others need a delivery or a refund.
    Raises InvalidTransition."""
    from cardpool.models import CardKey

    with transaction.atomic(durable=True):
        order = order_lock(order_id)
        if order.status != S.EXCEPTION:
            raise InvalidTransition(f"order {order.number} is not in the exception queue")
        if not CardKey.objects.filter(order=order, status="sold").exists():
            raise InvalidTransition(f"order {order.number} has no keys: deliver or refund it instead")
        return order_transition(
            order=order, to=S.DELIVERED, event_type="shop.order.resolved", message=note or "resolved by staff", actor=actor
        )
